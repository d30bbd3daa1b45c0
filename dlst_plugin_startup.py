"""Interpreter start-up hook of dlst-plugin (run by ``dlst_plugin_startup.pth``).

It must stay tiny: it runs in every Python process of the environment. It only
installs an import finder; nothing heavy is imported until a program imports
``torchvision.transforms.functional_tensor`` or ``basicsr`` itself.

* BasicSR 1.4.2 imports ``torchvision.transforms.functional_tensor``, removed in
  torchvision 0.17: the finder serves it from ``_functional_tensor``.
* After ``basicsr`` is imported, ``dlst_plugin`` is imported so that its types are in
  BasicSR's registries (``python -m basicsr.train -opt ...`` finds them).
* ``python -m basicsr.train`` / ``basicsr.test`` compute their experiment root inside
  site-packages and cannot run on a CPU; they are handed to ``dlst_plugin.train`` /
  ``dlst_plugin.test``, which run BasicSR's own pipeline: with the fixes applied when the option
  file is the plugin's, exactly as BasicSR would otherwise (``taken_over`` records the hand-over).

Set ``DLST_PLUGIN_AUTOLOAD=0`` to switch the last two off.
"""
import importlib.abc
import importlib.util
import os
import sys

_ALIAS = 'torchvision.transforms.functional_tensor'
_TAKEOVER = {'basicsr.train': 'dlst_plugin.train', 'basicsr.test': 'dlst_plugin.test'}
taken_over = None  # 'basicsr.train' / 'basicsr.test' once the hook has handed that entry to the plugin


class _AliasLoader(importlib.abc.Loader):

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        real = importlib.import_module('torchvision.transforms._functional_tensor')
        module.__dict__.update({k: v for k, v in real.__dict__.items() if not k.startswith('__')})


def _main_module_requested():
    """The module named by ``python -m NAME`` while runpy is still locating it, else None."""
    argv = getattr(sys, 'orig_argv', [])
    if sys.argv[:1] != ['-m'] or '-m' not in argv:
        return None
    idx = argv.index('-m')
    return argv[idx + 1] if idx + 1 < len(argv) else None


class _PluginFinder(importlib.abc.MetaPathFinder):

    def find_spec(self, fullname, path, target=None):
        if fullname == _ALIAS:
            return importlib.util.spec_from_loader(fullname, _AliasLoader())
        if fullname != 'basicsr' or os.environ.get('DLST_PLUGIN_AUTOLOAD', '1') == '0':
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _AfterBasicsrLoader(spec.loader)
                return spec
        return None


class _AfterBasicsrLoader(importlib.abc.Loader):
    """Runs basicsr's own loader, then imports the plugin (and takes over ``-m basicsr.train``)."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        importlib.import_module('dlst_plugin')
        global taken_over
        requested = _main_module_requested() or ''
        entry = _TAKEOVER.get(requested)
        if entry is not None:
            taken_over = requested
            sys.argv[0] = entry
            importlib.import_module(entry).main()
            sys.exit(0)

    def __getattr__(self, name):  # get_code, get_resource_reader, ... of the wrapped loader
        return getattr(self.loader, name)


def install():
    """Install the finder once (idempotent)."""
    if not any(isinstance(f, _PluginFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PluginFinder())


install()
