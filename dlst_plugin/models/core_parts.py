"""The pieces of the adversarial training core that are plain functions: option parsing for losses
and optimizers, EMA, which parameters a loss can reach, and keeping D out of the generator step.

Kept apart from ``adversarial_core`` so each can be tested without building a model.
"""
import contextlib
import copy

import torch

from dlst_plugin.errors import ConfigError

# option key of each loss term the core builds -> the suffix of its log key (l_g_<suffix>)
LOSS_TERMS = {'pixel_opt': 'pix', 'perceptual_opt': 'percep'}
GAN_TERM = 'gan_opt'
# old option names still read, with a deprecation line in the log: old -> new
LOSS_ALIASES = {'vgg_opt': 'perceptual_opt'}


class TrainingOptionError(ConfigError):
    """An option of the ``train`` block that the core cannot use; the message names it."""


def normalise_loss_options(train_opt, log_warning):
    """``train_opt`` with deprecated loss keys renamed (in place), one log line per renamed key."""
    for old, new in LOSS_ALIASES.items():
        if old not in train_opt:
            continue
        if train_opt.get(new) is not None:
            raise TrainingOptionError(f'train.{old} and train.{new} are the same loss; keep only train.{new}')
        train_opt[new] = train_opt.pop(old)
        log_warning(f'train.{old} is deprecated: it is read as train.{new} (rename it in the option file)')
    return train_opt


def _float_betas(optim_opt, where):
    betas = optim_opt.get('betas')
    if betas is None:
        return
    try:
        optim_opt['betas'] = tuple(float(b) for b in betas)
    except (TypeError, ValueError):
        raise TrainingOptionError(f'{where}.betas must be two numbers, got {betas!r}') from None


def parse_optimizer(optim_opt, groups, lr_factors=None, where='train.optim_g'):
    """Optimizer options -> (type, parameter groups, keyword arguments), read the one way the core reads them.

    ``groups``: {name: [parameters]} (empty lists allowed: a frozen part). ``<name>_lr`` keys set a
    group's learning rate; by default it is ``lr * lr_factors.get(name, 1)``. A ``<x>_lr`` key naming
    no group is an error (it would be silently ignored otherwise). Betas become floats (YAML reads
    ``[0, 0.9]`` as an int and a float).
    """
    if not isinstance(optim_opt, dict) or 'type' not in optim_opt or 'lr' not in optim_opt:
        raise TrainingOptionError(f'{where} needs at least a type and an lr, got {optim_opt!r}')
    opt = copy.deepcopy(dict(optim_opt))
    optim_type, lr = opt.pop('type'), float(opt.pop('lr'))
    _float_betas(opt, where)
    group_lrs = {name: lr * (lr_factors or {}).get(name, 1.0) for name in groups}
    for key in [k for k in opt if k.endswith('_lr')]:
        name = key[:-3]
        if name not in groups:
            raise TrainingOptionError(f'{where}.{key}: this network has no parameter group {name!r} '
                                      f'(its groups: {", ".join(groups) or "none"})')
        group_lrs[name] = float(opt.pop(key))
    param_groups = [{'params': params, 'lr': group_lrs[name], 'name': name}
                    for name, params in groups.items() if params]
    if not param_groups:
        raise TrainingOptionError(f'{where}: the network has no trainable parameters')
    return optim_type, param_groups, opt


def lazy_regularisation_correction(groups, kwargs, ratio, optim_type):
    """StyleGAN2's correction for a regulariser that runs every k iterations with weight x k: the learning
    rate of every group x ratio and Adam's betas raised to the power ratio (ratio = k / (k + 1)); returns
    the keyword arguments (betas as given, else torch's defaults, corrected)."""
    kwargs = dict(kwargs)
    for group in groups:
        group['lr'] *= ratio
    if optim_type in ('Adam', 'AdamW'):
        betas = kwargs.get('betas', (0.9, 0.999))
        kwargs['betas'] = tuple(float(b) ** ratio for b in betas)
    return kwargs


def trainable(module):
    """Parameters that take gradients: what an optimizer and the EMA work on."""
    if hasattr(module, 'trainable_parameters'):
        return [p for p in module.trainable_parameters() if p.requires_grad]
    return [p for p in module.parameters() if p.requires_grad]


def parameter_groups(module):
    """{group: trainable parameters}: the arch's own ``param_groups()`` when it has one, else one group."""
    if hasattr(module, 'param_groups'):
        return {name: [p for p in params if p.requires_grad] for name, params in module.param_groups().items()}
    return {'all': trainable(module)}


class EMA:
    """ema = decay * ema + (1 - decay) * current, for the parameters ``net`` trains; buffers copied.

    The pairs are collected once (the trainable set is fixed before training starts) and updated with
    foreach kernels. Frozen parameters are left alone, so they stay bit-identical to the live ones."""

    def __init__(self, ema_net, net):
        ema_params, ema_buffers = dict(ema_net.named_parameters()), dict(ema_net.named_buffers())
        pairs = [(ema_params[n], p) for n, p in net.named_parameters() if p.requires_grad]
        self.ema, self.live = [a for a, _ in pairs], [b for _, b in pairs]
        buffers = [(ema_buffers[n], b) for n, b in net.named_buffers() if n in ema_buffers]
        self.ema_buffers, self.live_buffers = [a for a, _ in buffers], [b for _, b in buffers]

    @torch.no_grad()
    def update(self, decay):
        if self.ema:
            torch._foreach_lerp_(self.ema, self.live, 1 - decay)
        if self.ema_buffers:
            torch._foreach_copy_(self.ema_buffers, self.live_buffers)


@contextlib.contextmanager
def frozen(params):
    """Switch ``requires_grad`` off for ``params`` inside the block (and back on after it).

    Used on the discriminator's trainable parameters during the generator step: the generator's
    loss still back-propagates through D to the fake images, but no gradient is computed for D's
    weights. Parameters that were frozen before (FreezeD) are never switched on."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def reached_parameters(output):
    """ids of the leaf tensors (parameters) the autograd graph of ``output`` reaches."""
    seen, found, stack = set(), set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, 'variable', None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def unreached_parameter_names(net, example):
    """Names of the trainable parameters of ``net`` that its output on ``example`` does not depend on.

    Such parameters would get no gradient, so DistributedDataParallel (find_unused_parameters false)
    would wait for them forever. Runs the forward on the meta device when the network allows it (no
    memory, no compute), else on ``example``'s device."""
    try:
        probe = copy.deepcopy(net).to('meta')
        x = torch.empty(example.shape, device='meta')
        out = probe(x)
    except Exception:  # an op without a meta kernel: probe on the real device
        probe, x = net, example
        out = net(example)
    from dlst_plugin.archs.face_input import first_output
    out = first_output(out)
    reached = reached_parameters(out)
    return [name for name, p in probe.named_parameters() if p.requires_grad and id(p) not in reached]
