"""``docs/options.md``, generated from the declarations: the plugin's typed blocks, the datasets' blocks, the
degradation recipe, the network constructors (signature and ``Args:`` docstring) and BasicSR's key tables.

    python -m dlst_plugin.options.reference --write     # rewrite docs/options.md
    python -m dlst_plugin.options.reference --check     # exit 1 when docs/options.md is stale (a test runs it)
"""
import argparse
import inspect
import re
import sys
from pathlib import Path

from dlst_plugin.options import basicsr_keys as B
from dlst_plugin.options.schema import REQUIRED, default_of, type_text

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'options.md'
HEADER = """# Option reference

Generated from the declarations in the code (`python -m dlst_plugin.options.reference --write`; a test fails
when this page is stale). Each block the plugin owns is declared once, as a typed block
(`dlst_plugin/options/blocks.py`, the datasets' `OPTIONS`, `FaceDegradation`): the option check, the models'
reading of their options and this page all come from it. Network blocks are the constructors' arguments.

- `~` (null) in an option file means the default, except where the type says "or ~": there `~` is the value
  (a degradation stage switched off, an unset limit).
- A key that is there on purpose (read by code of your own) goes in a top-level `allow_unknown: [train.my_key]`;
  every check of a listed key is skipped.
- Runs of other projects (BasicSR's own models, GFP-GAN, Real-ESRGAN) get the findings as warnings only
  (docs/training.md#good-neighbour-whose-run-is-it).
"""


def _value_text(value):
    if value is REQUIRED:
        return '**required**'
    if isinstance(value, str):
        return f'`{value}`'
    if isinstance(value, tuple):
        value = list(value)
    return f'`{value!r}`'.replace('`None`', '`~`')


def block_table(block_cls):
    lines = ['| key | type | default | range | description |', '|---|---|---|---|---|']
    for name, (field, ftype) in block_cls.fields().items():
        if field.metadata.get('flatten'):
            lines.append(f'| the keys of `{ftype.kind.__name__}` | | | | {field.metadata.get("doc", "")} |')
            continue
        rule = field.metadata.get('rule')
        kind = type_text(ftype) + (' or ~' if ftype.optional else '')
        doc = field.metadata.get('doc', '').replace('|', '\\|')
        lines.append(f'| `{name}` | {kind} | {_value_text(default_of(field))} | {rule.text if rule else ""} | {doc} |')
    if block_cls.PASSED_THROUGH:
        lines.append(f'\nAlso read here (BasicSR\'s): {", ".join(f"`{k}`" for k in block_cls.PASSED_THROUGH)}.')
    return '\n'.join(lines)


def docstring_args(obj):
    """{argument: first sentence} from the ``Args:`` section of ``obj``'s docstring (``a, b: text`` entries)."""
    doc = inspect.getdoc(obj) or ''
    found, names, in_args = {}, [], False
    for line in doc.splitlines():
        if line.strip() == 'Args:':
            in_args = True
            continue
        if in_args and line and not line.startswith(' '):
            break
        match = re.match(r'^ {4}(\w[\w, ]*):\s*(.*)$', line) if in_args else None
        if match:
            names = [n.strip() for n in match.group(1).split(',')]
            for n in names:
                found[n] = match.group(2)
        elif in_args and line.strip() and names:
            for n in names:
                found[n] += ' ' + line.strip()
    return {k: first_sentence(v) for k, v in found.items()}


def first_sentence(text):
    """``text`` up to its first full stop outside parentheses (a docstring's one-line description)."""
    depth = 0
    for i, c in enumerate(text.strip()):
        depth += (c == '(') - (c == ')')
        if c == '.' and depth == 0 and (i + 1 == len(text.strip()) or text.strip()[i + 1] == ' '):
            return text.strip()[:i]
    return text.strip().rstrip('.')


def network_table(cls):
    args = docstring_args(cls) or docstring_args(cls.__init__)
    lines = ['| argument | default | description |', '|---|---|---|']
    for p in list(inspect.signature(cls).parameters.values()):
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = REQUIRED if p.default is inspect.Parameter.empty else p.default
        lines.append(f'| `{p.name}` | {_value_text(default)} | {args.get(p.name, "").replace("|", "/")} |')
    return '\n'.join(lines)


def key_table(table):
    lines = ['| key | type | required | range |', '|---|---|---|---|']
    for key, spec in table.items():
        kind = spec.kind if isinstance(spec.kind, str) else spec.kind.__name__
        rule = spec.rule.text if spec.rule else ', '.join(spec.choices)
        lines.append(f'| `{key}` | {kind}{"" if spec.null else " (not ~)"} | {"yes" if spec.required else ""} | '
                     f'{rule} |')
    return '\n'.join(lines)


def plugin_classes(registry):
    return sorted(((name, cls) for name, cls in registry._obj_map.items()
                   if getattr(cls, '__module__', '').startswith('dlst_plugin.')), key=lambda item: item[0])


def sections():
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    import dlst_plugin  # noqa: F401  (fills the registries)
    from dlst_plugin.data.degradations import FaceDegradation
    from dlst_plugin.options import blocks
    out, shown = [HEADER, '## `train:` of the plugin\'s models\n'], {}
    for name, model in plugin_classes(MODEL_REGISTRY):
        block = getattr(model, 'TRAIN_OPTIONS', None)
        if isinstance(block, type) and block in shown:
            out.append(f'### {name}\n\nThe same keys as {shown[block]}.\n')
        elif isinstance(block, type):
            shown[block] = name
            out.append(f'### {name}\n\n{_first_line(block)}\n\n{block_table(block)}\n')
        else:
            base = next(k for k in model.__mro__[1:] if not k.__module__.startswith('dlst_plugin.'))
            out.append(f'### {name}\n\n{_first_line(model)} It reads the `train:` keys of '
                       f'{base.__module__.split(".")[0]}\'s `{base.__name__}`.\n')
    out.append(f'### `train.stream_pairs`\n\n{_first_line(blocks.StreamPairs)}\n\n{block_table(blocks.StreamPairs)}\n')
    out.append(f'### `val:` of DegradationLearningModel\n\n{block_table(blocks.DegraderVal)}\n')
    out.append('## Datasets\n')
    for name, cls in plugin_classes(DATASET_REGISTRY):
        block = getattr(cls, 'OPTIONS', None)
        if isinstance(block, type):
            out.append(f'### {name}\n\n{_first_line(block)}\n\n{block_table(block)}\n')
    out.append(f'### The degradation recipe (`FaceDegradation`)\n\n{_first_line(FaceDegradation)} Its keys sit in '
               f'the dataset block (and in `train.stream_pairs.degradation`).\n\n{block_table(FaceDegradation)}\n')
    out.append('## Networks (`network_*`: the constructors\' arguments)\n')
    for name, cls in plugin_classes(ARCH_REGISTRY):
        out.append(f'### {name}\n\n{_first_line(cls)}\n\n{network_table(cls)}\n')
    out.append('## BasicSR\'s own keys (from BasicSR 1.4.2\'s source)\n')
    paths = {**B.PATH, **{f'{k}<net>': v for k, v in B.PATH_PREFIXES.items()}}
    for title, table in (('Top level', B.TOP_LEVEL), ('`path:`', paths), ('`logger:`', B.LOGGER), ('`val:`', B.VAL),
                         ('`datasets.train:` loader', B.TRAIN_LOADER)):
        out.append(f'### {title}\n\n{key_table(table)}\n')
    return '\n'.join(out)


def _first_line(obj):
    return (inspect.getdoc(obj) or '').split('\n\n')[0].replace('\n', ' ')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m dlst_plugin.options.reference',
                                     description='Write or check docs/options.md (generated from the declarations).')
    parser.add_argument('--write', action='store_true', help='rewrite docs/options.md')
    parser.add_argument('--check', action='store_true', help='exit 1 when docs/options.md is stale')
    args = parser.parse_args(argv)
    text = sections()
    if args.write:
        from dlst_plugin.fileio.atomic import atomic_write_text
        atomic_write_text(DOC, text)
        print(f'wrote {DOC}')
    elif args.check:
        current = DOC.read_text(encoding='utf-8') if DOC.is_file() else ''
        if current != text:
            print(f'{DOC} is stale: run python -m dlst_plugin.options.reference --write', file=sys.stderr)
            return 1
    else:
        print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
