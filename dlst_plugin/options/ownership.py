"""Whose run is it? The plugin is imported into every BasicSR process of the environment (the start-up hook),
so it must tell its own runs from other projects' and leave theirs as they are.

A run is **the plugin's** when it was started by the plugin's launchers (``dlst-train``, ``dlst-test``,
``python -m dlst_plugin.train`` / ``.test``, the same under torchrun), or when its option file names a
type the plugin registers: ``model_type``, a ``network_*`` type, a dataset type or a loss type. Such a run
gets the plugin's strictness (every option problem is an error, exit code 2, before anything is built)
and every fix the plugin makes to BasicSR (CPU launches, resume, experiments under the working directory,
a failed save stops the run, ...).

**Every other run** (``python -m basicsr.train`` with BasicSR's own types, GFP-GAN's and Real-ESRGAN's
``train.py``) gets the option check's findings as warnings and otherwise runs exactly as without the
plugin: the same experiments folder, the same exit code and the same error for the same fault. What it
keeps from the plugin changes nothing it can observe: the torchvision alias BasicSR 1.4.2 needs to import
at all, and checkpoint files written atomically (the same files; a kill leaves the previous file instead
of a truncated one).

Library use (building the plugin's models or networks in Python, the ``dlst-*`` commands) is the plugin's.
"""
import os
import sys

PLUGIN_LAUNCHERS = ('dlst_plugin.train', 'dlst_plugin.test')
_STATE = {'launcher': None, 'plugin': None}  # decided once per process, by the first option file read


def set_launcher(name):
    """Record the entry point that started this process (``dlst_plugin.train``, ``basicsr.train``, ...)."""
    _STATE['launcher'] = name


def launcher():
    """The entry point of this process: the one recorded, else ``python -m NAME``'s NAME, else the script."""
    if _STATE['launcher']:
        return _STATE['launcher']
    argv = list(getattr(sys, 'orig_argv', []) or [])
    if '-m' in argv[:-1]:
        return argv[argv.index('-m') + 1]
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None


def launched_by_plugin():
    return launcher() in PLUGIN_LAUNCHERS


def plugin_types(opt):
    """``[(option key, type name)]`` of the types the option file names that the plugin registers."""
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
    found = []
    if _is_plugins(MODEL_REGISTRY, opt.get('model_type')):
        found.append(('model_type', opt['model_type']))
    for key, block in opt.items():
        if str(key).startswith('network_') and isinstance(block, dict):
            if _is_plugins(ARCH_REGISTRY, block.get('type')):
                found.append((f'{key}.type', block['type']))
    datasets = opt.get('datasets') if isinstance(opt.get('datasets'), dict) else {}
    for phase, ds in datasets.items():
        if isinstance(ds, dict) and _is_plugins(DATASET_REGISTRY, ds.get('type')):
            found.append((f'datasets.{phase}.type', ds['type']))
    train = opt.get('train') if isinstance(opt.get('train'), dict) else {}
    for key, block in train.items():
        if isinstance(block, dict) and _is_plugins(LOSS_REGISTRY, block.get('type')):
            found.append((f'train.{key}.type', block['type']))
    return found


def _is_plugins(registry, name):
    cls = registry._obj_map.get(name) if isinstance(name, str) else None
    return cls is not None and getattr(cls, '__module__', '').startswith('dlst_plugin.')


def decide(opt):
    """Decide (once) whether this process runs the plugin's option file ``opt``; returns the decision."""
    _STATE['plugin'] = launched_by_plugin() or bool(plugin_types(opt or {}))
    return _STATE['plugin']


def is_plugin_run():
    """True unless an option file of another project's run was read by this process (library use, the
    ``dlst-*`` commands and the plugin's runs are the plugin's)."""
    return _STATE['plugin'] is not False


def reset():
    """Forget the decision and the launcher (tests run several option files in one process)."""
    _STATE.update(launcher=None, plugin=None)
