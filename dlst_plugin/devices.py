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
