"""Which torch device a ``--device`` flag (or a ``device=`` argument) names: one rule for every command."""
import os

import torch

from dlst_plugin.errors import ConfigError


def cuda_usable():
    """CUDA is built in and at least one device is visible."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def pick_device(name='auto', flag='--device', error=ConfigError):
    """``auto``: this process's CUDA device (``LOCAL_RANK`` under torchrun) when CUDA is usable, else the CPU;
    otherwise the device ``name`` names. An unknown name, or CUDA asked for where there is none, raises
    ``error`` naming ``flag``."""
    name = str(name) if isinstance(name, torch.device) else (name or 'auto')
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
        return torch.device('cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise error(f'{flag} {name!r}: not a device; use auto, cpu, cuda or cuda:N') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise error(f'{flag} {name}: no CUDA device is available here (use {flag} cpu or auto)')
    return device


PRECISIONS = ('auto', 'float32', 'bfloat16', 'float16')
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
_ANNOUNCED = set()


def cpu_has_native_bf16():
    """oneDNN computes bfloat16 natively on this CPU (AMX or AVX512-BF16); elsewhere it emulates it, 10-100x slower
    than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_dtype(device):
    """(dtype, why) the device computes fastest without losing the range of float32: bfloat16 on CUDA GPUs that
    have it and on CPUs with native bf16, float16 on other CUDA GPUs, else float32."""
    if device.type == 'cuda':
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, f'{torch.cuda.get_device_name(device)} computes bfloat16'
        return torch.float16, f'{torch.cuda.get_device_name(device)} has no bfloat16'
    if device.type == 'cpu' and cpu_has_native_bf16():
        return torch.bfloat16, 'this CPU computes bfloat16 natively (AMX / AVX512-BF16)'
    return torch.float32, 'this CPU has no native bfloat16 (it would be emulated, slower than float32)'


def resolve_dtype(name, device, flag='--dtype', error=ConfigError, announce=True):
    """The torch dtype a precision name asks for on ``device``: ``auto`` follows :func:`native_dtype` (the choice
    printed once per process on stderr); float16 runs on CUDA only."""
    name = name or 'auto'
    if name not in PRECISIONS:
        raise error(f'{flag} {name!r}: choose one of {", ".join(PRECISIONS)}')
    if name == 'float16' and device.type != 'cuda':
        raise error(f'{flag} float16 runs on CUDA only; on the CPU use bfloat16, float32 or auto')
    if name != 'auto':
        return DTYPES[name]
    dtype, why = native_dtype(device)
    if announce and (device.type, dtype) not in _ANNOUNCED:
        _ANNOUNCED.add((device.type, dtype))
        import sys
        print(f'note: {flag} auto: {str(dtype).replace("torch.", "")} on {device} ({why})', file=sys.stderr,
              flush=True)
    return dtype
