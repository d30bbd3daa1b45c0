"""The model-dependent part of the option check (:mod:`dlst_plugin.options.check`): which ``train:`` and
``val:`` keys the model reads, its networks, and the blocks that become objects (``network_*``, losses,
optimizers, the scheduler, metrics, datasets), checked against what will receive them.

A model's keys come from its typed blocks (``TRAIN_OPTIONS`` / ``VAL_OPTIONS`` of the plugin's model
classes, :mod:`dlst_plugin.options.blocks`), else from :data:`dlst_plugin.options.basicsr_keys.MODELS` (BasicSR's,
GFP-GAN's and Real-ESRGAN's model classes). A model known to neither is checked for types and required keys
only. Network blocks are checked against their class's constructor signature (the constructors are the
declaration of a network's options). Functions here receive the running ``Checker``; they never import it.
"""
import inspect
from typing import NamedTuple

from dlst_plugin.options import basicsr_keys as B
from dlst_plugin.options.schema import Block, did_you_mean

POSITIONAL = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
PLUGIN_LOSSES = ('pixel_opt', 'perceptual_opt', 'vgg_opt', 'gan_opt')


class ModelInfo(NamedTuple):
    name: object = None
    cls: type = None
    table: B.ModelTable = None  # None: a model the checker has no key list for
    train_block: type = None  # a plugin model's typed train block
    val_block: type = None
    problem: str = None

    @property
    def plugin(self):
        return self.train_block is not None

    @property
    def strict(self):
        return self.table is not None

    @property
    def top_level(self):
        return self.table.top_level if self.table else ()

    @property
    def reads_suffix(self):
        validation = getattr(self.cls, 'nondist_validation', None)
        owner = getattr(validation, '__qualname__', '').split('.')[0]
        return owner in ('SRModel', 'HiFaceGANModel', 'VideoBaseModel')


def lookup(registry, name, import_external=True):
    """The class registered as ``name`` in a BasicSR registry (also under BasicSR's ``_basicsr`` suffix), or
    None. ``import_external``: import GFP-GAN's archs for a name they register (never for another project's
    run: it would change what that run can build)."""
    if not isinstance(name, str):
        return None
    for key in (name, f'{name}_basicsr'):
        if key in registry._obj_map:
            return registry._obj_map[key]
    from basicsr.utils.registry import ARCH_REGISTRY
    if registry is ARCH_REGISTRY and import_external:
        from dlst_plugin.archs.external import import_external_arch
        if import_external_arch(name):  # raises ExternalArchError (an ImportError) naming the extra to install
            return registry._obj_map.get(name)
    return None


def registered(registry):
    return sorted({k[:-len('_basicsr')] if k.endswith('_basicsr') else k for k in registry._obj_map})


def unknown_type(checker, where, name, registry, what):
    close = did_you_mean(name, registered(registry), listed=0)
    checker.problem(where, f'unknown {what} {name!r}{close} (not in BasicSR\'s registry: '
                    'is the package that registers it imported, e.g. with plugin: '
                    '!!python/name:<module>.<name>?)')


def describe_model(model_type):
    from basicsr.utils.registry import MODEL_REGISTRY
    cls = lookup(MODEL_REGISTRY, model_type)
    if cls is None:
        if not isinstance(model_type, str):
            return ModelInfo(model_type)
        return ModelInfo(model_type, problem=f'unknown model type {model_type!r}'
                         + did_you_mean(model_type, registered(MODEL_REGISTRY), listed=0))
    train_block = getattr(cls, 'TRAIN_OPTIONS', None)
    if isinstance(train_block, type) and issubclass(train_block, Block):
        table = B.ModelTable({}, ('network_g', 'network_d'), loss_needed=PLUGIN_LOSSES)
        return ModelInfo(model_type, cls, table, train_block, getattr(cls, 'VAL_OPTIONS', None))
    return ModelInfo(model_type, cls, known_table(cls))


def known_table(cls):
    """The key table of ``cls`` or of the nearest class it derives from that BasicSR, GFP-GAN or Real-ESRGAN
    defines (a plugin's subclass of GFP-GAN's model reads GFP-GAN's keys), else None."""
    for klass in cls.__mro__:
        table = B.MODELS.get((klass.__module__.split('.')[0], klass.__name__))
        if table is not None:
            return table
    return None


def table_problems(block, table, where):
    """Unknown and missing keys of ``block`` against a key table (for a model that checks itself when built)."""
    problems = [f'{where}.{key}: unknown key{did_you_mean(key, list(table), listed=0)}'
                for key in block if key not in table]
    return problems + [f'{where}.{key}: missing (required)' for key, spec in table.items()
                       if spec.required and key not in block]


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
            close = did_you_mean(key, names, listed=0) or f' (it takes: {", ".join(names)})'
            checker.problem(f'{where}.{key}', f'{cls.__name__} takes no argument {key!r}{close}')
    for p in params:
        if p.kind in POSITIONAL and p.default is inspect.Parameter.empty and p.name not in kwargs:
            checker.problem(f'{where}.{p.name}', f'missing: {cls.__name__} needs it')


def typed_block(checker, where, block, registry, what):
    """The class a ``{type: ..., ...}`` block names, or None (problems recorded)."""
    from dlst_plugin.archs.external import ExternalArchError
    if not isinstance(block, dict):
        checker.problem(where, f'expected a block of keys with a type, got {block!r}')
        return None
    if 'type' not in block:
        checker.problem(f'{where}.type', 'missing (required)')
        return None
    try:
        cls = lookup(registry, block['type'], import_external=checker.plugin_run)
    except ExternalArchError as err:
        checker.problem(f'{where}.type', str(err))
        return None
    if cls is None:
        unknown_type(checker, f'{where}.type', block['type'], registry, what)
    return cls


def check_networks(checker):
    from basicsr.utils.registry import ARCH_REGISTRY
    opt, model = checker.opt, checker.model
    networks = [k for k in opt if str(k).startswith(B.NETWORK_PREFIX)]
    for key in networks:
        cls = typed_block(checker, key, opt[key], ARCH_REGISTRY, 'network type')
        if cls is not None:
            from dlst_plugin.archs.external import CLEAN_DECODER_ARCHS, PLUGIN_READ_KEYS  # the plugin reads these
            read = PLUGIN_READ_KEYS if opt[key].get('type') in CLEAN_DECODER_ARCHS else ()
            signature_problems(checker, key, cls, opt[key], skip=('type', ) + read)
    if 'network_g' not in opt:
        checker.problem('network_g', 'missing (required)')
    if not (checker.is_train and model.table):
        return
    for key in networks:
        if key not in model.table.networks:
            checker.problem(key, f'{model.name} builds no {key}: remove it (--auto_resume would also look for '
                            f'net_{key[len(B.NETWORK_PREFIX):]}_<iter>.pth)')
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
    if model.plugin:
        checker.block_of(model.train_block, 'train', train)
    else:
        table = model.table.train if model.table else {
            **B.MODELS[('basicsr', 'SRModel')].train, 'scheduler': B.Key(dict), 'optim_g': B.Key(dict)}
        if not checker.block('train', train, table, strict=model.strict):
            return
    if not isinstance(train, dict):
        return
    for key, value in train.items():
        if str(key).startswith('optim_') and isinstance(value, dict):
            check_optimizer(checker, f'train.{key}', value)
        elif str(key).endswith('_opt') and isinstance(value, dict):
            cls = typed_block(checker, f'train.{key}', value, LOSS_REGISTRY, 'loss type')
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
        checker.value(f'{where}.lr', block['lr'], B.req(float, B.POSITIVE))
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
    if kind not in B.SCHEDULERS:
        checker.problem('train.scheduler.type', f'must be one of {", ".join(B.SCHEDULERS)}, got {kind!r}')
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


def check_dataset(checker, where, ds):
    """``type`` is registered; the data roots (and keys read with ``[]``) the type needs are present; a plugin
    dataset's keys are checked against its typed block (``OPTIONS``)."""
    from basicsr.utils.registry import DATASET_REGISTRY
    cls = lookup(DATASET_REGISTRY, ds.get('type'))
    if cls is None:
        if 'type' in ds:
            unknown_type(checker, f'{where}.type', ds['type'], DATASET_REGISTRY, 'dataset type')
        return
    block = getattr(cls, 'OPTIONS', None)
    if isinstance(block, type) and issubclass(block, Block):
        checker.block_of(block, where, ds)
        for problem in getattr(cls, 'option_problems', lambda opt, where: [])(ds, where):
            checker.problems.append(problem)
        return
    for key in B.DATASET_REQUIRED.get(cls.__name__, ()):
        if not _present(ds.get(key)):
            checker.problem(f'{where}.{key}', f'missing: {cls.__name__} needs it')
    if block:  # a plain tuple of key names
        for key in ds:
            if key not in block and key not in ('phase', 'scale'):
                checker.unknown(f'{where}.{key}', block)


def _present(value):
    return value is not None and value != '' and value != [] and value != {}
