"""How the adversarial core turns a loss into an optimizer step: mixed precision, gradient
accumulation, clipping and the non-finite guard. One object per training run, shared by the G and D
steps of every model.

Options (all under ``train:``):

* ``use_amp`` / ``amp_dtype`` (``bfloat16`` or ``float16``): forward passes and losses run under
  ``torch.autocast``; parameters, EMA weights, optimizer states and checkpoints stay float32. float16
  uses one ``torch.amp.GradScaler`` per network (G and D step separately); bfloat16 needs none.
* ``accum_iter`` (N): gradients of N consecutive iterations (data-loader batches) are summed, each
  scaled by 1/N, and the optimizers step on every N-th iteration; under DDP the first N-1 skip the
  all-reduce. ``total_iter``, scheduler periods and ``net_d_reg_every`` keep counting iterations.
* ``grad_clip`` (max norm, per network), and the guard: a step whose loss or gradients are not
  finite is skipped (gradients dropped, no optimizer step, no EMA), counted and logged; after
  ``max_nonfinite_steps`` such iterations in a row (default 20) training stops with an error.
  With float16 a step skipped while the scaler still lowers its scale (above 1) is the scaler's
  normal calibration and not counted.
"""
import contextlib

import torch

from dlst_plugin.errors import ConfigError, DLSTError
from dlst_plugin.models.core_parts import option

AMP_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}
DEFAULT_MAX_NONFINITE = 20
FP16_INIT_SCALE = 2.0**8  # not 2**16: R1's input gradients overflow float16 at large scales (calibration)


class TrainingDivergedError(DLSTError):
    """Too many optimizer steps in a row had non-finite losses or gradients."""


def check_amp_support(device, dtype_name):
    """Raise a one-line ConfigError when ``device`` cannot run ``train.amp_dtype``."""
    if dtype_name not in AMP_DTYPES:
        raise ConfigError(f'train.amp_dtype: {dtype_name!r} is not one of {", ".join(AMP_DTYPES)}')
    if device.type == 'cuda' and dtype_name == 'bfloat16' and not torch.cuda.is_bf16_supported():
        raise ConfigError(f'train.amp_dtype: bfloat16 is not supported by {torch.cuda.get_device_name(device)}; '
                          'use float16 or set train.use_amp: false')
    if device.type not in ('cuda', 'cpu'):
        raise ConfigError(f'train.use_amp: mixed precision is supported on cuda and cpu, not {device.type}')


class StepControl:
    """Autocast, scalers, accumulation windows, clipping and the non-finite guard of one run."""

    def __init__(self, train_opt, device, names=('g', 'd')):
        self.device = device
        self.use_amp = bool(train_opt.get('use_amp', False))
        dtype_name = option(train_opt, 'amp_dtype', 'bfloat16')
        if self.use_amp:
            check_amp_support(device, dtype_name)
        self.dtype = AMP_DTYPES.get(dtype_name, torch.bfloat16)
        self.accum = int(option(train_opt, 'accum_iter', 1))
        if self.accum < 1:
            raise ConfigError(f'train.accum_iter must be >= 1, got {self.accum}')
        clip = train_opt.get('grad_clip')
        self.grad_clip = float(clip) if clip else None
        self.max_nonfinite = int(option(train_opt, 'max_nonfinite_steps', DEFAULT_MAX_NONFINITE))
        fp16 = self.use_amp and self.dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler(device.type, init_scale=FP16_INIT_SCALE) if fp16 else None
                        for name in names}
        self.finite = {name: None for name in names}  # all losses of the window finite (a tensor: no sync)
        self.in_a_row = 0
        self.window_bad = False
        self.skipped = {name: 0 for name in names}

    # --- the window ---------------------------------------------------------------------------
    def is_last(self, current_iter):
        """Whether iteration ``current_iter`` (1-based) closes an accumulation window."""
        return current_iter % self.accum == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.use_amp)

    @staticmethod
    def no_sync(net, last):
        """DDP's ``no_sync`` for the iterations that do not close the window (no all-reduce there)."""
        if not last and hasattr(net, 'no_sync'):
            return net.no_sync()
        return contextlib.nullcontext()

    # --- backward and step --------------------------------------------------------------------
    def backward(self, name, loss):
        """Backward of ``loss / accum_iter`` (scaled under float16); remembers whether it was finite."""
        finite = torch.isfinite(loss.detach())
        self.finite[name] = finite if self.finite[name] is None else self.finite[name] & finite
        loss = loss / self.accum
        scaler = self.scalers[name]
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def input_gradient(self, name, outputs, inputs):
        """d sum(outputs) / d inputs with a graph (R1), unscaled when ``name``'s float16 scaler is on."""
        scaler = self.scalers[name]
        total = outputs.float().sum()
        if scaler is None:
            return torch.autograd.grad(total, inputs, create_graph=True)[0]
        grad = torch.autograd.grad(scaler.scale(total), inputs, create_graph=True)[0]
        return grad / scaler.get_scale()

    def step(self, name, optimizer, params):
        """Close the window of ``name``: clip, check, step (or skip); True when the optimizer stepped."""
        scaler = self.scalers[name]
        if scaler is not None:
            scaler.unscale_(optimizer)
        # the norm serves the finiteness check (no scaler) and clipping; a scaler finds overflow itself
        norm = self._grad_norm(params) if scaler is None or self.grad_clip is not None else None
        finite = self.finite[name] if self.finite[name] is not None else torch.tensor(True)
        self.finite[name] = None
        ok = bool((finite & torch.isfinite(norm)).item()) if scaler is None else bool(finite.item())
        # no second device sync for the norm: without a scaler ``ok`` covers it; with one, an overflowed
        # (inf/NaN) norm spoils the clipped gradients of a step the scaler skips anyway (found at unscale_)
        if ok and self.grad_clip is not None:
            torch._foreach_mul_(self._grads(params), (self.grad_clip / (norm + 1e-6)).clamp(max=1.0))
        if ok and scaler is not None:
            scaler.step(optimizer)  # skips the step itself when the unscaled gradients overflowed
            scaler.update()
        elif ok:
            optimizer.step()
        elif scaler is not None:
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self._count(name, ok)
        return ok

    @staticmethod
    def _grads(params):
        return [p.grad for p in params if p.grad is not None]

    def _grad_norm(self, params):
        grads = self._grads(params)
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))

    def _count(self, name, ok):
        """Count a skipped step; under float16 a skip while the scaler still lowers its scale (above 1) is
        its calibration, not a failure."""
        scaler = self.scalers[name]
        if ok or (scaler is not None and scaler.get_scale() > 1.0):
            return
        self.skipped[name] += 1
        self.window_bad = True

    def end_window(self):
        """After the G and D steps of a window: count it in the run of bad windows, stop after too many."""
        if not self.window_bad:
            self.in_a_row = 0
            return
        self.window_bad = False
        self.in_a_row += 1
        if self.in_a_row >= self.max_nonfinite:
            raise TrainingDivergedError(
                f'{self.in_a_row} optimizer steps in a row had non-finite losses or gradients (skipped: G '
                f'{self.skipped.get("g", 0)}, D {self.skipped.get("d", 0)}); no weights were updated by them and '
                'the saved checkpoints are finite. Lower the learning rate, set train.grad_clip, use '
                'amp_dtype bfloat16 instead of float16, or raise train.max_nonfinite_steps.')
