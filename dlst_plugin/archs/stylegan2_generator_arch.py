"""Pure-PyTorch StyleGAN2 generator, checkpoint-compatible with BasicSR's ``StyleGAN2Generator``.

Besides BasicSR's ``forward``, it exposes the two halves other networks reuse:
``mapping`` (z -> w) and ``synthesis`` (per-layer latents -> image), the latter with a
``feature_hook`` through which the Skip-Transformer replaces decoder features, and an
``rgb_hook`` through which GLEAN fuses encoder features into the RGB skip.
"""
import random

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dlst_plugin.archs.hyperparameters import store_hyperparameters
from dlst_plugin.archs.stylegan2_layers import (
    RESAMPLE_KERNEL,
    ConstantInput,
    EqualLinear,
    NormStyleCode,
    StyleConv,
    ToRGB,
    log2_size,
    stylegan2_channels,
)
from dlst_plugin.archs.stylegan2_ops import activation_format


@ARCH_REGISTRY.register()
@store_hyperparameters
class PureStyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (Karras et al. 2020) in plain PyTorch; runs on CPU and GPU.

    Args: as BasicSR's ``StyleGAN2Generator`` (out_size, num_style_feat, num_mlp,
    channel_multiplier, resample_kernel, lr_mlp, narrow).
    """

    def __init__(self, out_size, num_style_feat=512, num_mlp=8, channel_multiplier=2, resample_kernel=RESAMPLE_KERNEL,
                 lr_mlp=0.01, narrow=1):
        super().__init__()
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        self.log_size = log2_size(out_size)
        self.style_mlp = nn.Sequential(NormStyleCode(), *[
            EqualLinear(num_style_feat, num_style_feat, bias=True, lr_mul=lr_mlp, activation='fused_lrelu')
            for _ in range(num_mlp)
        ])
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.channels = {str(k): v for k, v in channels.items()}
        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat, resample_kernel=resample_kernel)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False, resample_kernel=resample_kernel)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for idx in range(self.num_layers):
            res = 2**((idx + 5) // 2)
            self.noises.register_buffer(f'noise{idx}', torch.randn(1, 1, res, res))
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.style_convs.append(
                StyleConv(in_channels, out_channels, 3, num_style_feat, sample_mode='upsample',
                          resample_kernel=resample_kernel))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat,
                                              resample_kernel=resample_kernel))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True, resample_kernel=resample_kernel))
            in_channels = out_channels

    # --- the halves -------------------------------------------------------------------
    def mapping(self, z):
        """z (b, num_style_feat) -> w (b, num_style_feat)."""
        return self.style_mlp(z)

    def get_latent(self, x):
        return self.style_mlp(x)

    def make_noise(self):
        """Fresh noise maps, one per style conv (the layout ``noise=`` takes)."""
        dev = self.constant_input.weight.device
        return [torch.randn(1, 1, 2**((i + 5) // 2), 2**((i + 5) // 2), device=dev) for i in range(self.num_layers)]

    def fixed_noise(self):
        """The stored noise maps (``randomize_noise=False``)."""
        return [getattr(self.noises, f'noise{i}') for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, num_latent):
        z = torch.randn(num_latent, self.num_style_feat, device=self.constant_input.weight.device)
        return self.style_mlp(z).mean(0, keepdim=True)

    def latents_from_styles(self, styles, truncation=1, truncation_latent=None, inject_index=None):
        """w codes (one, or two for style mixing) -> per-layer latents (b, num_latent, c)."""
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            s = styles[0]
            return s if s.ndim == 3 else s.unsqueeze(1).repeat(1, self.num_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.num_latent - 1)
        return torch.cat([
            styles[0].unsqueeze(1).repeat(1, inject_index, 1),
            styles[1].unsqueeze(1).repeat(1, self.num_latent - inject_index, 1)
        ], 1)

    def synthesis(self, latent, noise=None, feature_hook=None, dtype=None, rgb_hook=None):
        """Per-layer latents (b, num_latent, c) -> image (b, 3, out_size, out_size).

        ``noise``: list of ``num_layers`` maps, or None for fresh noise.
        ``feature_hook(resolution, feature) -> feature`` may replace the feature after the
        two style convs of each resolution (4 ... out_size), before its ToRGB.
        ``rgb_hook(resolution, skip) -> skip`` may replace the RGB skip right after each ToRGB
        (4 ... out_size). Both get ``resolution`` as a Python int (static, so tracing works).
        """
        noise = noise if noise is not None else [None] * self.num_layers
        out = self.constant_input(latent.shape[0]).to(dtype=dtype, memory_format=activation_format(latent.device))
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        if feature_hook is not None:
            out = feature_hook(4, out)
        skip = self.to_rgb1(out, latent[:, 1])
        if rgb_hook is not None:
            skip = rgb_hook(4, skip)
        i, resolution = 1, 4
        for conv1, conv2, noise1, noise2, to_rgb in zip(self.style_convs[::2], self.style_convs[1::2], noise[1::2],
                                                        noise[2::2], self.to_rgbs):
            resolution *= 2
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            if feature_hook is not None:
                out = feature_hook(resolution, out)
            skip = to_rgb(out, latent[:, i + 2], skip)
            if rgb_hook is not None:
                skip = rgb_hook(resolution, skip)
            i += 2
        return skip.contiguous()

    # --- BasicSR's interface -------------------------------------------------------------
    def forward(self, styles, input_is_latent=False, noise=None, randomize_noise=True, truncation=1,
                truncation_latent=None, inject_index=None, return_latents=False):
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if noise is None and not randomize_noise:
            noise = self.fixed_noise()
        latent = self.latents_from_styles(styles, truncation, truncation_latent, inject_index)
        image = self.synthesis(latent, noise)
        return (image, latent) if return_latents else (image, None)
