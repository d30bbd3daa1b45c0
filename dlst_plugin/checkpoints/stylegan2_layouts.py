"""StyleGAN2 checkpoints of the common layouts, read into BasicSR's layout (docs/design.md#stylegan2).

Layouts:

- ``basicsr``: BasicSR / GFP-GAN ``StyleGAN2Generator``/``Discriminator``, the layout of
  ``PureStyleGAN2Generator``/``Discriminator``;
- ``rosinality``: stylegan2-pytorch ``Generator``/``Discriminator``: same math, other names, blur
  kernels stored as buffers;
- ``gfpgan_clean``: GFP-GAN's ``StyleGAN2GeneratorClean``: plain ``nn.Linear``/unscaled weights,
  rescaled here so the mapping network, the modulations and every 4 px layer compute the same
  values; its bilinear up-sampling cannot be carried over, so images above 4 px differ;
- ``mmagic``: MMagic / mmediting ``StyleGAN2Generator``/``Discriminator`` (the StyleGAN2 priors
  GLEAN starts from): same math, other names, equalised-lr weights stored as ``weight_orig``,
  blur kernels as buffers; the networks sit under ``generator_ema.``/``generator.``/
  ``discriminator.`` (optionally ``.module.``), in mmengine's ``state_dict`` or at the top level.
  The EMA generator is preferred.

:func:`convert_network` picks the network out of a loaded checkpoint and renames (for ``gfpgan_clean``
also rescales) it; keys no rule knows keep their name, so a foreign key is reported as unexpected by the
later shape check (:mod:`dlst_plugin.loading.shapes`) instead of vanishing. ``channel_order='bgr'`` reads a
prior trained on BGR images (MMagic's StyleGAN2 pipeline trains on BGR): the generator's ToRGB outputs and
the discriminator's from-RGB input are reversed so the network works on RGB; left unset, an MMagic training
save is read as RGB with a warning that names the option to set.
"""
import logging
import math
import re
from dataclasses import dataclass, field

import torch

from dlst_plugin.checkpoints.reading import listing, read_checkpoint, strip_module_prefix, sub_state
from dlst_plugin.errors import CheckpointLayoutError

logger = logging.getLogger(__name__)

LAYOUTS = ('basicsr', 'rosinality', 'gfpgan_clean', 'mmagic')
KINDS = ('generator', 'discriminator')
# where checkpoints keep each network, best first ('' = the file is the state dict itself)
CONTAINER_KEYS = {'generator': ('params_ema', 'params', 'g_ema', 'g', 'state_dict', ''),
                  'discriminator': ('params_d', 'd', 'params', 'state_dict', '')}
# where an MMagic / mmediting editor saves its generator: the EMA copy (its 1.x saves nest it in ``module.``)
# before the live one; '' = the state dict is the generator itself
EDITOR_PREFIXES = ('generator_ema.module.', 'generator_ema.', 'generator.module.', 'generator.', '')
# prefixes under which a container may hold the network among other weights, best first
SUBNET_PREFIXES = {
    'generator': (
        'stylegan_decoder.',  # GFP-GAN restorers keep their StyleGAN2 decoder here
        *EDITOR_PREFIXES[:-1],
        'generator.generator.',  # MMagic's GLEAN restorer: the StyleGAN2 prior inside its generator
    ),
    'discriminator': ('discriminator.module.', 'discriminator.'),
}
# one key only each (layout, kind) has: how a state dict is recognised
SIGNATURES = {
    ('basicsr', 'generator'): 'style_conv1.activate.bias',
    ('rosinality', 'generator'): 'input.input',
    ('gfpgan_clean', 'generator'): 'style_conv1.bias',
    ('mmagic', 'generator'): 'constant_input.input',
    ('basicsr', 'discriminator'): 'conv_body.0.0.weight',
    ('rosinality', 'discriminator'): 'convs.0.0.weight',
    ('mmagic', 'discriminator'): 'convs.0.0.conv.weight_orig',
}

# --- rosinality stylegan2-pytorch --------------------------------------------------------------
# rosinality name -> BasicSR name (full matches; anything else keeps its name)
ROSINALITY_RULES = {
    'generator': (
        (r'style\.(\d+)\.(weight|bias)', r'style_mlp.\1.\2'),
        (r'input\.input', 'constant_input.weight'),
        (r'conv1\.conv\.(.+)', r'style_conv1.modulated_conv.\1'),
        (r'conv1\.noise\.weight', 'style_conv1.weight'),
        (r'conv1\.activate\.bias', 'style_conv1.activate.bias'),
        (r'convs\.(\d+)\.conv\.(.+)', r'style_convs.\1.modulated_conv.\2'),
        (r'convs\.(\d+)\.noise\.weight', r'style_convs.\1.weight'),
        (r'convs\.(\d+)\.activate\.bias', r'style_convs.\1.activate.bias'),
        (r'(to_rgb1|to_rgbs\.\d+)\.conv\.(.+)', r'\1.modulated_conv.\2'),
        (r'noises\.noise_(\d+)', r'noises.noise\1'),
    ),
    'discriminator': ((r'convs\.(.+)', r'conv_body.\1'), ),
}
BLUR_KERNEL_KEY = re.compile(r'.*\.(blur|upsample|\d+)\.kernel')  # rosinality's FIR buffers: fixed, not learnt

# --- MMagic / mmediting StyleGANv2 ---------------------------------------------------------------
# Its equalised-lr layers keep the unscaled weight as ``weight_orig`` and scale it by
# gain / sqrt(fan_in) * lr_mul at run time with gain 1, as ours do with ``weight``: values copy
# unchanged. Biases of its linear layers sit beside ``linear`` (``.bias``), not inside it.
_STYLE_CONV = r'(conv1|convs\.\d+)'  # MMagic's ModulatedStyleConv layers; ours are style_conv1 / style_convs.N
_TO_RGB = r'(to_rgb1|to_rgbs\.\d+)'  # same names on both sides
MMAGIC_RULES = {
    'generator': (
        (r'style_mapping\.(\d+)\.linear\.weight_orig', r'style_mlp.\1.weight'),
        (r'style_mapping\.(\d+)\.bias', r'style_mlp.\1.bias'),
        (r'constant_input\.input', 'constant_input.weight'),
        (_STYLE_CONV + r'\.conv\.weight_orig', r'style_\1.modulated_conv.weight'),
        (_STYLE_CONV + r'\.conv\.style_modulation\.linear\.weight_orig', r'style_\1.modulated_conv.modulation.weight'),
        (_STYLE_CONV + r'\.conv\.style_modulation\.bias', r'style_\1.modulated_conv.modulation.bias'),
        (_STYLE_CONV + r'\.noise_injector\.weight', r'style_\1.weight'),
        (_STYLE_CONV + r'\.activate\.bias', r'style_\1.activate.bias'),
        (_TO_RGB + r'\.conv\.weight_orig', r'\1.modulated_conv.weight'),
        (_TO_RGB + r'\.conv\.style_modulation\.linear\.weight_orig', r'\1.modulated_conv.modulation.weight'),
        (_TO_RGB + r'\.conv\.style_modulation\.bias', r'\1.modulated_conv.modulation.bias'),
        (r'injected_noise_(\d+)', r'noises.noise\1'),
    ),
    'discriminator': (
        # block 0: 1x1 from-RGB conv (0) + bias/leaky ReLU (1); blocks 1..: ResBlocks whose
        # down-sampling convs and skip put the blur (0) before the conv (1); same indices as ours
        (r'convs\.(0\.0|[1-9]\d*\.conv1\.0|[1-9]\d*\.conv2\.1|[1-9]\d*\.skip\.1)\.conv\.weight_orig',
         r'conv_body.\1.weight'),
        (r'convs\.(0\.1|[1-9]\d*\.conv1\.1|[1-9]\d*\.conv2\.2)\.bias', r'conv_body.\1.bias'),
        (r'final_conv\.0\.conv\.weight_orig', 'final_conv.0.weight'),
        (r'final_linear\.([01])\.linear\.weight_orig', r'final_linear.\1.weight'),
    ),
}
# fixed buffers with no counterpart in our networks: FIR kernels (ours are rebuilt from
# ``resample_kernel``) and the discriminator's adaptive-augmentation state (StyleGAN2-ADA)
MMAGIC_DROPPED = {
    'generator': re.compile(r'convs\.\d+\.conv\.blur\.kernel|to_rgbs\.\d+\.upsample\.kernel'),
    'discriminator': re.compile(r'convs\.\d+\.(conv2|skip)\.0\.kernel|ada_aug\..+'),
}
# tensors kept beside the network: the mean latent an MMagic generator may track (w_avg)
MMAGIC_EXTRAS = {'generator': {'w_avg': 'latent_avg'}, 'discriminator': {}}


def rename(key, rules):
    """``key`` renamed by the first rule whose pattern matches all of it (else unchanged)."""
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return key


def renamed_state(state, rules, dropped_keys=None, extras=None):
    """Rename every key of ``state`` by ``rules``; keys matching ``dropped_keys`` are left out and
    keys named in ``extras`` ({source key: extra name}) are set aside."""
    out, renamed, dropped, kept = {}, [], [], {}
    extras = extras or {}
    for key, value in state.items():
        if dropped_keys is not None and dropped_keys.fullmatch(key):
            dropped.append(key)
        elif key in extras:
            kept[extras[key]] = value
        else:
            new = rename(key, rules)
            out[new] = value
            if new != key:
                renamed.append((key, new))
    return {'state': out, 'renamed': renamed, 'dropped': dropped, 'extras': kept}


def from_rosinality(state, kind):
    return renamed_state(state, ROSINALITY_RULES[kind], BLUR_KERNEL_KEY)


def from_mmagic(state, kind):
    return renamed_state(state, MMAGIC_RULES[kind], MMAGIC_DROPPED[kind], MMAGIC_EXTRAS[kind])


def from_gfpgan_clean(state, lr_mlp):
    """Rescale ``StyleGAN2GeneratorClean`` weights so our equalised layers compute its values.

    Clean MLP layer ``lrelu(W z + b)`` = ours ``sqrt2 * lrelu(W' z * lr/sqrt(n) + b' * lr)`` with
    ``W' = W sqrt(n) / (sqrt2 lr)``, ``b' = b / (sqrt2 lr)``; modulation ``W' = W sqrt(n)``; conv
    ``W' = W sqrt(c_in k^2)``; clean StyleConv ``lrelu(sqrt2 conv + w n + b)`` = ours
    ``sqrt2 * lrelu(conv + w' n + b')`` with ``w' = w / sqrt2``, ``b' = b / sqrt2``.
    """
    out, renamed, rescaled = {}, [], 0
    sqrt2 = math.sqrt(2)
    for key, value in state.items():
        new = key
        mlp = re.fullmatch(r'style_mlp\.(\d+)\.(weight|bias)', key)
        style_conv = re.fullmatch(r'(style_conv1|style_convs\.\d+)\.(weight|bias)', key)
        if mlp and int(mlp[1]) % 2:  # clean: Linear at 1, 3, 5, ... (LeakyReLU between)
            new = f'style_mlp.{(int(mlp[1]) + 1) // 2}.{mlp[2]}'
            gain = math.sqrt(value.shape[1]) / (sqrt2 * lr_mlp) if mlp[2] == 'weight' else 1 / (sqrt2 * lr_mlp)
            value = value * gain
        elif key.endswith('modulated_conv.weight') and value.ndim == 5:
            value = value * math.sqrt(value.shape[2] * value.shape[3] * value.shape[4])
        elif key.endswith('modulated_conv.modulation.weight') and value.ndim == 2:
            value = value * math.sqrt(value.shape[1])
        elif style_conv and style_conv[2] == 'bias':
            new = f'{style_conv[1]}.activate.bias'
            value = value.reshape(-1) / sqrt2
        elif style_conv:  # noise strength
            value = value / sqrt2
        else:
            out[key] = value
            continue
        out[new] = value
        rescaled += 1
        if new != key:
            renamed.append((key, new))
    return {'state': out, 'renamed': renamed, 'dropped': [], 'rescaled': rescaled}


def to_gfpgan_clean(state, lr_mlp):
    """The inverse of :func:`from_gfpgan_clean`: a BasicSR-layout generator as ``StyleGAN2GeneratorClean``
    weights (what GFP-GAN's ``GFPGANv1Clean`` decoder loads). Every weight maps exactly; only the
    resampling differs (the clean network upsamples bilinearly, ours with the [1, 3, 3, 1] FIR), so
    the images agree at 4 px and approximately above."""
    out = {}
    sqrt2 = math.sqrt(2)
    for key, value in state.items():
        mlp = re.fullmatch(r'style_mlp\.(\d+)\.(weight|bias)', key)
        style_conv = re.fullmatch(r'(style_conv1|style_convs\.\d+)\.(weight|activate\.bias)', key)
        if mlp:
            gain = sqrt2 * lr_mlp / math.sqrt(value.shape[1]) if mlp[2] == 'weight' else sqrt2 * lr_mlp
            out[f'style_mlp.{2 * int(mlp[1]) - 1}.{mlp[2]}'] = value * gain
        elif key.endswith('modulated_conv.weight') and value.ndim == 5:
            out[key] = value / math.sqrt(value.shape[2] * value.shape[3] * value.shape[4])
        elif key.endswith('modulated_conv.modulation.weight') and value.ndim == 2:
            out[key] = value / math.sqrt(value.shape[1])
        elif style_conv and style_conv[2] == 'activate.bias':
            out[f'{style_conv[1]}.bias'] = value.reshape(1, -1, 1, 1) * sqrt2
        elif style_conv:  # noise strength
            out[key] = value * sqrt2
        else:
            out[key] = value
    return out


# --- colour channel order -------------------------------------------------------------------------
# A StyleGAN2 trained on BGR images (MMagic's StyleGAN2 data pipeline loads images BGR and converts nothing)
# draws BGR faces and its discriminator expects BGR. Reading it as RGB reverses the colour axis of the
# generator's ToRGB outputs (every resolution's: the RGB skip sums them) and of the discriminator's from-RGB
# input, in BasicSR's (and GFP-GAN clean's) names.
CHANNEL_ORDERS = ('rgb', 'bgr')
RGB_TENSORS = {
    'generator': (re.compile(r'(to_rgb1|to_rgbs\.\d+)\.(modulated_conv\.weight|bias)'), 1),
    'discriminator': (re.compile(r'conv_body\.0\.0\.weight'), 1),
}
MMAGIC_EMA_TRAINING_PREFIX = 'generator_ema.module.'  # MMagic 1.x wraps its EMA generator (training saves)


def check_channel_order(value, option='channel_order'):
    """``value`` when it is None (unset), 'rgb' or 'bgr'; ValueError naming ``option`` otherwise."""
    if value is not None and value not in CHANNEL_ORDERS:
        raise ValueError(f"{option} must be 'rgb' or 'bgr' (the colour order the StyleGAN2 prior was trained on), "
                         f'got {value!r}')
    return value


def swap_rgb_bgr(state, kind):
    """``state`` (BasicSR layout) with the colour axis of its RGB-facing tensors reversed: ToRGB outputs of a
    generator, the from-RGB conv's input of a discriminator. Returns (new state, number of tensors swapped)."""
    pattern, dim = RGB_TENSORS[kind]
    out, swapped = {}, 0
    for key, value in state.items():
        if pattern.fullmatch(key) and value.ndim > dim and value.shape[dim] == 3:
            value, swapped = value.flip(dim), swapped + 1
        out[key] = value
    return out, swapped


def mmagic_training_evidence(obj):
    """Why a loaded checkpoint looks like an MMagic (mmengine) training save rather than MMagic's converted
    official StyleGAN2 weights, or None: mmengine's ``meta``, or the EMA wrapper MMagic 1.x training keeps."""
    meta = obj.get('meta') if isinstance(obj, dict) else None
    if isinstance(meta, dict) and meta.get('mmengine_version'):
        return f"its meta was written by mmengine {meta['mmengine_version']} (an MMagic training run)"
    for state in (obj, obj.get('state_dict')):
        if isinstance(state, dict) and any(str(k).startswith(MMAGIC_EMA_TRAINING_PREFIX) for k in state):
            return f'its EMA generator is saved under {MMAGIC_EMA_TRAINING_PREFIX!r}, as MMagic 1.x training saves it'
    return None


@dataclass
class Conversion:
    """One network read from a checkpoint, in BasicSR's layout."""
    state: dict
    layout: str
    kind: str
    source: str  # where in the file: container key and prefix
    renamed: list = field(default_factory=list)  # (source key, BasicSR key) pairs whose name changed
    dropped: list = field(default_factory=list)  # source keys with no BasicSR counterpart (fixed buffers)
    rescaled: int = 0  # tensors whose values were rescaled (gfpgan_clean)
    extras: dict = field(default_factory=dict)  # tensors kept beside the network (MMagic's w_avg as latent_avg)
    swapped: int = 0  # tensors whose colour axis was reversed (channel_order='bgr')


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def detect_layout(state):
    """(layout, kind) pairs whose signature key ``state`` holds."""
    return [pair for pair, key in SIGNATURES.items() if key in state]


def _candidates(obj, kind):
    """(source, state dict) pairs that may hold the ``kind`` network, best first: each container,
    then the part of it under each known sub-network prefix."""
    for key in CONTAINER_KEYS[kind]:
        state = obj if key == '' else obj.get(key)
        if not _is_state_dict(state):
            continue
        state = strip_module_prefix(state)
        source = repr(key) if key else 'the top level'
        yield source, state
        for prefix in SUBNET_PREFIXES[kind]:
            sub = sub_state(state, prefix)
            if sub:
                yield f'{source}, prefix {prefix!r}', sub


def find_network(obj, kind, layout='auto', name='checkpoint'):
    """Pick the ``kind`` network out of a loaded checkpoint: (source, state dict, layout)."""
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    if layout != 'auto' and layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    candidates = list(_candidates(obj, kind))
    for source, state in candidates:
        for found_layout, found_kind in detect_layout(state):
            if found_kind == kind:
                return source, state, (found_layout if layout == 'auto' else layout)
    others = {f'a {k} ({lay}) in {source}': None for other in KINDS for source, state in _candidates(obj, other)
              for lay, k in detect_layout(state)}
    if others:
        raise CheckpointLayoutError(f'{name} holds no StyleGAN2 {kind}, only {"; ".join(others)}')
    if layout != 'auto' and candidates:  # nothing recognised: read the best container as told
        return candidates[0][0], candidates[0][1], layout
    state = next((s for _, s in candidates), {})
    keys = state.keys() if state else obj.keys()
    expected = '; '.join(f'{lay}: {key}' for (lay, k), key in SIGNATURES.items() if k == kind)
    raise CheckpointLayoutError(f'{name}: unknown StyleGAN2 {kind} layout; its keys: {listing(keys)}. Expected a '
                                f'key such as ({expected}), or pass layout= explicitly')


def convert_network(obj, kind, layout='auto', lr_mlp=0.01, name='checkpoint', channel_order=None,
                    option='channel_order'):
    """The ``kind`` network of a loaded checkpoint, mapped to BasicSR's layout.

    ``lr_mlp``: the target generator's mapping learning-rate multiplier (only ``gfpgan_clean``
    weights depend on it). ``channel_order``: 'rgb', 'bgr' (swap to RGB) or None (rgb; an MMagic training
    save is then warned about, naming ``option``).
    """
    check_channel_order(channel_order, option)
    return convert_found(obj, find_network(obj, kind, layout, name), kind, lr_mlp, name, channel_order, option)


def convert_found(obj, found, kind, lr_mlp=0.01, name='checkpoint', channel_order=None, option='channel_order'):
    """:func:`convert_network` of the ``kind`` network :func:`find_network` already picked out of ``obj``:
    ``found`` is its (source, state dict, layout), ``obj`` the whole checkpoint (it tells an MMagic training save);
    ``channel_order`` already checked."""
    source, state, layout = found
    if layout == 'rosinality':
        mapped = from_rosinality(state, kind)
    elif layout == 'mmagic':
        mapped = from_mmagic(state, kind)
    elif layout == 'gfpgan_clean':
        if kind != 'generator':
            raise CheckpointLayoutError(f'{name}: the gfpgan_clean layout has no discriminator')
        mapped = from_gfpgan_clean(state, lr_mlp)
    else:
        mapped = {'state': dict(state)}
    conversion = Conversion(layout=layout, kind=kind, source=source, **mapped)
    return apply_channel_order(conversion, obj, channel_order, name, option)


def apply_channel_order(conversion, obj, channel_order, name, option):
    """``conversion`` with its colours swapped for a BGR prior; a warning for an MMagic training save read
    without ``channel_order`` (its GLEAN bank, an RGB prior, excepted)."""
    if channel_order == 'bgr':
        conversion.state, conversion.swapped = swap_rgb_bgr(conversion.state, conversion.kind)
        return conversion
    evidence = mmagic_training_evidence(obj) if conversion.layout == 'mmagic' else None
    if channel_order is None and evidence and 'generator.generator.' not in conversion.source:
        logger.warning("%s: %s; MMagic's StyleGAN2 data pipeline loads images as BGR, so its %s probably works on "
                       "BGR colours. It is read as RGB: set %s: bgr to swap its colours (or rgb if it was trained "
                       "on RGB images) to silence this warning", name, evidence, conversion.kind, option)
    return conversion


def load_stylegan2_state(path, kind='generator', layout='auto', lr_mlp=0.01, channel_order=None,
                         option='channel_order'):
    """Read ``path`` and return ``(state dict in BasicSR layout, detected layout)``."""
    conversion = convert_network(read_checkpoint(path), kind, layout, lr_mlp, name=str(path),
                                 channel_order=channel_order, option=option)
    return conversion.state, conversion.layout
