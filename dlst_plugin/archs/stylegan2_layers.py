"""StyleGAN2 layers shared by every network of the plugin (generator, discriminator,
degrader, Skip-Transformer decoder). Parameter names follow BasicSR's StyleGAN2 so its
checkpoints load strictly (docs/design.md#stylegan2)."""
import math

import torch
from torch import nn
from torch.nn import functional as F

from dlst_plugin.archs.stylegan2_ops import SQRT2, Blur, FusedLeakyReLU, Upsample, fused_leaky_relu, smooth_pad

RESAMPLE_KERNEL = (1, 3, 3, 1)


def stylegan2_channels(channel_multiplier=2, narrow=1):
    """Feature width per resolution, as StyleGAN2 (``narrow`` scales all of them)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: int(c * narrow) for res, c in base.items()}


def log2_size(size, what='out_size'):
    log = int(math.log2(size)) if size > 0 else 0
    if size < 4 or 2**log != size:
        raise ValueError(f'{what} must be a power of two >= 4, got {size}')
    return log


class NormStyleCode(nn.Module):
    """Pixel norm of the latent code z."""

    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate."""

    def __init__(self, in_channels, out_channels, bias=True, bias_init_val=0, lr_mul=1, activation=None):
        super().__init__()
        if activation not in ('fused_lrelu', None):
            raise ValueError(f"EqualLinear activation must be 'fused_lrelu' or None, got {activation!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lr_mul, self.activation = lr_mul, activation
        self.scale = lr_mul / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_channels, ), float(bias_init_val))) if bias else None

    def forward(self, x):
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == 'fused_lrelu':
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, bias_init_val=0):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels, ), float(bias_init_val))) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2x up/down sampling.

    Same result as BasicSR's per-sample grouped convolution, computed as
    ``conv(x * style, W) * demod``: one dense convolution for the whole batch.
    """

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, sample_mode=None,
                 resample_kernel=RESAMPLE_KERNEL, eps=1e-8):
        super().__init__()
        if sample_mode not in ('upsample', 'downsample', None):
            raise ValueError(f"sample_mode must be 'upsample', 'downsample' or None, got {sample_mode!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.sample_mode, self.eps = demodulate, sample_mode, eps
        if sample_mode is not None:
            up = sample_mode == 'upsample'
            pad = smooth_pad(len(resample_kernel), kernel_size, upsample=up)
            self.smooth = Blur(resample_kernel, pad, gain=4 if up else 1)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.modulation = EqualLinear(num_style_feat, in_channels, bias=True, bias_init_val=1)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.padding = kernel_size // 2

    def forward(self, x, style, bias=None):
        """``bias`` (c_out,) is added to the output (inside the last convolution when possible)."""
        style = self.modulation(style).to(x.dtype)  # (b, c_in)
        weight = (self.weight[0] * self.scale).to(x.dtype)  # (c_out, c_in, k, k)
        demod = None
        if self.demodulate:
            # sum over (c_in, k, k) of (scale * W * style)^2, without building per-sample weights
            wsq = weight.float().pow(2).sum([2, 3])  # (c_out, c_in)
            demod = torch.rsqrt(style.float().pow(2) @ wsq.t() + self.eps).to(x.dtype)  # (b, c_out)
        if x.shape[0] == 1:  # fold style and demodulation into the weight: no extra pass over x
            weight = weight * style[0, None, :, None, None]
            if demod is not None:
                weight = weight * demod[0, :, None, None, None]
            return self._conv(x, weight, bias)
        out = self._conv(x * style[:, :, None, None], weight, None if demod is not None else bias, demod=demod)
        if demod is not None and bias is not None:
            out = _add(out, bias.to(out.dtype)[None, :, None, None])
        return out

    def _conv(self, x, weight, bias, demod=None):
        bias = None if bias is None else bias.to(x.dtype)
        if self.sample_mode == 'upsample':
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            if demod is not None:
                out = _mul(out, demod[:, :, None, None])
            return self.smooth(out, bias)
        if self.sample_mode == 'downsample':
            out = F.conv2d(self.smooth(x), weight, bias=bias, stride=2)
        else:
            out = F.conv2d(x, weight, bias=bias, padding=self.padding)
        return out if demod is None else _mul(out, demod[:, :, None, None])


def _inplace(*tensors):
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _mul(x, y):
    return x.mul_(y) if _inplace(x, y) else x * y


def _add(x, y):
    return x.add_(y) if _inplace(x, y) else x + y


class StyleConv(nn.Module):
    """Modulated conv + noise injection + fused bias/leaky ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, sample_mode=None,
                 resample_kernel=RESAMPLE_KERNEL):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, kernel_size, num_style_feat, demodulate,
                                              sample_mode, resample_kernel)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x, style, noise=None):
        # (conv + bias) + w * noise, then leaky ReLU * sqrt(2): BasicSR adds the bias after the
        # noise; the sum is the same and the bias rides inside the convolution.
        out = self.modulated_conv(x, style, bias=self.activate.bias)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        if _inplace(out, noise, self.weight):  # addcmul_: no .item(), so no device sync per layer
            out.addcmul_(noise.to(out.dtype), self.weight.to(out.dtype))
        else:
            out = out + self.weight * noise.to(out.dtype)
        return fused_leaky_relu(out, None, self.activate.negative_slope, self.activate.scale)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB, added to the upsampled RGB skip."""

    def __init__(self, in_channels, num_style_feat, upsample=True, resample_kernel=RESAMPLE_KERNEL):
        super().__init__()
        self.upsample = Upsample(resample_kernel) if upsample else None
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.modulated_conv(x, style, bias=self.bias.view(-1))
        if skip is not None:
            out = _add(out, self.upsample(skip) if self.upsample is not None else skip)
        return out


class ConstantInput(nn.Module):

    def __init__(self, num_channel, size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch):
        return self.weight.repeat(batch, 1, 1, 1)


class ScaledLeakyReLU(nn.Module):

    def __init__(self, negative_slope=0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope) * SQRT2


class ConvLayer(nn.Sequential):
    """[blur] -> equalised conv (stride 2 when downsampling) -> [bias + activation]."""

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False, resample_kernel=RESAMPLE_KERNEL,
                 bias=True, activate=True):
        layers = []
        if downsample:
            layers.append(Blur(resample_kernel, smooth_pad(len(resample_kernel), kernel_size, upsample=False)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Discriminator residual block: two convs (the second downsamples) + 1x1 skip."""

    def __init__(self, in_channels, out_channels, resample_kernel=RESAMPLE_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, resample_kernel=resample_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, resample_kernel=resample_kernel,
                              bias=False, activate=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2



