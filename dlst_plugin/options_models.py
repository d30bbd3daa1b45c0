"""The model-dependent part of the option check (:mod:`dlst_plugin.options_check`): which ``train:`` and
``val:`` keys the model reads, its networks, and the blocks that become objects (``network_*``, losses,
optimizers, the scheduler, metrics, datasets), checked against the constructor that will receive them.

A model's keys come from, in this order: ``TRAIN_OPTIONS`` (and ``VAL_OPTIONS``) on the model class (the
plugin's models), :data:`dlst_plugin.option_tables.BASICSR_MODELS` for BasicSR's own model classes. A
model known to neither (another package's) is checked for types and required keys only, with a warning.
"""
import inspect
from typing import NamedTuple

from dlst_plugin import option_tables as T

POSITIONAL = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
PLUGIN_LOSSES = ('pixel_opt', 'perceptual_opt', 'vgg_opt', 'gan_opt')
_WARNED = set()


class ModelInfo(NamedTuple):
    name: object = None
    cls: type = None
    table: T.ModelTable = None  # None: a model the checker has no key list for
    plugin: bool = False
    problem: str = None

    @property
    def strict(self):
        return self.table is not None

    @property
    def top_level(self):
        return self.table.top_level if self.table else ()

    @property
    def val(self):
        return self.table.val if self.table else {}

    @property
    def reads_suffix(self):
        validation = getattr(self.cls, 'nondist_validation', None)
        owner = getattr(validation, '__qualname__', '').split('.')[0]
        return owner in ('SRModel', 'HiFaceGANModel', 'VideoBaseModel')


def lookup(registry, name):
    """The class registered as ``name`` in a BasicSR registry (also under BasicSR's ``_basicsr`` suffix, and
    GFP-GAN's archs, which are imported on demand), or None."""
    if not isinstance(name, str):
        return None
    for key in (name, f'{name}_basicsr'):
        if key in registry._obj_map:
            return registry._obj_map[key]
    from basicsr.utils.registry import ARCH_REGISTRY
    if registry is ARCH_REGISTRY:
        from dlst_plugin.archs.external import import_external_arch
        if import_external_arch(name):  # raises ExternalArchError (an ImportError) naming the extra to install
            return registry._obj_map.get(name)
    return None


def _registered(registry):
    return sorted({k[:-len('_basicsr')] if k.endswith('_basicsr') else k for k in registry._obj_map})


def unknown_type(checker, where, name, registry, what):
    import difflib
    close = difflib.get_close_matches(str(name), _registered(registry), n=1, cutoff=0.6)
    hint = f'; did you mean {close[0]}?' if close else ''
    checker.problem(where, f'unknown {what} {name!r}{hint} (not in BasicSR\'s registry: is the package that '
                    f'registers it imported, e.g. with plugin: !!python/name:<module>.<name>?)')


def _as_key(spec):
    if isinstance(spec, T.Key):
        return spec
    if spec in (int, float):
        return T.num(spec)
    return T.Key(spec if spec in (bool, str, dict, list) else 'any')


def _plugin_table(cls):
    train = {key: _as_key(spec) for key, spec in cls.TRAIN_OPTIONS.items()}
    train.update(total_iter=T.req('count'), warmup_iter=T.num('count'), optim_g=T.req(dict), scheduler=T.Key(dict))
    val = getattr(cls, 'VAL_OPTIONS', {})
    return T.ModelTable(train, T.PLUGIN_NETWORKS, val={k: _as_key(v) for k, v in val.items()},
                        loss_needed=PLUGIN_LOSSES)


def describe_model(model_type):
    from basicsr.utils.registry import MODEL_REGISTRY
    cls = lookup(MODEL_REGISTRY, model_type)
    if cls is None:
        if not isinstance(model_type, str):
            return ModelInfo(model_type)
        import difflib
        close = difflib.get_close_matches(model_type, _registered(MODEL_REGISTRY), n=1, cutoff=0.6)
        return ModelInfo(model_type, problem=f'unknown model type {model_type!r}'
                         + (f'; did you mean {close[0]}?' if close else ''))
    if hasattr(cls, 'TRAIN_OPTIONS'):
        return ModelInfo(model_type, cls, _plugin_table(cls), plugin=True)
    if cls.__module__.startswith('basicsr.') and cls.__name__ in T.BASICSR_MODELS:
        return ModelInfo(model_type, cls, T.BASICSR_MODELS[cls.__name__])
    if model_type not in _WARNED:
        _WARNED.add(model_type)
        from dlst_plugin.options_check import warn
        warn(f'model type {model_type} is not known to the option checker: its train/val/top-level keys are '
             'checked for types only, not for typos (give the class a TRAIN_OPTIONS dict, {key: type})')
    return ModelInfo(model_type, cls)


def signature_problems(checker, where, cls, kwargs, skip=('type', ), exclude=()):
    """Check ``kwargs`` against ``cls``'s constructor (or function): arguments it does not take, and the ones
    it needs that are missing."""
    try:
        params = [p for p in inspect.signature(cls).parameters.values() if p.name not in exclude]
    except (TypeError, ValueError):
        return
    names = [p.name for p in params if p.kind in POSITIONAL]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    for key in kwargs:
        if key not in skip and key not in names and not takes_any:
            checker.problem(f'{where}.{key}', f'{cls.__name__} takes no argument {key!r}'
                            + _did_you_mean(key, names))
    for p in params:
        if p.kind in POSITIONAL and p.default is inspect.Parameter.empty and p.name not in kwargs:
            checker.problem(f'{where}.{p.name}', f'missing: {cls.__name__} needs it')


def _did_you_mean(key, names):
    import difflib
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f'; did you mean {close[0]}?' if close else f' (it takes: {", ".join(names)})'


def _typed_block(checker, where, block, registry, what):
    """The class a ``{type: ..., ...}`` block names, or None (problems recorded)."""
    from dlst_plugin.archs.external import ExternalArchError
    if not isinstance(block, dict):
        checker.problem(where, f'expected a block of keys with a type, got {block!r}')
        return None
    if 'type' not in block:
        checker.problem(f'{where}.type', 'missing (required)')
        return None
    try:
        cls = lookup(registry, block['type'])
    except ExternalArchError as err:
        checker.problem(f'{where}.type', str(err))
        return None
    if cls is None:
        unknown_type(checker, f'{where}.type', block['type'], registry, what)
    return cls


def check_networks(checker):
    from basicsr.utils.registry import ARCH_REGISTRY
    opt, model = checker.opt, checker.model
    networks = [k for k in opt if str(k).startswith(T.NETWORK_PREFIX)]
    for key in networks:
        cls = _typed_block(checker, key, opt[key], ARCH_REGISTRY, 'network type')
        if cls is not None:
            signature_problems(checker, key, cls, opt[key])
    if 'network_g' not in opt:
        checker.problem('network_g', 'missing (required)')
    if not (checker.is_train and model.table):
        return
    for key in networks:
        if key not in model.table.networks:
            checker.problem(key, f'{model.name} builds no {key}: remove it (--auto_resume would also look for '
                            f'net_{key[len(T.NETWORK_PREFIX):]}_<iter>.pth)')
    train = opt.get('train') if isinstance(opt.get('train'), dict) else {}
    gan = train.get('gan_opt') if model.plugin else True
    if model.plugin and 'network_d' in opt and not gan:
        checker.problem('network_d', 'is set but train.gan_opt is not, so no discriminator is built: add gan_opt or '
                        'remove network_d')
    if 'network_d' in model.table.networks and gan and 'network_d' not in opt:
        checker.problem('network_d', f'missing: {model.name} trains a discriminator')


def check_train(checker):
    from basicsr.utils.registry import LOSS_REGISTRY
    train, model = checker.opt['train'], checker.model
    table = model.table.train if model.table else {**T.BASICSR_MODELS['SRModel'].train, 'scheduler': T.Key(dict),
                                                   'optim_g': T.Key(dict)}
    if not checker.block('train', train, table, strict=model.strict):
        return
    for key, value in train.items():
        if str(key).startswith('optim_') and isinstance(value, dict):
            check_optimizer(checker, f'train.{key}', value)
        elif str(key).endswith('_opt') and isinstance(value, dict):
            cls = _typed_block(checker, f'train.{key}', value, LOSS_REGISTRY, 'loss type')
            if cls is not None:
                signature_problems(checker, f'train.{key}', cls, value)
    if isinstance(train.get('scheduler'), dict):
        check_scheduler(checker, train['scheduler'])
    if model.table and model.table.loss_needed and not any(train.get(k) for k in model.table.loss_needed):
        checker.problem('train', f'no loss: set at least one of {", ".join(model.table.loss_needed)}')
    if model.plugin:
        if getattr(model.cls, 'REQUIRE_GAN', False) and not train.get('gan_opt'):
            checker.problem('train.gan_opt', f'missing: {model.name} learns from the adversarial term')
        if train.get('gan_opt') and 'optim_d' not in train:
            checker.problem('train.optim_d', 'missing: train.gan_opt trains a discriminator, which needs an optimizer')


def check_optimizer(checker, where, block):
    import torch
    from basicsr.models.base_model import BaseModel
    model = checker.model
    for key in ('type', 'lr'):
        if key not in block:
            checker.problem(f'{where}.{key}', 'missing (required)')
    if 'lr' in block:
        checker.value(f'{where}.lr', block['lr'], T.req(float))
    betas = block.get('betas')
    if betas is not None and not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        checker.problem(f'{where}.betas', f'expected two numbers in [0, 1), got {betas!r}')
    kind = block.get('type')
    if model.cls is not None and model.cls.get_optimizer is BaseModel.get_optimizer and kind not in (None, 'Adam'):
        checker.problem(f'{where}.type', f'{model.name} (BasicSR 1.4.2) supports only Adam, got {kind!r}')
    extra = [k for k in block if k not in ('type', 'lr') and not (model.plugin and str(k).endswith('_lr'))]
    if model.table and model.table.optim_keys is not None:
        for key in extra:
            if key not in model.table.optim_keys:
                checker.unknown(f'{where}.{key}', (), f'unknown key ({model.name} reads only '
                                f'{" and ".join(model.table.optim_keys)} here)')
    elif isinstance(kind, str) and isinstance(getattr(torch.optim, kind, None), type):
        signature_problems(checker, where, getattr(torch.optim, kind), {k: block[k] for k in extra},
                           exclude=('params', 'lr'))


def check_scheduler(checker, block):
    from basicsr.models import lr_scheduler
    from basicsr.models.base_model import BaseModel
    model = checker.model
    if model.cls is None or model.cls.setup_schedulers is not BaseModel.setup_schedulers:
        return
    kind = block.get('type')
    if kind not in T.SCHEDULERS:
        checker.problem('train.scheduler.type', f'must be one of {", ".join(T.SCHEDULERS)}, got {kind!r}')
        return
    cls = lr_scheduler.CosineAnnealingRestartLR if kind.startswith('Cosine') else lr_scheduler.MultiStepRestartLR
    signature_problems(checker, 'train.scheduler', cls, block, exclude=('optimizer', 'last_epoch'))


def check_metric(checker, where, block):
    from basicsr.utils.registry import METRIC_REGISTRY
    function = lookup(METRIC_REGISTRY, block.get('type'))
    if function is None:
        unknown_type(checker, f'{where}.type', block.get('type'), METRIC_REGISTRY, 'metric')
        return
    signature_problems(checker, where, function, block, skip=('type', 'better'), exclude=('img', 'img2'))
    if block.get('better', 'higher') not in ('higher', 'lower'):
        checker.problem(f'{where}.better', f'must be higher or lower, got {block["better"]!r}')


def check_dataset(checker, where, ds):
    """``type`` is registered; the data roots (and keys read with ``[]``) the type needs are present; with
    a class that lists its keys in ``OPTIONS`` (the plugin's datasets), every other key is one of them."""
    from basicsr.utils.registry import DATASET_REGISTRY

    from dlst_plugin.options_check import present
    cls = lookup(DATASET_REGISTRY, ds.get('type'))
    if cls is None:
        if 'type' in ds:
            unknown_type(checker, f'{where}.type', ds['type'], DATASET_REGISTRY, 'dataset type')
        return
    needed = list(T.DATASET_REQUIRED.get(cls.__name__, ()))
    if cls.__name__ == 'SecondOrderFaceDataset' and ds.get('mode', 'second_order') == 'second_order':
        ratio = ds.get('ratio', 0.5)
        if not isinstance(ratio, (int, float)) or ratio < 1:
            needed.append('dataroot_hq')
    for key in needed:
        if not present(ds.get(key)):
            checker.problem(f'{where}.{key}', f'missing: {cls.__name__} needs it')
    known = getattr(cls, 'OPTIONS', None)
    if known:
        for key in ds:
            if key not in known and key not in ('phase', 'scale'):
                checker.unknown(f'{where}.{key}', known)
