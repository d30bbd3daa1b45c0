"""Check a BasicSR option file before anything runs: every problem in one message, exit code 2.

BasicSR 1.4.2 ignores keys it does not read (``pixel_optt`` trains without the L2 loss, ``ema_decayy``
without EMA, ``manual_seedd`` with a random seed), fails with a bare KeyError on a misspelt required key
(``save_checkpoint_freq`` only once training has started) and takes ``batch_size_per_gpu: "2"`` or
``lr: 1e-4`` (a string for YAML) until something deep inside fails. ``dlst_plugin.train`` /
``dlst_plugin.test`` (and ``python -m basicsr.train``, torchrun) call :func:`check_command_line` before
BasicSR parses the file, so nothing is read, built or trained from a file with a problem.

Checked, with the key lists of :mod:`dlst_plugin.option_tables` (BasicSR's, from its source) and of the
plugin's model classes (``TRAIN_OPTIONS``, ``VAL_OPTIONS``): unknown keys at the top level and under
``train``, ``val``, ``path``, ``logger``, ``dist_params`` (with a did-you-mean); types; required keys;
ranges; ``network_*`` and loss blocks against their class's constructor; optimizer and scheduler
blocks; dataset types and the data roots each type needs (present, not necessarily existing yet:
option files are written and checked on machines without the data; the dataset names a missing folder
when it is built).

Deliberate extra keys (read by code of your own): list them under a top-level ``allow_unknown``, e.g.
``allow_unknown: [train.my_weight, my_plugin_setting]``; the error message says so too.
"""
import difflib
import sys

from dlst_plugin import option_tables as T
from dlst_plugin import options_models
from dlst_plugin.errors import ConfigError
from dlst_plugin.option_file import PythonTag, apply_force_yml, parse_launcher_args, read_option_file

ALLOW_KEY = 'allow_unknown'
MAX_KNOWN_LISTED = 15
KIND_NAMES = {int: 'an integer', float: 'a number', bool: 'true or false', str: 'a string', dict: 'a block of keys',
              list: 'a list', 'count': 'a whole number', 'num_gpu': 'an integer or auto'}


class OptionsError(ConfigError):
    """An option file with problems; ``problems`` lists them (one line each)."""

    def __init__(self, source, problems, hint=''):
        self.problems = list(problems)
        count = f'{len(problems)} problem{"s" if len(problems) > 1 else ""}'
        lines = '\n'.join(f'  - {p}' for p in problems)
        super().__init__(f'{source}: {count} in the option file; nothing was run:\n{lines}{hint}')


def check_command_line(argv, is_train):
    """Read the ``-opt`` file of a BasicSR command line, apply ``--force_yml``, check it; return the options
    (None without ``-opt``: BasicSR's own parser reports that)."""
    path, force_yml = parse_launcher_args(argv)
    if path is None:
        return None
    opt = read_option_file(path)
    problems = apply_force_yml(opt, force_yml)
    check_options(opt, is_train, source=path, problems=problems)
    return opt


def check_options(opt, is_train=True, source='option file', problems=()):
    """Raise :class:`OptionsError` listing every problem of ``opt`` (a dict read from an option file)."""
    checker = Checker(opt, is_train)
    checker.problems.extend(problems)
    checker.run()
    if checker.problems:
        raise OptionsError(source, checker.problems, checker.hint())


def describe(value):
    if isinstance(value, PythonTag):
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
    """What is wrong with ``value`` as a ``kind`` (None when nothing)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {int: number and isinstance(value, int), float: number, bool: isinstance(value, bool),
          'count': number and float(value).is_integer(), str: isinstance(value, str),
          dict: isinstance(value, dict), list: isinstance(value, (list, tuple))}[kind]
    if ok:
        return None
    hint = ''
    if isinstance(value, str) and kind in (int, float, 'count') and _looks_numeric(value):
        exponent = 'e' in value.lower() and '.' not in value
        hint = ' (YAML reads 1e-4 as a string: write 1.0e-4)' if exponent else ' (remove the quotes)'
    return f'expected {KIND_NAMES[kind]}, got {describe(value)}{hint}'


def present(value):
    return value is not None and value != '' and value != [] and value != {}


class Checker:
    """Collects the problems of one option file (see the module docstring)."""

    def __init__(self, opt, is_train):
        self.opt, self.is_train = opt, is_train
        self.problems, self.unknown_keys = [], []
        allowed = opt.get(ALLOW_KEY) or []
        self.allowed = {str(k) for k in allowed} if isinstance(allowed, (list, tuple)) else set()
        self.model = options_models.describe_model(opt.get('model_type'))

    def problem(self, where, text):
        self.problems.append(f'{where}: {text}')

    def unknown(self, where, known, what='unknown key'):
        """``where`` is a key nothing reads: a problem unless ``allow_unknown`` lists it."""
        if where in self.allowed:
            return
        key = where.rsplit('.', 1)[-1]
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        if close:
            hint = f'; did you mean {close[0]}?'
        elif 0 < len(known) <= MAX_KNOWN_LISTED:
            hint = f'; known here: {", ".join(sorted(known))}'
        else:
            hint = ''
        self.unknown_keys.append(where)
        self.problem(where, f'{what}{hint}')

    def value(self, where, value, spec):
        if value is None:
            if not spec.null:
                self.problem(where, 'must be set (~ is not allowed here)' if spec.required else
                             'must not be ~ (remove the line to get the default)')
            return
        kind = spec.kind
        if kind == 'any' or (kind == 'num_gpu' and value == 'auto'):
            return
        text = kind_problem(value, int if kind == 'num_gpu' else kind)
        if text:
            self.problem(where, text)
            return
        rule = T.RANGES.get(where.rsplit('.', 1)[-1])
        if rule and isinstance(value, (int, float)) and not rule[1](value):
            self.problem(where, f'must be {rule[0]}, got {value!r}')

    def block(self, where, block, table, strict=True, extra=()):
        """Check the keys of ``block`` against ``table`` ({key: Key}); False when it is not a block at all."""
        if not isinstance(block, dict):
            self.problem(where, f'expected a block of keys, got {describe(block)}')
            return False
        for key, value in block.items():
            if key in table:
                self.value(f'{where}.{key}', value, table[key])
            elif strict and key not in extra:
                self.unknown(f'{where}.{key}', list(table) + list(extra))
        for key, spec in table.items():
            if spec.required and key not in block:
                self.problem(f'{where}.{key}', 'missing (required)')
        return True

    def hint(self):
        if not self.unknown_keys:
            return ''
        return (f'\nA key that is there on purpose (read by code of your own) goes in a top-level list, which the '
                f'check then skips, e.g. {ALLOW_KEY}: [{", ".join(self.unknown_keys[:2])}]')

    # --- sections -------------------------------------------------------------------------------
    def run(self):
        self.top_level()
        if isinstance(self.opt.get('datasets'), dict):
            self.datasets()
        options_models.check_networks(self)
        if isinstance(self.opt.get('path'), dict):
            self.path()
        if self.is_train and self.opt.get('train') is not None:
            options_models.check_train(self)
        if self.is_train and self.opt.get('logger') is not None:
            self.logger()
        if self.opt.get('val') is not None:
            self.val()
        if self.opt.get('dist_params') is not None:
            self.block('dist_params', self.opt['dist_params'], T.DIST_PARAMS)

    def top_level(self):
        model, opt = self.model, self.opt
        if model.problem:
            self.problem('model_type', model.problem)
        known = list(T.TOP_LEVEL) + list(model.top_level)
        for key, value in opt.items():
            if key in T.TOP_LEVEL:
                self.value(key, value, T.TOP_LEVEL[key])
            elif key.startswith(T.NETWORK_PREFIX) or key in model.top_level:
                continue
            elif key in T.SET_BY_BASICSR:
                self.problem(key, 'is set by BasicSR at start-up (from the command line); remove it')
            elif model.strict:
                self.unknown(key, known)
        needed = ['name', 'model_type', 'num_gpu', 'datasets', 'path']
        needed += ['train', 'logger'] if self.is_train else ['val']
        needed += ['val'] if model.table is not None and model.table.val_required else []
        for key in dict.fromkeys(needed):
            if key not in opt:
                self.problem(key, 'missing (required)')
        if opt.get(ALLOW_KEY) is not None and kind_problem(opt[ALLOW_KEY], list) is None:
            for entry in opt[ALLOW_KEY]:
                if not isinstance(entry, str):
                    self.problem(ALLOW_KEY, f'entries are dotted key names such as train.my_key, got {describe(entry)}')

    def datasets(self):
        datasets = self.opt['datasets']
        if not datasets:
            self.problem('datasets', 'is empty: name at least one dataset')
        for phase, ds in datasets.items():
            where, prefix = f'datasets.{phase}', str(phase).split('_')[0]
            if self.is_train and phase != 'train' and prefix != 'val':
                self.problem(where, "a training run reads datasets named train, val or val_<something> only")
            elif not self.is_train and prefix not in ('train', 'val', 'test'):
                self.problem(where, 'a test run reads datasets named test_<something> (or val_<something>) only')
            if not self.block(where, ds, T.DATASET, strict=False):
                continue
            if phase == 'train' or prefix == 'train':
                self.train_loader(where, ds)
            options_models.check_dataset(self, where, ds)
        if self.is_train and 'train' not in datasets:
            self.problem('datasets.train', 'missing: a training run needs a train dataset')

    def train_loader(self, where, ds):
        self.block(where, ds, T.TRAIN_LOADER, strict=False)
        mode = ds.get('prefetch_mode')
        if mode not in T.PREFETCH_MODES:
            self.problem(f'{where}.prefetch_mode', f'must be ~, cpu or cuda, got {describe(mode)}')
        elif mode == 'cuda' and ds.get('pin_memory') is not True:
            self.problem(f'{where}.pin_memory', 'prefetch_mode cuda needs pin_memory: true')

    def path(self):
        for key, value in self.opt['path'].items():
            where = f'path.{key}'
            prefix = next((p for p in T.PATH_PREFIXES if str(key).startswith(p)), None)
            if key in T.PATH:
                self.value(where, value, T.PATH[key])
            elif prefix is not None:
                self.value(where, value, T.PATH_PREFIXES[prefix])
            elif key in T.PATH_SET_BY_BASICSR:
                self.problem(where, 'is set by BasicSR from name (or path.experiments_root) and this value would be '
                             'ignored: remove it')
            else:
                self.unknown(where, list(T.PATH) + [p + 'g' for p in T.PATH_PREFIXES])

    def logger(self):
        logger = self.opt['logger']
        if not self.block('logger', logger, T.LOGGER):
            return
        wandb = logger.get('wandb')
        if wandb is not None and self.block('logger.wandb', wandb, T.WANDB):
            if wandb.get('project') is not None and logger.get('use_tb_logger') is not True:
                self.problem('logger.use_tb_logger', 'must be true when logger.wandb.project is set (BasicSR syncs '
                             'wandb from tensorboard)')

    def val(self):
        model = self.model
        table = {**T.VAL, **model.val}
        if self.is_train:
            table.update(val_freq=T.req('count'), save_img=T.req(bool))
        else:
            table['save_img'] = T.req(bool)
        if not self.block('val', self.opt['val'], table, strict=model.strict):
            return
        val = self.opt['val']
        if not self.is_train and val.get('save_img') and model.reads_suffix and 'suffix' not in val:
            self.problem('val.suffix', 'missing: a test run that saves images names them with it (~: the run name)')
        metrics = val.get('metrics')
        if isinstance(metrics, dict):
            for name, metric in metrics.items():
                if self.block(f'val.metrics.{name}', metric, T.METRIC_KEYS, strict=False):
                    options_models.check_metric(self, f'val.metrics.{name}', metric)
        elif metrics is not None:
            self.problem('val.metrics', f'expected a block of metrics, got {describe(metrics)}')


def warn(message):
    print(f'warning: {message}', file=sys.stderr, flush=True)
