"""The folders that ship inside the package (the option files, the demo's sample photos), found in a wheel or a
checkout; listing the shipped option files and copying them out: the library behind ``dlst-options``.

A checkout has them in ``options/`` and ``datasets/samples/faces/``; a wheel carries the same files inside the
package (``setup.py``'s SHIPPED_FOLDERS copies them there). A shipped option file is named by its path under
``options/`` without its suffix (``train_dlst``, ``table1/st_dl``, ``mmagic/dlst_st_x1_ffhq_512``), or by its file
name alone when no other file has that name. An MMagic config is copied with the ``_base_`` files it names,
beside it (where MMEngine looks). Messages name the ``dlst-options`` flags.
"""
import ast
import difflib
import os
import sys
from pathlib import Path

from dlst_plugin.errors import ConfigError
from dlst_plugin.fileio.atomic import atomic_write_bytes

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What ships beside the code: folder inside the installed package -> the same folder in a checkout.
# setup.py (SHIPPED_FOLDERS) copies each into the wheel; tests/test_release.py keeps the two tables equal.
SHIPPED = {'assets/options': 'options', 'assets/samples/faces': 'datasets/samples/faces'}
SUFFIXES = {'.yml': ('.yml', '.yaml'), '.py': ('.py',)}  # shipped suffix -> suffixes an output may have


def shipped_folder(packaged):
    """The folder ``packaged`` (a key of SHIPPED) of this installation: inside the installed package (a wheel),
    else in the checkout the package is imported from (a checkout or an editable install)."""
    inside = PACKAGE_DIR / packaged
    if inside.is_dir():
        return inside
    checkout = PACKAGE_DIR.parent
    beside = checkout / SHIPPED[packaged]
    if (checkout / 'setup.py').is_file() and beside.is_dir():
        return beside
    raise ConfigError(f'{SHIPPED[packaged]}/ is not installed with dlst-plugin (looked in {inside} and {beside}): '
                      'reinstall dlst-plugin (pip install --force-reinstall dlst-plugin) or run from a checkout')


def option_files():
    """(root folder, {name: path}) of the shipped option files; a name is the path under the root without
    its suffix (``train_dlst``, ``table1/st_dl``, ``mmagic/_base_/faces_512_srgan``)."""
    root = shipped_folder('assets/options')
    paths = sorted((p for p in root.rglob('*') if p.is_file() and p.suffix in SUFFIXES
                    and '__pycache__' not in p.parts), key=lambda p: (len(p.relative_to(root).parts), p))
    return root, {p.relative_to(root).with_suffix('').as_posix(): p for p in paths}


def resolve_name(name, files):
    """The key of ``files`` that ``name`` means (see EPILOG); a ConfigError naming the close ones otherwise."""
    key = name.replace('\\', '/').strip('/').removeprefix('options/')
    for suffix in ('.yml', '.yaml', '.py'):
        key = key.removesuffix(suffix)
    if key in files:
        return key
    same_file_name = [k for k in files if k.rsplit('/', 1)[-1] == key]
    if len(same_file_name) == 1:
        return same_file_name[0]
    if same_file_name:
        raise ConfigError(f'{name!r} is the name of {len(same_file_name)} files ({", ".join(same_file_name)}): '
                          'give one of these')
    close = difflib.get_close_matches(key, list(files), n=3, cutoff=0.5)
    hint = f' (did you mean {", ".join(close[:-1])} or {close[-1]}?)' if len(close) > 1 else \
        f' (did you mean {close[0]}?)' if close else ''
    raise ConfigError(f'no shipped option file is called {name!r}{hint}: dlst-options --list shows them')


def base_files(path, root):
    """The files an MMEngine config ``path`` inherits (``_base_``, also theirs), as paths relative to
    ``path``'s folder; YAML option files have none."""
    found, todo = [], [path]
    while todo:
        current = todo.pop()
        if current.suffix != '.py':
            continue
        for rel in _base_entries(current):
            source = (current.parent / rel).resolve()
            if not source.is_file() or root.resolve() not in source.parents:
                raise ConfigError(f'{current}: _base_ names {rel}, which is not a shipped file')
            relative = Path(os.path.relpath(source, path.parent.resolve()))
            if relative not in found:
                found.append(relative)
                todo.append(source)
    return found


def _base_entries(path):
    """The strings assigned to ``_base_`` at the top of a Python config (read, never run)."""
    for node in ast.parse(path.read_text(encoding='utf-8'), filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            value = node.value
            items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            return [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)]
    return []


def plan_copies(names, output, all_files, root, files):
    """[(source, target)] of what is asked for (see :func:`copy_option_files`); a ConfigError for a request that
    cannot be met."""
    out = Path(output) if output is not None else None
    if all_files:
        if out is None:
            raise ConfigError('--all needs -o FOLDER (e.g. dlst-options --all -o options)')
        return [(path, out / path.relative_to(root)) for path in files.values()]
    keys = list(dict.fromkeys(resolve_name(name, files) for name in names))
    if len(keys) > 1 and out is None:
        raise ConfigError(f'{len(keys)} files asked for: give -o FOLDER to write them into')
    into_folder = len(keys) > 1 or (out is not None and (out.is_dir() or str(output).endswith(('/', os.sep))))
    copies = []
    for key in keys:
        source = files[key]
        target = None if out is None else out / source.name if into_folder else out  # None: stdout
        if target is not None and target.suffix and target.suffix not in SUFFIXES[source.suffix]:
            raise ConfigError(f'-o {output}: {key} is a {source.suffix} file; give the output that suffix')
        copies.append((source, target))
        copies += [(source.parent / rel, target and target.parent / rel) for rel in base_files(source, root)]
    return list(dict.fromkeys(copies))  # two configs of one folder share their base


def check_targets(copies, overwrite):
    """Refuse (before anything is written) two sources for one target, a folder in a file's place, and
    existing files unless ``overwrite``."""
    by_target = {}
    for source, target in copies:
        if by_target.setdefault(target, source) != source:
            raise ConfigError(f'{by_target[target].name} and {source.name} would both be written to {target}: '
                              'copy them one at a time')
    folders = [str(t) for t in by_target if t.is_dir()]
    if folders:
        raise ConfigError(f'{folders[0]} is a folder: give a file name with -o')
    existing = [str(t) for t in by_target if t.exists()]
    if existing and not overwrite:
        shown = ', '.join(existing[:3]) + (f' and {len(existing) - 3} more' if len(existing) > 3 else '')
        raise ConfigError(f'{shown} already exist{"s" if len(existing) == 1 else ""}: pass --overwrite to replace, '
                          'or choose another -o')


def describe(path, width=100):
    """The first sentence of a shipped file's opening comment (what it is for), cut to ``width`` characters."""
    words = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            if not line.startswith('#'):
                break
            words += line.lstrip('#').split()
            if any(w.endswith('.') for w in words):
                break
    ends = [i for i, w in enumerate(words) if w.endswith('.')]
    text = ' '.join(words[:ends[0] + 1] if ends else words)
    return text if len(text) <= width else text[:width - 3].rsplit(' ', 1)[0] + '...'


def list_option_files():
    """``[(name, what it is for)]`` of every shipped option file (the first sentence of its opening comment)."""
    _, files = option_files()
    return [(name, describe(path)) for name, path in files.items()]


def copy_option_files(names=(), output=None, all_files=False, overwrite=False):
    """Copy the shipped option files ``names`` (or every one: ``all_files``, keeping the sub-folders) to ``output``:
    a file (one name) or a folder; one name without ``output`` is printed to stdout. Existing files stop the
    copy before anything is written, unless ``overwrite``. Returns the files written."""
    root, files = option_files()
    copies = plan_copies(names, output, all_files, root, files)
    if output is None:
        if len(copies) > 1:
            raise ConfigError(f'{copies[0][0].name} inherits {", ".join(s.name for s, _ in copies[1:])}: give -o FILE '
                              'so they are written beside it')
        sys.stdout.write(copies[0][0].read_text(encoding='utf-8'))
        return []
    check_targets(copies, overwrite)
    for source, target in copies:
        atomic_write_bytes(target, source.read_bytes())
        print(f'wrote {target}')
    if any(b'SET ME' in source.read_bytes() for source, _ in copies):
        print('next: set the lines marked SET ME (data and weights paths) in the files written', file=sys.stderr)
    return [target for _, target in copies]
