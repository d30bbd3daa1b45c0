"""Read StyleGAN2 checkpoints of the common layouts into BasicSR's layout (SPEC.md section 2).

Layouts: ``basicsr`` (BasicSR / GFP-GAN ``StyleGAN2Generator``/``Discriminator``, the layout of
``PureStyleGAN2Generator``/``Discriminator``), ``rosinality`` (stylegan2-pytorch ``Generator``/
``Discriminator``: same math, other names, blur kernels stored as buffers) and ``gfpgan_clean``
(GFP-GAN's ``StyleGAN2GeneratorClean``: plain ``nn.Linear``/unscaled weights, rescaled here so
the mapping network, the modulations and every 4 px layer compute the same values; its bilinear
up-sampling cannot be carried over, so images above 4 px differ).

A checkpoint either maps completely onto the target network or loading stops with a
:class:`CheckpointLayoutError` naming the missing, unexpected and mis-shaped keys.
"""
import argparse
import logging
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

LAYOUTS = ('basicsr', 'rosinality', 'gfpgan_clean')
KINDS = ('generator', 'discriminator')
# where checkpoints keep each network, best first ('' = the file is the state dict itself)
CONTAINER_KEYS = {'generator': ('params_ema', 'params', 'g_ema', 'g', 'state_dict', ''),
                  'discriminator': ('params_d', 'd', 'params', 'state_dict', '')}
STRIP_PREFIX = 'module.'  # DataParallel / DistributedDataParallel wrappers
SUBNET_PREFIX = 'stylegan_decoder.'  # GFP-GAN restorers keep their StyleGAN2 decoder here
# one key only each (layout, kind) has: how a state dict is recognised
SIGNATURES = {
    ('basicsr', 'generator'): 'style_conv1.activate.bias',
    ('rosinality', 'generator'): 'conv1.activate.bias',
    ('gfpgan_clean', 'generator'): 'style_conv1.bias',
    ('basicsr', 'discriminator'): 'conv_body.0.0.weight',
    ('rosinality', 'discriminator'): 'convs.0.0.weight',
}
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
MAX_LISTED = 12
logger = logging.getLogger(__name__)


class CheckpointLayoutError(ValueError):
    """A checkpoint that cannot be read or does not match the network it is meant for."""


@dataclass
class Conversion:
    """One network read from a checkpoint, in BasicSR's layout."""
    state: dict
    layout: str
    kind: str
    source: str  # where in the file: container key and prefix
    renamed: list = field(default_factory=list)  # (source key, BasicSR key) pairs whose name changed
    dropped: list = field(default_factory=list)  # source keys with no BasicSR counterpart (blur kernels)
    rescaled: int = 0  # tensors whose values were rescaled (gfpgan_clean)


def listing(keys):
    keys = list(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > MAX_LISTED else shown


def read_checkpoint(path):
    """``torch.load(weights_only=True)`` with one clear error naming the file when it fails.

    ``argparse.Namespace`` is allowed: rosinality's training checkpoints store their options in one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.is_dir():
        raise CheckpointLayoutError(f'{path} is a folder, not a checkpoint file')
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = re.search(r'GLOBAL ([\w.]+)', str(err))
        if unsafe:
            raise CheckpointLayoutError(f'{path} holds Python objects ({unsafe[1]}) that are not loaded for safety '
                                        '(torch.load weights_only=True); re-save it with tensors only') from None
        raise CheckpointLayoutError(f'{path} is not a PyTorch checkpoint ({_first_line(err)})') from None
    except Exception as err:  # torch raises RuntimeError/EOFError/... for damaged files
        hint = '; convert NVIDIA .pkl files with rosinality\'s convert_weight.py first' if path.suffix == '.pkl' else ''
        reason = _first_line(err)
        raise CheckpointLayoutError(f'{path} is not a PyTorch checkpoint or is truncated ({reason}){hint}') from None
    if not isinstance(obj, dict):
        raise CheckpointLayoutError(f'{path} holds a {type(obj).__name__}, not a dict of tensors')
    return obj


def _first_line(err):
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line if len(line) <= 120 else line[:117] + '...'


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def detect_layout(state):
    """(layout, kind) pairs whose signature key ``state`` holds."""
    return [pair for pair, key in SIGNATURES.items() if key in state]


def _candidates(obj, kind):
    """(source, state dict) pairs that may hold the ``kind`` network, best first."""
    for key in CONTAINER_KEYS[kind]:
        state = obj if key == '' else obj.get(key)
        if not _is_state_dict(state):
            continue
        if all(k.startswith(STRIP_PREFIX) for k in state):
            state = {k[len(STRIP_PREFIX):]: v for k, v in state.items()}
        source = repr(key) if key else 'the top level'
        yield source, state
        sub = {k[len(SUBNET_PREFIX):]: v for k, v in state.items() if k.startswith(SUBNET_PREFIX)}
        if sub:
            yield f'{source}, prefix {SUBNET_PREFIX!r}', sub


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


def _rename(key, rules):
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return key


def _from_rosinality(state, kind):
    out, renamed, dropped = {}, [], []
    for key, value in state.items():
        if BLUR_KERNEL_KEY.fullmatch(key):
            dropped.append(key)
            continue
        new = _rename(key, ROSINALITY_RULES[kind])
        out[new] = value
        if new != key:
            renamed.append((key, new))
    return out, renamed, dropped, 0


def _from_gfpgan_clean(state, lr_mlp):
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
    return out, renamed, [], rescaled


def convert_network(obj, kind, layout='auto', lr_mlp=0.01, name='checkpoint'):
    """The ``kind`` network of a loaded checkpoint, mapped to BasicSR's layout.

    ``lr_mlp``: the target generator's mapping learning-rate multiplier (only ``gfpgan_clean``
    weights depend on it).
    """
    source, state, layout = find_network(obj, kind, layout, name)
    if layout == 'rosinality':
        mapped = _from_rosinality(state, kind)
    elif layout == 'gfpgan_clean':
        if kind != 'generator':
            raise CheckpointLayoutError(f'{name}: the gfpgan_clean layout has no discriminator')
        mapped = _from_gfpgan_clean(state, lr_mlp)
    else:
        mapped = (dict(state), [], [], 0)
    return Conversion(mapped[0], layout, kind, source, *mapped[1:])


def load_stylegan2_state(path, kind='generator', layout='auto', lr_mlp=0.01):
    """Read ``path`` and return ``(state dict in BasicSR layout, detected layout)``."""
    conversion = convert_network(read_checkpoint(path), kind, layout, lr_mlp, name=str(path))
    return conversion.state, conversion.layout


def compare_state(expected_shapes, state):
    """(missing, unexpected, mismatched) keys of ``state`` against ``{key: shape}``."""
    missing = [k for k in expected_shapes if k not in state]
    unexpected = [k for k in state if k not in expected_shapes]
    mismatched = [f'{k} {tuple(state[k].shape)} vs {tuple(shape)}' for k, shape in expected_shapes.items()
                  if k in state and tuple(state[k].shape) != tuple(shape)]
    return missing, unexpected, mismatched


def check_state(expected_shapes, state, what, strict=True):
    """Raise :class:`CheckpointLayoutError` listing every key that does not fit (shape mismatches
    always; missing/unexpected keys when ``strict``, else they are logged)."""
    missing, unexpected, mismatched = compare_state(expected_shapes, state)
    problems = [f'{label} ({len(keys)}): {listing(keys)}' for label, keys in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('shape mismatches (checkpoint vs network)', mismatched)) if keys]
    if mismatched or (strict and problems):
        raise CheckpointLayoutError(f'{what} does not fit the network:\n  ' + '\n  '.join(problems))
    if problems:
        logger.warning('%s loaded partially:\n  %s', what, '\n  '.join(problems))


def load_into(module, path, kind=None, layout='auto', strict=True):
    """Load a checkpoint of any known layout into a ``PureStyleGAN2Generator``/``Discriminator``
    (or a module with the same parameter names); return the detected layout.

    ``kind`` defaults to what ``module`` is. Nothing is loaded when a key does not fit.
    """
    from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
    if kind is None:
        kind = 'discriminator' if isinstance(module, PureStyleGAN2Discriminator) else 'generator'
    mlp = getattr(module, 'style_mlp', None)
    lr_mlp = mlp[1].lr_mul if mlp is not None and len(mlp) > 1 else 0.01
    state, detected = load_stylegan2_state(path, kind, layout, lr_mlp)
    expected = {k: v.shape for k, v in module.state_dict().items()}
    check_state(expected, state, f'{path} ({detected} {kind})', strict)
    module.load_state_dict(state, strict=strict)
    return detected


def _indices(state, pattern):
    return sorted({int(m[1]) for k in state if (m := re.fullmatch(pattern, k))})


def _channel_config(widths, what):
    """channel_multiplier and narrow that reproduce ``{resolution: width}`` (StyleGAN2's table)."""
    from dlst_plugin.archs.stylegan2_layers import stylegan2_channels
    narrow = widths[4] / 512
    multiplier = 2
    if max(widths) >= 64:
        multiplier = widths[64] / (256 * narrow)
        multiplier = int(multiplier) if multiplier == int(multiplier) else multiplier
    table = stylegan2_channels(multiplier, narrow)
    if narrow <= 0 or any(table[res] != width for res, width in widths.items()):
        raise CheckpointLayoutError(f'{what}: feature widths {widths} do not follow StyleGAN2\'s channel table')
    return {'channel_multiplier': multiplier, 'narrow': 1 if narrow == 1 else narrow}


def infer_generator_config(state):
    """Constructor arguments of ``PureStyleGAN2Generator`` matching a BasicSR-layout state dict
    (``lr_mlp`` and ``resample_kernel`` leave no trace in the shapes: defaults apply)."""
    try:
        num_style_feat = state['style_conv1.modulated_conv.modulation.weight'].shape[1]
        widths = {4: state['constant_input.weight'].shape[1]}
        rgbs = _indices(state, r'to_rgbs\.(\d+)\.modulated_conv\.weight')
        widths.update({2**(i + 3): state[f'to_rgbs.{i}.modulated_conv.weight'].shape[2] for i in rgbs})
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'cannot infer the generator size: key {err} missing or mis-shaped') from None
    num_mlp = len(_indices(state, r'style_mlp\.(\d+)\.weight'))
    return {'out_size': 2**(len(rgbs) + 2), 'num_style_feat': num_style_feat, 'num_mlp': num_mlp,
            **_channel_config(widths, 'generator')}


def infer_discriminator_config(state):
    """Constructor arguments of ``PureStyleGAN2Discriminator`` matching a BasicSR-layout state dict."""
    try:
        blocks = _indices(state, r'conv_body\.(\d+)\.conv2\.1\.weight')
        log_size = len(blocks) + 2
        widths = {2**log_size: state['conv_body.0.0.weight'].shape[0], 4: state['final_conv.0.weight'].shape[0]}
        widths.update({2**(log_size - i): state[f'conv_body.{i}.conv2.1.weight'].shape[0] for i in blocks})
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'cannot infer the discriminator size: key {err} missing or mis-shaped') \
            from None
    return {'out_size': 2**log_size, **_channel_config(widths, 'discriminator')}


def expected_shapes(kind, config):
    """``{key: shape}`` of a Pure* network built with ``config``, without allocating its weights."""
    from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
    from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
    cls = PureStyleGAN2Generator if kind == 'generator' else PureStyleGAN2Discriminator
    with torch.device('meta'):
        return {k: v.shape for k, v in cls(**config).state_dict().items()}
