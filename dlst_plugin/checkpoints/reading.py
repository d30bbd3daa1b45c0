"""Read StyleGAN2 checkpoints of the common layouts into BasicSR's layout (docs/design.md#stylegan2).

Layouts (their key tables live in :mod:`dlst_plugin.checkpoints.stylegan2_layouts`):

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

``channel_order='bgr'`` reads a prior trained on BGR images (MMagic's StyleGAN2 pipeline trains on BGR):
the generator's ToRGB outputs and the discriminator's from-RGB input are reversed so the network works on
RGB. Left unset, an MMagic training save is read as RGB with a warning that names the option to set.

A checkpoint either maps completely onto the target network or loading stops with a
:class:`CheckpointLayoutError` naming the missing, unexpected and mis-shaped keys.
"""
import argparse
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dlst_plugin.checkpoints.stylegan2_layouts import (
    CONTAINER_KEYS,
    KINDS,
    LAYOUTS,
    SIGNATURES,
    STRIP_PREFIX,
    SUBNET_PREFIXES,
    check_channel_order,
    from_gfpgan_clean,
    from_mmagic,
    from_rosinality,
    mmagic_training_evidence,
    swap_rgb_bgr,
)
from dlst_plugin.errors import InputError

MAX_LISTED = 12
MMLAB_PACKAGES = ('mmengine', 'mmcv', 'mmagic', 'mmedit', 'mmgen')  # whose objects training saves may pickle
logger = logging.getLogger(__name__)


class CheckpointLayoutError(InputError, ValueError):
    """A checkpoint that cannot be read or does not match the network it is meant for."""


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


def listing(keys):
    keys = list(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > MAX_LISTED else shown


def read_checkpoint(path):
    """The dict a checkpoint file holds, with one clear error naming the file when it cannot be read.

    ``.pth`` / ``.pt`` / ``.ckpt``: ``torch.load(weights_only=True)`` (``argparse.Namespace`` is allowed:
    rosinality's training checkpoints store their options in one). ``.safetensors``: the tensors; a file
    ``dlst-export`` wrote (its header holds the plugin's metadata) reads back in the layout it was exported
    from, ``{'params_ema': tensors, 'params': tensors, 'meta': {...}}``; any other safetensors file is its
    flat dict of tensors, as a ``.pth`` holding a bare state dict would be.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.is_dir():
        raise CheckpointLayoutError(f'{path} is a folder, not a checkpoint file')
    if path.suffix.lower() == '.safetensors':
        return read_safetensors(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = re.search(r'GLOBAL ([\w.]+)', str(err))
        if unsafe:
            raise CheckpointLayoutError(f'{path} holds Python objects ({unsafe[1]}) that are not loaded for safety '
                                        f'(torch.load weights_only=True); {_resave_hint(unsafe[1])}') from None
        raise _unreadable(path, err, 'a PyTorch checkpoint') from None
    except Exception as err:  # torch raises RuntimeError/EOFError/... for damaged files
        hint = '; convert NVIDIA .pkl files with rosinality\'s convert_weight.py first' if path.suffix == '.pkl' else ''
        raise _unreadable(path, err, 'a PyTorch checkpoint', ' or is truncated', hint) from None
    if not isinstance(obj, dict):
        raise CheckpointLayoutError(f'{path} holds a {type(obj).__name__}, not a dict of tensors')
    return obj


def read_safetensors(path):
    """A ``.safetensors`` file as :func:`read_checkpoint` returns it (CPU tensors)."""
    from dlst_plugin.checkpoints.meta import META_KEY, metadata_from_header
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:  # a core dependency: only a broken install gets here
        raise CheckpointLayoutError(f'{path}: reading .safetensors needs the safetensors package: '
                                    'pip install safetensors') from None
    try:
        with safe_open(str(path), framework='pt', device='cpu') as f:
            header = f.metadata()
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err, 'a safetensors file', ' or is truncated') from None
    meta = metadata_from_header(header, str(path))
    if meta is None:
        return tensors
    return {'params_ema': tensors, 'params': tensors, META_KEY: meta}


def write_safetensors(state, path, meta=None):
    """Write ``state`` (a flat dict of tensors) to ``path`` atomically, ``meta`` JSON-encoded in the header."""
    from safetensors.torch import save_file

    from dlst_plugin.checkpoints.meta import header_metadata
    from dlst_plugin.fileio.atomic import atomic_path
    tensors, seen = {}, set()
    for key, value in state.items():
        value = value.detach().to('cpu').contiguous()
        if value.untyped_storage().data_ptr() in seen:  # safetensors refuses tensors that share memory
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        tensors[key] = value
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header_metadata(meta) if meta else None)


def _resave_hint(unsafe):
    if unsafe.split('.')[0] in MMLAB_PACKAGES:
        return ('an MMagic/mmengine training save keeps logs and optimizer state beside the weights: if you trust '
                "the file, keep only its weights: torch.save({'state_dict': ckpt['state_dict']}, NEW)")
    return 're-save it with tensors only'


def _text_start(path, size=256):
    """The first line of ``path`` when the file starts as text (no NUL byte, valid UTF-8), else None."""
    try:
        with open(path, 'rb') as f:
            head = f.read(size)
    except OSError:
        return None
    if not head or b'\0' in head:
        return None
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError as err:  # a multi-byte character cut by ``size``
        if err.start < len(head) - 4:
            return None
        text = head[:err.start].decode('utf-8')
    if not all(c.isprintable() or c in '\t\r\n' for c in text):
        return None
    line = text.strip().splitlines()[0] if text.strip() else ''
    return line if len(line) <= 60 else line[:57] + '...'


def _unreadable(path, err, what, damaged='', hint=''):
    """The error for a file that cannot be read as ``what``: a text file is named as one."""
    start = _text_start(path)
    if start is not None:
        return CheckpointLayoutError(f'{path} is not {what}: it is a text file, starting {start!r}')
    return CheckpointLayoutError(f'{path} is not {what}{damaged} ({_first_line(err)}){hint}')


def _first_line(err):
    """A short reason: the error's first line (torch's weights_only preamble and pickle's bare opcodes left out)."""
    message = str(err).strip()
    inner = re.search(r'WeightsUnpickler error: \s*(.+)', message)
    line = (inner[1] if inner else (message.splitlines() or [''])[0]) or type(err).__name__
    if isinstance(err, KeyError) or line.isdigit():  # pickle's KeyError of an unknown opcode byte
        line = f'unknown pickle opcode {line}: not pickle data'
    return line if len(line) <= 120 else line[:117] + '...'


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def detect_layout(state):
    """(layout, kind) pairs whose signature key ``state`` holds."""
    return [pair for pair, key in SIGNATURES.items() if key in state]


def strip_module_prefix(state):
    """``state`` without the ``module.`` prefix that DataParallel / DistributedDataParallel put on every key."""
    return {(k[len(STRIP_PREFIX):] if k.startswith(STRIP_PREFIX) else k): v for k, v in state.items()}


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
    source, state, layout = find_network(obj, kind, layout, name)
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


def load_into(module, path, kind=None, layout='auto', strict=True, channel_order=None, option='channel_order'):
    """Load a checkpoint of any known layout into a ``PureStyleGAN2Generator``/``Discriminator``
    (or a module with the same parameter names); return the detected layout.

    ``kind`` defaults to what ``module`` is. Nothing is loaded when a key does not fit. ``channel_order``:
    see :func:`convert_network` (``option`` is the setting a warning names).
    """
    from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
    if kind is None:
        kind = 'discriminator' if isinstance(module, PureStyleGAN2Discriminator) else 'generator'
    mlp = getattr(module, 'style_mlp', None)
    lr_mlp = mlp[1].lr_mul if mlp is not None and len(mlp) > 1 else 0.01
    state, detected = load_stylegan2_state(path, kind, layout, lr_mlp, channel_order, option)
    expected = {k: v.shape for k, v in module.state_dict().items()}
    check_state(expected, state, f'{path} ({detected} {kind})', strict)
    module.load_state_dict(state, strict=strict)
    return detected


def key_indices(state, pattern):
    """The sorted integers that ``pattern``'s group captures in the keys of ``state`` (block numbers)."""
    return sorted({int(m[1]) for k in state if (m := re.fullmatch(pattern, k))})


def sub_state(state, prefix):
    """The entries of ``state`` under ``prefix``, with the prefix cut off."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


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
        rgbs = key_indices(state, r'to_rgbs\.(\d+)\.modulated_conv\.weight')
        widths.update({2**(i + 3): state[f'to_rgbs.{i}.modulated_conv.weight'].shape[2] for i in rgbs})
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'cannot infer the generator size: key {err} missing or mis-shaped') from None
    num_mlp = len(key_indices(state, r'style_mlp\.(\d+)\.weight'))
    return {'out_size': 2**(len(rgbs) + 2), 'num_style_feat': num_style_feat, 'num_mlp': num_mlp,
            **_channel_config(widths, 'generator')}


def infer_discriminator_config(state):
    """Constructor arguments of ``PureStyleGAN2Discriminator`` matching a BasicSR-layout state dict."""
    try:
        blocks = key_indices(state, r'conv_body\.(\d+)\.conv2\.1\.weight')
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
