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
  finite, or whose finite loss is above ``max_loss`` (when set; under DDP the ranks agree, so all skip
  together), is skipped (gradients dropped, no optimizer step, no EMA), counted and logged; after
  ``max_nonfinite_steps`` such iterations in a row (default 20) training stops with an error naming the last
  checkpoint saved before the first skipped step. Under float16 a step the GradScaler skips because the
  gradients overflowed counts the same way (its scale halves each time, so a few such steps in a row are its
  calibration; twenty are not).

Every key, default and range is declared in :class:`dlst_plugin.options.blocks.StepOptions`.
"""
import contextlib

import torch

from dlst_plugin.devices import DTYPES
from dlst_plugin.errors import ConfigError, DLSTError

FP16_INIT_SCALE = 2.0**8  # not 2**16: R1's input gradients overflow float16 at large scales (calibration)


class TrainingDivergedError(DLSTError):
    """Too many optimizer steps in a row had non-finite (or above ``max_loss``) losses or gradients;
    ``first_bad_iter`` is the iteration of the first skipped step of that run."""

    def __init__(self, message, first_bad_iter=None):
        super().__init__(message)
        self.first_bad_iter = first_bad_iter


def check_amp_support(device, dtype_name):
    """Raise a one-line ConfigError when ``device`` cannot run ``train.amp_dtype`` (a decoded choice)."""
    if device.type == 'cuda' and dtype_name == 'bfloat16' and not torch.cuda.is_bf16_supported():
        raise ConfigError(f'train.amp_dtype: bfloat16 is not supported by {torch.cuda.get_device_name(device)}; '
                          'use float16 or set train.use_amp: false')
    if device.type not in ('cuda', 'cpu'):
        raise ConfigError(f'train.use_amp: mixed precision is supported on cuda and cpu, not {device.type}')


class StepControl:
    """Autocast, scalers, accumulation windows, clipping and the non-finite guard of one run."""

    def __init__(self, step, device, names=('g', 'd')):
        """``step``: the run's :class:`dlst_plugin.options.blocks.StepOptions` (decoded ``train:``)."""
        self.device = device
        self.use_amp = step.use_amp
        if self.use_amp:
            check_amp_support(device, step.amp_dtype)
        self.dtype = DTYPES[step.amp_dtype]
        self.accum = step.accum_iter
        self.grad_clip = step.grad_clip
        self.max_loss = step.max_loss
        self.max_nonfinite = step.max_nonfinite_steps
        fp16 = self.use_amp and self.dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler(device.type, init_scale=FP16_INIT_SCALE) if fp16 else None
                        for name in names}
        self.finite = {name: None for name in names}  # all losses of the window finite (a tensor: no sync)
        self.in_a_row = 0
        self.first_bad_iter = None  # first iteration of the current run of skipped steps
        self.window_bad = False
        self.skipped = {name: 0 for name in names}
        self.overflowed = {name: 0 for name in names}  # float16 steps the scaler skipped

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
        """Backward of ``loss / accum_iter`` (scaled under float16); remembers whether it was finite (and
        not above ``max_loss``)."""
        finite = torch.isfinite(loss.detach())
        if self.max_loss is not None:
            finite = finite & (loss.detach() <= self.max_loss)
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
        finite = self.finite[name] if self.finite[name] is not None else torch.tensor(True, device=self.device)
        self.finite[name] = None
        if self.max_loss is not None:
            finite = self._agreed(finite)
        ok = bool((finite & torch.isfinite(norm)).item()) if scaler is None else bool(finite.item())
        # no second device sync for the norm: without a scaler ``ok`` covers it; with one, an overflowed
        # (inf/NaN) norm spoils the clipped gradients of a step the scaler skips anyway (found at unscale_)
        if ok and self.grad_clip is not None:
            torch._foreach_mul_(self._grads(params), (self.grad_clip / (norm + 1e-6)).clamp(max=1.0))
        if ok and scaler is not None:
            ok = self._scaled_step(name, scaler, optimizer)
        elif ok:
            optimizer.step()
        elif scaler is not None:
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self._count(name, ok)
        return ok

    def _scaled_step(self, name, scaler, optimizer):
        """The float16 step: the scaler skips it when the unscaled gradients overflowed, and then halves its
        scale; such a step did not happen (no EMA, counted). Reading the scale costs a device sync, on the
        float16 path only."""
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() < scale:
            self.overflowed[name] += 1
            return False
        return True

    @staticmethod
    def _agreed(finite):
        """Under DDP, whether every rank's window passed (all-reduced MIN), so that all ranks skip together: a
        finite loss above ``max_loss`` on one rank leaves the averaged gradients finite (a NaN does not), and one
        rank stepping alone would let the replicas' weights drift apart."""
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return finite
        flag = finite.to(torch.int32).reshape(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return flag[0].bool()

    @staticmethod
    def _grads(params):
        return [p.grad for p in params if p.grad is not None]

    def _grad_norm(self, params):
        grads = self._grads(params)
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))

    def _count(self, name, ok):
        if not ok:
            self.skipped[name] += 1
            self.window_bad = True

    def end_window(self, current_iter=None):
        """After the G and D steps of a window: count it in the run of bad windows, stop after too many."""
        if not self.window_bad:
            self.in_a_row, self.first_bad_iter = 0, None
            return
        self.window_bad = False
        self.in_a_row += 1
        if self.first_bad_iter is None:
            self.first_bad_iter = current_iter
        if self.in_a_row >= self.max_nonfinite:
            overflow = sum(self.overflowed.values())
            above = f' or above train.max_loss ({self.max_loss:g})' if self.max_loss is not None else ''
            raise TrainingDivergedError(
                f'{self.in_a_row} optimizer steps in a row had non-finite losses or gradients{above}, from iteration '
                f'{self.first_bad_iter} (skipped: G {self.skipped.get("g", 0)}, D {self.skipped.get("d", 0)}'
                f'{f"; float16 overflows {overflow}" if overflow else ""}); no weights were updated by them. '
                'Lower the learning rate, set train.grad_clip, use amp_dtype bfloat16 instead of float16, or raise '
                'train.max_nonfinite_steps.', self.first_bad_iter)

    @property
    def in_bad_run(self):
        """Whether the last window(s) skipped their steps (checkpoints are not written then)."""
        return self.in_a_row > 0
