"""The machinery of the typed option schema: a block of options is a frozen dataclass, each field
declared once with its type (the annotation), default, allowed range and a one-line description.

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class StreamPairs(Block):
        ratio: float = option(0.5, Range(0, 1, lo_open=True, hi_open=True), 'share of streamed pairs ...')

``StreamPairs.decode(mapping, 'train.stream_pairs')`` turns the option file's dict into an instance (defaults
filled in, whole numbers made ints, nested blocks decoded) or raises :class:`OptionsError` listing every
problem; ``StreamPairs.problems(...)`` returns the same findings as lines for the option check. ``~`` (null)
means "the default" for every optional field, as it always has for the plugin's keys.

Why dataclasses (and not msgspec or pydantic): the plugin is a guest in BasicSR's process and adds no
dependency for this; the degradation recipe (``FaceDegradation``) already is one, and decodes the same way;
the messages stay the plugin's own (did-you-mean, "remove the quotes", the YAML 1e-4 pitfall).
"""
import dataclasses
import difflib
import typing

from dlst_plugin.errors import ConfigError

REQUIRED = dataclasses.MISSING
KIND_NAMES = {int: 'a whole number', 'integer': 'an integer', float: 'a number', bool: 'true or false',
              str: 'a string', dict: 'a block of keys', list: 'a list'}


class OptionsError(ConfigError):
    """Options with problems; ``problems`` lists them (one line each). Exit code 2."""

    def __init__(self, source, problems, hint=''):
        self.problems = list(problems)
        count = f'{len(self.problems)} problem{"s" if len(self.problems) > 1 else ""}'
        lines = '\n'.join(f'  - {p}' for p in self.problems)
        super().__init__(f'{source}: {count} in the option file; nothing was run:\n{lines}{hint}')


class Range:
    """An allowed interval of numbers, shown as ``> 0``, ``>= 1`` or ``in [0, 1)``."""

    def __init__(self, lo=None, hi=None, lo_open=False, hi_open=False, note=''):
        self.lo, self.hi, self.lo_open, self.hi_open, self.note = lo, hi, lo_open, hi_open, note

    def __call__(self, value):
        lo_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        hi_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return lo_ok and hi_ok

    @property
    def text(self):
        note = f' {self.note}' if self.note else ''
        if self.hi is None:
            return f'{">" if self.lo_open else ">="} {self.lo}{note}'
        if self.lo is None:
            return f'{"<" if self.hi_open else "<="} {self.hi}{note}'
        return f'in {"(" if self.lo_open else "["}{self.lo}, {self.hi}{")" if self.hi_open else "]"}{note}'


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)


def option(default=REQUIRED, rule=None, doc='', *, factory=None, flatten=False):
    """A field of a :class:`Block`: its default (none: required), range rule and one-line description.
    ``flatten``: a nested block whose keys sit at this block's level (GFP-GAN's degradation keys in a dataset
    block); the field holds the decoded nested block."""
    meta = {'rule': rule, 'doc': doc, 'flatten': flatten}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --- values --------------------------------------------------------------------------------------
def describe(value):
    """``value`` as an error message shows it."""
    if hasattr(value, 'tag') and type(value).__name__ == 'PythonTag':
        return f'a {value!r} value'
    if isinstance(value, str):
        return f'the string {value!r}'
    text = repr(value)
    return f'{type(value).__name__} {text if len(text) < 60 else text[:57] + "..."}'


def _looks_numeric(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def kind_problem(value, kind):
    """What is wrong with ``value`` as a ``kind`` (a Python type; ``int`` takes whole floats such as
    ``!!float 5e3``, ``'integer'`` does not; a tuple of kinds: any of them), or None."""
    if isinstance(kind, tuple):
        if any(kind_problem(value, k) is None for k in kind):
            return None
        return f'expected {" or ".join(KIND_NAMES[k] for k in kind)}, got {describe(value)}'
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {int: number and float(value).is_integer(), 'integer': number and isinstance(value, int), float: number,
          bool: isinstance(value, bool),
          str: isinstance(value, str), dict: isinstance(value, dict), list: isinstance(value, (list, tuple))}[kind]
    if ok:
        return None
    hint = ''
    if isinstance(value, str) and kind in (int, 'integer', float) and _looks_numeric(value):
        exponent = 'e' in value.lower() and '.' not in value
        hint = ' (YAML reads 1e-4 as a string: write 1.0e-4)' if exponent else ' (remove the quotes)'
    return f'expected {KIND_NAMES[kind]}, got {describe(value)}{hint}'


def did_you_mean(key, known, listed=15):
    """``; did you mean X?`` for a close name, else the known names when there are few, else ''."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    if close:
        return f'; did you mean {close[0]}?'
    if 0 < len(known) <= listed:
        return f'; known here: {", ".join(sorted(str(k) for k in known))}'
    return ''


# --- types ---------------------------------------------------------------------------------------
class FieldType(typing.NamedTuple):
    """A field's annotation, unpacked: a base kind, the allowed choices, a nested block, a tuple length."""
    kind: object  # int, float, bool, str, dict, list, or a Block subclass
    choices: tuple = ()
    length: int = 0  # fixed-length tuples: Tuple[float, float]
    item: object = None  # the kind of a tuple's items
    optional: bool = False  # Optional[...]: ~ is the value None (e.g. a degradation stage switched off)


def field_type(annotation):
    """A :class:`FieldType` from an annotation. ``~`` in an option file is None where the annotation is
    ``Optional[X]`` (None is then a value: "off" or "unset"), and the field's default elsewhere."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        optional = len(kinds) < len(args)
        if len(kinds) > 1:  # e.g. Union[str, List[str]]: a folder or a list of folders
            return FieldType(tuple(field_type(k).kind for k in kinds), optional=optional)
        return field_type(kinds[0])._replace(optional=optional)
    if origin is typing.Literal:
        return FieldType(type(args[0]), choices=args)
    if origin in (tuple, typing.Tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return FieldType(list, item=args[0])
        return FieldType(list, length=len(args), item=args[0])
    if origin in (list, typing.List):
        return FieldType(list, item=args[0] if args else None)
    if origin in (dict, typing.Dict):
        return FieldType(dict)
    return FieldType(annotation)


def type_text(ftype):
    """How ``docs/options.md`` names a field's type."""
    if ftype.choices:
        return ' \\| '.join(str(c) for c in ftype.choices)
    if isinstance(ftype.kind, type) and issubclass(ftype.kind, Block):
        return 'block'
    if isinstance(ftype.kind, tuple):
        return ' or '.join(type_text(FieldType(k)) for k in ftype.kind)
    names = {int: 'int', float: 'float', bool: 'bool', str: 'str', dict: 'block', list: 'list'}
    if ftype.kind is list and ftype.item is not None:
        item = names.get(ftype.item, getattr(ftype.item, '__name__', 'any'))
        return f'[{", ".join([item] * ftype.length)}]' if ftype.length else f'list of {item}'
    return names.get(ftype.kind, getattr(ftype.kind, '__name__', 'any'))


# --- blocks --------------------------------------------------------------------------------------
class Block:
    """Base of a typed block of options (a frozen, keyword-only dataclass; see the module docstring)."""

    #: keys BasicSR or the loader read in the same dict, accepted but not decoded (e.g. a dataset's loader keys)
    PASSED_THROUGH: typing.ClassVar[tuple] = ()

    @classmethod
    def fields(cls):
        """{name: (dataclasses.Field, FieldType)} in declaration order."""
        hints = typing.get_type_hints(cls)
        return {f.name: (f, field_type(hints[f.name])) for f in dataclasses.fields(cls)}

    @classmethod
    def keys(cls):
        """Every key the block's mapping may hold (flattened blocks' keys in place of their field)."""
        own = []
        for name, (field, ftype) in cls.fields().items():
            own += list(ftype.kind.keys()) if field.metadata.get('flatten') else [name]
        return tuple(own) + tuple(cls.PASSED_THROUGH)

    @classmethod
    def problems(cls, mapping, where, allowed=()):
        problems = []
        _decode(cls, mapping, where, set(allowed), problems)
        return problems

    @classmethod
    def decode(cls, mapping, where, source=None, allowed=()):
        """An instance from ``mapping`` (None: all defaults), or :class:`OptionsError` with every problem."""
        problems = []
        value = _decode(cls, mapping or {}, where, set(allowed), problems)
        if problems:
            raise OptionsError(source or where, problems)
        return value

    def to_dict(self):
        """The options as a mapping of the option file's shape (flattened blocks' keys in place of their field)."""
        out = {}
        for name, (field, _) in type(self).fields().items():
            value = getattr(self, name)
            if field.metadata.get('flatten') and value is not None:
                out.update(value.to_dict())
            else:
                out[name] = value.to_dict() if isinstance(value, Block) else value
        return out


def default_of(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return REQUIRED


def _decode(cls, mapping, where, allowed, problems):
    if not isinstance(mapping, dict):
        problems.append(f'{where}: expected a block of keys, got {describe(mapping)}')
        return None
    fields, values = cls.fields(), {}
    flattened = {name: spec for name, spec in fields.items() if spec[0].metadata.get('flatten')}
    nested_keys = {key: name for name, (_, ftype) in flattened.items() for key in ftype.kind.keys()}
    for name, (_, ftype) in flattened.items():
        inner = {k: v for k, v in mapping.items() if nested_keys.get(k) == name}
        values[name] = _decode(ftype.kind, inner, where, allowed, problems)
    for key, value in mapping.items():
        if key in nested_keys:
            continue
        if key in fields:
            values[key] = decode_value(value, fields[key], f'{where}.{key}', allowed, problems)
        elif key not in cls.PASSED_THROUGH and f'{where}.{key}' not in allowed:
            problems.append(f'{where}.{key}: unknown key{did_you_mean(key, list(fields))}')
    for name, (field, ftype) in fields.items():
        explicit_none = name in mapping and mapping[name] is None and ftype.optional
        if values.get(name) is None and not explicit_none:
            default = default_of(field)
            if default is REQUIRED and (name not in mapping or mapping[name] is None):
                problems.append(f'{where}.{name}: missing (required)' if name not in mapping else
                                f'{where}.{name}: must be set (~ is not allowed here)')
            values[name] = None if default is REQUIRED else default
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:  # a block's own cross-field rule (__post_init__)
        problems.append(_rule_problem(where, str(err), fields))
        return None


def _rule_problem(where, text, fields):
    """``where.key: rest`` for a message that starts with a field's name, else ``where: text``."""
    head = text.replace(':', ' ').split(' ', 1)[0]
    if head in fields:
        rest = text[len(head):].lstrip(': ')
        return f'{where}.{head}: {rest}'
    return f'{where}: {text}'


def decode_value(value, spec, where, allowed, problems):
    """One field's value, checked (None means the default; the caller fills it in)."""
    field, ftype = spec
    if value is None:
        return None
    if isinstance(ftype.kind, type) and issubclass(ftype.kind, Block):
        return _decode(ftype.kind, value, where, allowed, problems)
    if isinstance(ftype.kind, tuple):  # one of several kinds (a folder or a list of folders): checked as it is
        text = kind_problem(value, ftype.kind)
        if text:
            problems.append(f'{where}: {text}')
        return None if text else value
    if ftype.kind not in KIND_NAMES:  # a type the schema does not check (e.g. a callable)
        return value
    text = kind_problem(value, ftype.kind)
    if text is None and ftype.kind is list:
        text = _list_problem(value, ftype)
    if text is None and ftype.choices and value not in ftype.choices:
        text = f'must be one of {", ".join(map(str, ftype.choices))}, got {describe(value)}'
    rule = field.metadata.get('rule')
    if text is None and rule is not None and isinstance(value, (int, float)) and not rule(value):
        text = f'must be {rule.text}, got {value!r}'
    if text:
        problems.append(f'{where}: {text}')
        return None
    if ftype.kind is int:
        return int(value)
    if ftype.kind is float:
        return float(value)
    if ftype.kind is list and ftype.item is float:
        value = [float(v) for v in value]
    return tuple(value) if ftype.kind is list and ftype.length else value


def _list_problem(value, ftype):
    if ftype.length and len(value) != ftype.length:
        return f'expected {ftype.length} values, got {len(value)}'
    if ftype.item in KIND_NAMES:
        bad = [v for v in value if kind_problem(v, ftype.item)]
        if bad:
            return f'expected {KIND_NAMES[ftype.item]} in each place, got {describe(bad[0])}'
    return None
