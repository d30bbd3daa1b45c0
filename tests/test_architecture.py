"""The layout explains itself: no import cycle, a small package root, every module on docs/design.md's map,
archs and checkpoint readers independent of each other, and no command calling another command's main."""
import ast
import re

from helpers import REPO

PACKAGE = REPO / 'dlst_plugin'
ROOT_MODULES = {'__init__', '_package', 'compat', 'devices', 'errors', 'run_control', 'train', 'test'}


def modules():
    """{dotted name: path} of every module of the package."""
    found = {}
    for path in PACKAGE.rglob('*.py'):
        parts = path.relative_to(REPO).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        found[name] = path
    return found


def imports(mods):
    """{module: modules of the package it imports}, imports inside functions included."""
    graph = {}
    for name, path in mods.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] + [base]).strip('.')
                targets.update(f'{base}.{a.name}' if f'{base}.{a.name}' in mods else base for a in node.names)
        graph[name] = {_owner(t, mods) for t in targets if t.startswith('dlst_plugin')} - {name, None}
    return graph


def _owner(target, mods):
    while target not in mods and '.' in target:
        target = target.rpartition('.')[0]
    return target if target in mods else None


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere_in_the_package():
    assert cycles(imports(modules())) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_the_package_root_keeps_only_entry_points_and_what_everything_uses():
    assert {p.stem for p in PACKAGE.glob('*.py')} == ROOT_MODULES


def test_archs_and_checkpoint_readers_do_not_import_each_other():
    graph = imports(modules())
    for name, targets in graph.items():
        if name.startswith('dlst_plugin.archs'):
            assert not {t for t in targets if t.startswith(('dlst_plugin.checkpoints', 'dlst_plugin.loading'))}, name
        if name.startswith('dlst_plugin.checkpoints'):
            assert not {t for t in targets if t.startswith(('dlst_plugin.archs', 'dlst_plugin.loading'))}, name


def test_no_command_calls_another_commands_main():
    for path in (PACKAGE / 'cli').glob('*.py'):
        text = path.read_text(encoding='utf-8')
        calls = set(re.findall(r'\b(\w+)\.main\(', text)) - {'sys'}
        assert not calls, f'{path.name} calls {calls}.main'
        assert 'import main' not in text, path.name


def test_every_module_is_on_the_design_map():
    design = (REPO / 'docs' / 'design.md').read_text(encoding='utf-8')
    section = design[design.index('<a id="modules"></a>'):]
    missing = [name for name in modules() if name != 'dlst_plugin'
               and name.split('.')[-1] not in section and name.replace('.', '/') not in section]
    assert missing == [], f'docs/design.md#modules does not name: {missing}'


def test_importing_the_package_installs_the_archs_prior_reader():
    """An arch that starts from a prior file (decoder_load_path, ...) finds the reader without any other import."""
    import subprocess
    import sys
    code = 'import dlst_plugin\nfrom dlst_plugin.archs import prior_files\nprint(len(prior_files._READER))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == '1'
