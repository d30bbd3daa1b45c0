"""Check a BasicSR option file before anything runs: every problem in one message, exit code 2.

BasicSR 1.4.2 ignores keys it does not read (``pixel_optt`` trains without the L2 loss, ``ema_decayy``
without EMA, ``manual_seedd`` with a random seed), fails with a bare KeyError on a misspelt required key
(``save_checkpoint_freq`` only once training has started) and takes ``batch_size_per_gpu: "2"`` or
``lr: 1e-4`` (a string for YAML) until something deep inside fails. The plugin's launchers (and
``python -m basicsr.train``, GFP-GAN's and Real-ESRGAN's ``train.py``, torchrun) read and check the option
file (:func:`check_command_line`) before BasicSR parses it.

For the plugin's runs (:mod:`dlst_plugin.options.ownership`) every problem is an error and nothing is read,
built or trained from a file with one. Other projects' runs get the same findings as warnings.

Checked: unknown keys at the top level and under ``train``, ``val``, ``path``, ``logger``, ``dist_params``
(with a did-you-mean); types; required keys; ranges; the plugin's typed blocks
(:mod:`dlst_plugin.options.blocks`, datasets' ``OPTIONS``); ``network_*`` and loss blocks against their
class's constructor; optimizer and scheduler blocks; dataset types and the data roots each type needs
(present, not necessarily existing yet: option files are written and checked on machines without the
data); cheap checks of files a plugin model names (``Model.option_problems``).

Deliberate extra keys (read by code of your own): list them under a top-level ``allow_unknown``, e.g.
``allow_unknown: [train.my_weight, path.strict_load_g]``; every check of a listed key is skipped.
"""
import sys

from dlst_plugin.options import basicsr_keys as B
from dlst_plugin.options import check_typed
from dlst_plugin.options.file import apply_force_yml, parse_launcher_args, read_option_file
from dlst_plugin.options.schema import OptionsError, describe, did_you_mean, kind_problem

ALLOW_KEY = 'allow_unknown'
KINDS = {'count': int, 'num_gpu': 'integer', int: 'integer'}  # BasicSR's kinds -> the schema's


def check_command_line(argv, is_train):
    """Read the ``-opt`` file of a BasicSR command line, apply ``--force_yml``, decide whose run it is
    (:func:`dlst_plugin.options.ownership.decide`) and check it. Returns ``(options, problems, plugin run)``;
    ``(None, [], launched by the plugin)`` without ``-opt`` (BasicSR's own parser reports that). A plugin run
    raises :class:`OptionsError` (every problem) or ConfigError (an unreadable file); another project's run
    gets its problems back, and None for options the plugin could not read (BasicSR then reads them its way)."""
    from dlst_plugin.errors import ConfigError
    from dlst_plugin.options import ownership
    path, force_yml = parse_launcher_args(argv)
    if path is None:
        return None, [], ownership.launched_by_plugin()
    try:
        opt = read_option_file(path)
    except ConfigError as err:
        if ownership.launched_by_plugin():
            raise
        return None, [str(err)], ownership.decide({})
    problems = apply_force_yml(opt, force_yml)
    plugin_run = ownership.decide(opt)
    problems = check_options(opt, is_train, source=path, problems=problems, plugin_run=plugin_run,
                             check_files=plugin_run)
    return opt, problems, plugin_run


def check_options(opt, is_train=True, source='option file', problems=(), plugin_run=True, check_files=False):
    """The problems of ``opt`` (a dict read from an option file); raises :class:`OptionsError` listing them all
    for a plugin run. ``check_files``: also the files a plugin model needs (a launch; option files are written
    and checked on machines without them)."""
    checker = Checker(opt, is_train, plugin_run)
    checker.check_files = check_files
    checker.problems.extend(problems)
    checker.run()
    if checker.problems and plugin_run:
        raise OptionsError(source, checker.problems, checker.hint())
    return checker.problems


def check_launch(argv, is_train):
    """The option check of a launch (BasicSR's ``parse_options``, whatever started it): ``(options, plugin run)``.
    A plugin run with a problem ends here: one ``error:`` block on stderr and exit code 2, no traceback, from
    every launcher (the plugin's, ``python -m basicsr.train``, GFP-GAN's and Real-ESRGAN's ``train.py``).
    Another project's run gets its findings as warnings (stderr now, its log file once BasicSR opens it)."""
    import os

    from dlst_plugin.checkpoints.training_state import report
    from dlst_plugin.errors import ConfigError
    try:
        opt, problems, plugin_run = check_command_line(argv, is_train)
    except ConfigError as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    if problems:
        rank = {'rank': int(os.environ.get('RANK', 0) or 0)}
        lines = '\n'.join(f'  - {p}' for p in problems)
        report(rank, f'the dlst-plugin option check found {len(problems)} thing{"s" if len(problems) > 1 else ""} '
               f'in this option file; this run is not the plugin\'s, so it goes on as BasicSR runs it '
               f'(DLST_PLUGIN_AUTOLOAD=0 silences this):\n{lines}')
    return opt, plugin_run


def warn(message):
    print(f'warning: {message}', file=sys.stderr, flush=True)


class Checker:
    """Collects the problems of one option file (see the module docstring)."""

    def __init__(self, opt, is_train, plugin_run=True):
        self.opt, self.is_train, self.plugin_run, self.check_files = opt, is_train, plugin_run, False
        self.problems, self.unknown_keys = [], []
        allowed = opt.get(ALLOW_KEY) or []
        self.allowed = {str(k) for k in allowed} if isinstance(allowed, (list, tuple)) else set()
        self.model = check_typed.describe_model(opt.get('model_type'))

    def problem(self, where, text):
        if where not in self.allowed:
            self.problems.append(f'{where}: {text}')

    def unknown(self, where, known, what='unknown key'):
        """``where`` is a key nothing reads: a problem unless ``allow_unknown`` lists it."""
        if where in self.allowed:
            return
        self.unknown_keys.append(where)
        self.problem(where, f'{what}{did_you_mean(where.rsplit(".", 1)[-1], list(known))}')

    def value(self, where, value, spec):
        if value is None:
            if not spec.null:
                self.problem(where, 'must be set (~ is not allowed here)' if spec.required else
                             'must not be ~ (remove the line to get the default)')
            return
        if spec.kind == 'any' or (spec.kind == 'num_gpu' and value == 'auto'):
            return
        text = kind_problem(value, KINDS.get(spec.kind, spec.kind))
        if text is None and spec.choices and value not in spec.choices:
            text = f'must be one of {", ".join(map(str, spec.choices))}, got {describe(value)}'
        if text is None and spec.rule is not None and isinstance(value, (int, float)) and not spec.rule(value):
            text = f'must be {spec.rule.text}, got {value!r}'
        if text:
            self.problem(where, text)

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

    def block_of(self, block_cls, where, mapping):
        """Check ``mapping`` against a typed block (:class:`dlst_plugin.options.schema.Block`)."""
        for line in block_cls.problems(mapping, where, self.allowed):
            key, _, text = line.partition(': ')
            if text.startswith('unknown key'):
                self.unknown_keys.append(key)
            self.problems.append(line)

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
        check_typed.check_networks(self)
        if isinstance(self.opt.get('path'), dict):
            self.path()
        if self.is_train and self.opt.get('train') is not None:
            check_typed.check_train(self)
        if self.is_train and self.opt.get('logger') is not None:
            self.logger()
        if self.opt.get('val') is not None:
            self.val()
        if self.opt.get('dist_params') is not None:
            self.block('dist_params', self.opt['dist_params'], B.DIST_PARAMS)
        if self.is_train and hasattr(self.model.cls, 'option_rules'):
            self.problems.extend(self.model.cls.option_rules(self.opt))
        if self.check_files and not self.problems and self.is_train and hasattr(self.model.cls, 'option_problems'):
            self.problems.extend(self.model.cls.option_problems(self.opt))  # reads files: only when all else is good

    def top_level(self):
        model, opt = self.model, self.opt
        if model.problem:
            self.problem('model_type', model.problem)
        known = list(B.TOP_LEVEL) + list(model.top_level)
        for key, value in opt.items():
            if key in B.TOP_LEVEL:
                self.value(key, value, B.TOP_LEVEL[key])
            elif key.startswith(B.NETWORK_PREFIX) or key in model.top_level:
                continue
            elif key in B.SET_BY_BASICSR:
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
            if not self.block(where, ds, B.DATASET, strict=False):
                continue
            if phase == 'train' or prefix == 'train':
                self.train_loader(where, ds)
            check_typed.check_dataset(self, where, ds)
        if self.is_train and 'train' not in datasets:
            self.problem('datasets.train', 'missing: a training run needs a train dataset')

    def train_loader(self, where, ds):
        self.block(where, ds, B.TRAIN_LOADER, strict=False)
        mode = ds.get('prefetch_mode')
        if mode not in B.PREFETCH_MODES:
            self.problem(f'{where}.prefetch_mode', f'must be ~, cpu or cuda, got {describe(mode)}')
        elif mode == 'cuda' and ds.get('pin_memory') is not True:
            self.problem(f'{where}.pin_memory', 'prefetch_mode cuda needs pin_memory: true')

    def path(self):
        for key, value in self.opt['path'].items():
            where = f'path.{key}'
            prefix = next((p for p in B.PATH_PREFIXES if str(key).startswith(p)), None)
            if key in B.PATH:
                self.value(where, value, B.PATH[key])
            elif prefix is not None:
                self.value(where, value, B.PATH_PREFIXES[prefix])
            elif key in B.PATH_SET_BY_BASICSR:
                self.problem(where, 'is set by BasicSR from name (or path.experiments_root) and this value would be '
                             'ignored: remove it')
            else:
                self.unknown(where, list(B.PATH) + [p + 'g' for p in B.PATH_PREFIXES])

    def logger(self):
        logger = self.opt['logger']
        if not self.block('logger', logger, B.LOGGER):
            return
        wandb = logger.get('wandb')
        if wandb is not None and self.block('logger.wandb', wandb, B.WANDB):
            if wandb.get('project') is not None and logger.get('use_tb_logger') is not True:
                self.problem('logger.use_tb_logger', 'must be true when logger.wandb.project is set (BasicSR syncs '
                             'wandb from tensorboard)')

    def val(self):
        model, val = self.model, self.opt['val']
        table = {**B.VAL, **(model.table.val if model.table else {})}
        table['save_img'] = B.req(bool)
        if self.is_train:
            table['val_freq'] = B.req('count', B.AT_LEAST_ONE)
        own = model.val_block.keys() if model.val_block else ()
        if not self.block('val', val, table, strict=model.strict, extra=own):
            return
        if model.val_block:
            self.block_of(model.val_block, 'val', {k: v for k, v in val.items() if k in own})
        if not self.is_train and val.get('save_img') and model.reads_suffix and 'suffix' not in val:
            self.problem('val.suffix', 'missing: a test run that saves images names them with it (~: the run name)')
        metrics = val.get('metrics')
        if isinstance(metrics, dict):
            for name, metric in metrics.items():
                if self.block(f'val.metrics.{name}', metric, B.METRIC_KEYS, strict=False):
                    check_typed.check_metric(self, f'val.metrics.{name}', metric)
        elif metrics is not None:
            self.problem('val.metrics', f'expected a block of metrics, got {describe(metrics)}')
