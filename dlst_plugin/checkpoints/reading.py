"""Reading checkpoint files: the plugin's one reader (docs/design.md#checkpoints).

* :func:`read_checkpoint` - the dict a ``.pth``/``.pt``/``.ckpt`` (``torch.load(weights_only=True)``, passed
  explicitly) or ``.safetensors`` file holds; one :class:`CheckpointLayoutError` naming the file (and the
  setting that named it) when it is missing, a folder, text, damaged or holds Python objects.
* :func:`choose_weights` - which weights of a checkpoint a network takes: ``params_ema``, else ``params``,
  else the file as a flat state dict, ``module.`` prefixes stripped. Every loader calls it.
* :func:`write_safetensors` - the one safetensors writer (atomic, metadata in the header).

Nothing here knows an architecture: StyleGAN2 layouts are :mod:`dlst_plugin.checkpoints.stylegan2_layouts`,
what a file says about its network :mod:`dlst_plugin.checkpoints.meta`, and building networks from files
:mod:`dlst_plugin.loading`.
"""
import argparse
import logging
import pickle
import re
from pathlib import Path

import torch

from dlst_plugin.errors import CheckpointLayoutError, short_reason

MAX_LISTED = 12
MMLAB_PACKAGES = ('mmengine', 'mmcv', 'mmagic', 'mmedit', 'mmgen')  # whose objects training saves may pickle
logger = logging.getLogger(__name__)


STRIP_PREFIX = 'module.'  # DataParallel / DistributedDataParallel wrappers
WEIGHT_KEYS = ('params_ema', 'params')  # BasicSR's net_*_N.pth: the EMA weights first


def listing(keys):
    keys = list(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    return f'{shown}, ... ({len(keys)} in all)' if len(keys) > MAX_LISTED else shown


def read_checkpoint(path, setting=None, expected=None):
    """The dict a checkpoint file holds, with one clear error naming the file when it cannot be read.

    ``.pth`` / ``.pt`` / ``.ckpt``: ``torch.load(weights_only=True)`` (``argparse.Namespace`` is allowed:
    rosinality's training checkpoints store their options in one). ``.safetensors``: the tensors; a file
    ``dlst-export`` wrote (its header holds the plugin's metadata) reads back in the layout it was exported
    from, ``{'params_ema': tensors, 'params': tensors, 'meta': {...}}``; any other safetensors file is its
    flat dict of tensors, as a ``.pth`` holding a bare state dict would be. ``setting`` (the flag or option
    that named the file) and ``expected`` (what it should be) go into every error.
    """
    try:
        return _read(Path(path))
    except CheckpointLayoutError as err:
        if setting is None and expected is None:
            raise
        where = f'{setting} ' if setting else ''
        raise CheckpointLayoutError(f'{where}{err}' + (f'; expected {expected}' if expected else '')) from None


def _read(path):
    if not path.exists():
        raise CheckpointLayoutError(f'{path}: no such file')
    if not path.is_file():
        raise CheckpointLayoutError(f'{path} is a folder, not a checkpoint file' if path.is_dir() else
                                    f'{path} is not a regular file')  # a FIFO or device would block or never end
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


def choose_weights(ckpt, prefer='params_ema'):
    """The state dict a network takes from a loaded checkpoint: ``prefer`` (``params_ema``: the EMA weights),
    else ``params``, else the checkpoint itself when it is a flat dict of tensors (a ``meta`` entry left
    out); ``module.`` prefixes stripped. None when none of these holds tensors. ``prefer=None``: the
    checkpoint itself (BasicSR's ``param_key: ~``)."""
    order = ((prefer, ) if prefer else ()) + tuple(k for k in WEIGHT_KEYS if k != prefer and prefer)
    state = next((ckpt[k] for k in order if isinstance(ckpt.get(k), dict) and ckpt[k]), None)
    if state is None:
        state = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    return strip_module_prefix(state) if state else None


def strip_module_prefix(state):
    """``state`` without the ``module.`` prefix that DataParallel / DistributedDataParallel put on every key."""
    return {(k[len(STRIP_PREFIX):] if k.startswith(STRIP_PREFIX) else k): v for k, v in state.items()}


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
    inner = re.search(r'WeightsUnpickler error: \s*(.+)', str(err).strip())
    line = short_reason(inner[1] if inner else err, 120)
    if isinstance(err, KeyError) or line.isdigit():  # pickle's KeyError of an unknown opcode byte
        line = short_reason(f'unknown pickle opcode {line}: not pickle data', 120)
    return line


def key_indices(state, pattern):
    """The sorted integers that ``pattern``'s group captures in the keys of ``state`` (block numbers)."""
    return sorted({int(m[1]) for k in state if (m := re.fullmatch(pattern, k))})


def sub_state(state, prefix):
    """The entries of ``state`` under ``prefix``, with the prefix cut off."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


