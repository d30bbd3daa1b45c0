"""StyleGAN2's low-level ops in plain PyTorch: FIR resampling and the fused bias-activation.

The math is BasicSR's ``upfirdn2d`` / ``fused_leaky_relu`` (docs/design.md#stylegan2), written as
depthwise convolutions the CPU and GPU backends run fast, instead of BasicSR's
reshape-and-permute ``upfirdn2d_native`` or its CUDA-only extension.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2)


def make_resample_kernel(k):
    """1D taps -> normalised 2D FIR kernel (outer product), as StyleGAN2."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def activation_format(device):
    """The memory format the archs run their activations in on ``device``.

    Channels-last everywhere (oneDNN's and cuDNN's forward convolutions are 1.3-3x faster in it), except
    while autograd records on a CPU: there oneDNN's channels-last convolution *backward* is about 3x slower
    than the contiguous one (64 -> 64 channels, 3x3, 256 px: 267 vs 84 ms on an AVX2 EPYC), which costs a
    training step far more than the forward gains."""
    if torch.device(device).type == 'cpu' and torch.is_grad_enabled():
        return torch.contiguous_format
    return torch.channels_last


def _grad_free(x):
    return not (torch.is_grad_enabled() and x.requires_grad)


def fused_leaky_relu(x, bias=None, negative_slope=0.2, scale=SQRT2):
    """``leaky_relu(x + bias) * scale``; in place when autograd does not need ``x``."""
    if _grad_free(x) and (bias is None or _grad_free(bias)):
        if bias is not None:
            x = x.add_(bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype))
        return F.leaky_relu_(x, negative_slope).mul_(scale)
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) * sqrt(2); parameter ``bias`` as BasicSR's."""

    def __init__(self, channels, negative_slope=0.2, scale=SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x):
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def _depthwise(kernel, channels, dtype):
    return kernel.to(dtype)[None, None].expand(channels, 1, *kernel.shape)


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0), bias=None):
    """Zero-insert upsample by ``up``, pad by ``pad`` (both axes), FIR filter, keep every
    ``down``-th sample: BasicSR's ``upfirdn2d`` for square factors.

    Upsampling is a depthwise transposed convolution (no zero-inserted tensor is made);
    filtering and downsampling are one depthwise (strided) convolution. ``bias`` (c,) is
    added to the output (fused into the filtering convolution).
    """
    c = x.shape[1]
    kh, kw = kernel.shape
    p0, p1 = pad
    if up > 1:
        # conv_transpose2d(x, k, stride=up) == zero-insert then full convolution with k;
        # upfirdn's output starts (kh - 1 - p0) samples into it.
        out = F.conv_transpose2d(x, _depthwise(kernel, c, x.dtype), stride=up, groups=c)
        start = kh - 1 - p0
        length = x.shape[2] * up + p0 + p1 - kh + 1
        pad_front, pad_back = max(-start, 0), max(start + length - out.shape[2], 0)
        if pad_front or pad_back:
            out = F.pad(out, [pad_front, pad_back, pad_front, pad_back])
            start += pad_front
        out = out[:, :, start:start + length, start:start + length]
        if down > 1:
            out = out[:, :, ::down, ::down]
        return out if bias is None else out + bias.to(out.dtype)[None, :, None, None]
    weight = _depthwise(torch.flip(kernel, [0, 1]), c, x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    if p0 == p1 and p0 >= 0:
        return F.conv2d(x, weight, bias, stride=down, padding=p0, groups=c)
    return F.conv2d(F.pad(x, [p0, p1, p0, p1]), weight, bias, stride=down, groups=c)


class Blur(nn.Module):
    """FIR smoothing with padding ``pad`` (BasicSR's ``UpFirDnSmooth``); no state-dict entry."""

    def __init__(self, resample_kernel, pad, gain=1):
        super().__init__()
        self.register_buffer('kernel', make_resample_kernel(resample_kernel) * gain, persistent=False)
        self.pad = tuple(pad)

    def forward(self, x, bias=None):
        return upfirdn2d(x, self.kernel, pad=self.pad, bias=bias)


class Upsample(nn.Module):
    """2x FIR upsampling (BasicSR's ``UpFirDnUpsample``); no state-dict entry."""

    def __init__(self, resample_kernel, factor=2):
        super().__init__()
        self.register_buffer('kernel', make_resample_kernel(resample_kernel) * factor**2, persistent=False)
        self.factor = factor
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def smooth_pad(kernel_len, kernel_size, upsample):
    """Padding of the blur around a stride-2 (transposed) convolution, as StyleGAN2."""
    if upsample:
        p = (kernel_len - 2) - (kernel_size - 1)
        return ((p + 1) // 2 + 1, p // 2 + 1)
    p = (kernel_len - 2) + (kernel_size - 1)
    return ((p + 1) // 2, p // 2)
