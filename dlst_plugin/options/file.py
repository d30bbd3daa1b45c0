"""Reading a BasicSR option file on the plugin's own account, without running what it may hold.

Option files are trusted like code: BasicSR itself reads them with PyYAML's full loader, so a
``!!python/object/apply`` tag in one runs when training starts, and ``!!python/name:`` tags are how an
option file imports a plugin (``plugin: !!python/name:dlst_plugin.compat.apply``). The plugin reads the
same file before BasicSR does (to check it and to find ``path.experiments_root``); that read must not
add anything to what BasicSR runs. :func:`read_option_file` therefore uses ``yaml.SafeLoader`` plus:

* ``!!python/name:`` and ``!!python/module:`` import what they name, as BasicSR's own load does right
  after (so types those modules register are known to the checker);
* every other ``!!python/`` tag (``object/apply``, ``object/new``, ``object``) is kept as a
  :class:`PythonTag` placeholder and never evaluated.
"""
import argparse
import importlib

import yaml

from dlst_plugin.errors import ConfigError

PYTHON_TAG = 'tag:yaml.org,2002:python/'


class PythonTag:
    """A ``!!python/...`` value of an option file, left unevaluated."""

    def __init__(self, tag):
        self.tag = tag

    def __repr__(self):
        return f'!!{self.tag[len("tag:yaml.org,2002:"):]}'


class OptionLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that imports ``!!python/name:``/``module:`` targets and evaluates no other Python tag."""


def _import_name(loader, suffix, node):
    module, _, attr = suffix.rpartition('.')
    try:
        return getattr(importlib.import_module(module or 'builtins'), attr)
    except (ImportError, AttributeError) as err:
        raise yaml.constructor.ConstructorError(None, None, f'!!python/name:{suffix} cannot be imported ({err})',
                                                node.start_mark) from None


def _import_module(loader, suffix, node):
    try:
        return importlib.import_module(suffix)
    except ImportError as err:
        raise yaml.constructor.ConstructorError(None, None, f'!!python/module:{suffix} cannot be imported ({err})',
                                                node.start_mark) from None


OptionLoader.add_constructor(PYTHON_TAG + 'tuple', lambda loader, node: tuple(loader.construct_sequence(node)))
OptionLoader.add_multi_constructor(PYTHON_TAG + 'name:', _import_name)
OptionLoader.add_multi_constructor(PYTHON_TAG + 'module:', _import_module)
OptionLoader.add_multi_constructor(PYTHON_TAG, lambda loader, suffix, node: PythonTag(node.tag))


def read_option_file(path):
    """The option file as a dict (see the module docstring for what is and is not evaluated)."""
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.load(f, Loader=OptionLoader)  # noqa: S506 (a SafeLoader subclass)
    except OSError as err:
        raise ConfigError(f'option file {path} cannot be read ({err.strerror or err})') from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f'{path} is not a valid option file: {err}') from None
    if not isinstance(opt, dict):
        raise ConfigError(f'{path} is not a valid option file: expected keys such as name, model_type, '
                          f'datasets at the top level, got {type(opt).__name__}')
    return opt


def set_dotted(opt, dotted, value, sep=':', create=True, shown=None, label=None):
    """Set ``opt[a][b][c] = value`` for ``dotted = 'a:b:c'`` (``sep`` splits it; BasicSR's ``--force_yml`` and the
    demo write ``:``). ``create``: make missing parent blocks; otherwise a missing parent or one that is not a
    block is a ConfigError naming the part of ``dotted`` at fault (joined by ``shown``, default ``sep``; the
    message starts with ``label``, default ``dotted``). Returns ``opt``."""
    *parents, last = dotted.split(sep)
    shown, label = shown or sep, label or dotted
    node = opt
    for depth, key in enumerate(parents):
        if not isinstance(node, dict):
            break
        if key not in node and create:
            node[key] = {}
        if key not in node:
            raise ConfigError(f'{label}: {shown.join(parents[:depth + 1])} is not in the option file')
        node = node[key]
    if not isinstance(node, dict):
        raise ConfigError(f'{label}: {shown.join(parents)} is not a block of keys')
    node[last] = value
    return opt


def _parse_value(text):
    from basicsr.utils.options import _postprocess_yml_value
    return _postprocess_yml_value(text)


def apply_force_yml(opt, entries):
    """Apply BasicSR's ``--force_yml a:b=value`` overrides to ``opt`` (in place) as BasicSR will; returns the
    problems (BasicSR cannot create a missing parent block, and wants exactly one ``=``)."""
    problems = []
    for entry in entries or []:
        if entry.count('=') != 1:
            problems.append(f'--force_yml {entry}: write KEY:SUBKEY=VALUE (one "=")')
            continue
        keys, value = (part.strip() for part in entry.split('='))
        try:
            set_dotted(opt, keys, _parse_value(value), create=False, shown='.', label=f'--force_yml {entry}')
        except ConfigError as err:
            problems.append(str(err))
    return problems


def parse_launcher_args(argv):
    """``(option file, --force_yml entries)`` from a BasicSR command line (other flags are BasicSR's)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+', default=None)
    args, _ = parser.parse_known_args(argv)
    return args.opt, args.force_yml
