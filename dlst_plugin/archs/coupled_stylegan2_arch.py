"""Coupled StyleGAN2 generators for degradation learning (paper 3.2.2, Fig. 1; docs/design.md#degradation-learning).

One mapping network (z -> w), shared and frozen; a frozen *red* synthesis network that draws
the clean face y; a trainable *green* synthesis network that learns to draw the degraded face
y_hat. All three start from one pretrained StyleGAN2, and the same latents and noise maps
drive both synthesis networks, so before training y_hat == y exactly.
"""
from typing import List, NamedTuple

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dlst_plugin.archs.hyperparameters import store_hyperparameters
from dlst_plugin.archs.prior_files import load_prior
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.archs.stylegan2_layers import RESAMPLE_KERNEL

MEAN_LATENT_SEED = 0  # the truncation centre is the mean w of a fixed set of z: same for every run


class CoupledCodes(NamedTuple):
    """Every random number a batch of coupled samples needs.

    ``z``: (b, 2, c) two codes per sample; ``inject_index``: (b,) layers from this index on take
    the second code (``num_latent`` = no style mixing); ``noise``: one (b, 1, r, r) map per
    style conv, shared by the red and the green network.
    """
    z: torch.Tensor
    inject_index: torch.Tensor
    noise: List[torch.Tensor]

    def to(self, device):
        return CoupledCodes(self.z.to(device), self.inject_index.to(device), [n.to(device) for n in self.noise])

    @staticmethod
    def cat(codes):
        """Stack per-sample codes (e.g. one per pair index) into one batch."""
        return CoupledCodes(torch.cat([c.z for c in codes]), torch.cat([c.inject_index for c in codes]),
                            [torch.cat(maps) for maps in zip(*[c.noise for c in codes])])


@ARCH_REGISTRY.register()
@store_hyperparameters
class CoupledStyleGAN2(nn.Module):
    """Mapping + red (frozen, clean) + green (trainable, degraded) StyleGAN2 synthesis networks.

    Args:
        out_size, num_style_feat, num_mlp, channel_multiplier, resample_kernel, lr_mlp, narrow:
            as ``PureStyleGAN2Generator`` (they must match the pretrained checkpoint).
        pretrained (str | None): StyleGAN2 generator checkpoint, any layout
            ``dlst_plugin.checkpoints.reading`` reads; mapping, red and green all load
            it (strictly: a checkpoint that does not fit raises, naming the keys). None: random
            initialisation (tests); green still starts as a copy of red.
        pretrained_layout (str): 'auto' or a layout name for the checkpoint reader.
        pretrained_channel_order (str | None): 'rgb' or 'bgr', the colour order the pretrained StyleGAN2 was
            trained on ('bgr': its ToRGB outputs are swapped on loading, so the degrader draws RGB); unset =
            'rgb', with a warning for an MMagic training save (MMagic trains StyleGAN2 on BGR images).
        truncation (float): truncation psi towards the mean w; 1 = none.
        mixing_prob (float): probability that a sample mixes two codes (StyleGAN2 style mixing).
        num_mean_latent (int): number of z averaged for the truncation centre.
    """

    MEMORY_FORMAT = torch.channels_last  # the synthesis networks run channels-last inside

    def __init__(self, out_size, num_style_feat=512, num_mlp=8, channel_multiplier=2, resample_kernel=RESAMPLE_KERNEL,
                 lr_mlp=0.01, narrow=1, pretrained=None, pretrained_layout='auto', truncation=1.0, mixing_prob=0.0,
                 num_mean_latent=4096, pretrained_channel_order=None):
        super().__init__()
        if not 0 < truncation <= 1:
            raise ValueError(f'truncation must be in (0, 1], got {truncation}')
        if not 0 <= mixing_prob <= 1:
            raise ValueError(f'mixing_prob must be in [0, 1], got {mixing_prob}')
        kwargs = dict(out_size=out_size, num_style_feat=num_style_feat, channel_multiplier=channel_multiplier,
                      resample_kernel=resample_kernel, narrow=narrow)
        # the red generator owns the shared mapping (its style_mlp); green has none of its own
        self.red = PureStyleGAN2Generator(num_mlp=num_mlp, lr_mlp=lr_mlp, **kwargs)
        self.green = PureStyleGAN2Generator(num_mlp=0, **kwargs)
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        self.num_latent = self.red.num_latent
        self.truncation = truncation
        self.mixing_prob = mixing_prob
        self.num_mean_latent = num_mean_latent
        self._mean_w = None
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_mean_latent())
        if pretrained:
            self.load_stylegan2(pretrained, pretrained_layout, pretrained_channel_order)
        else:
            self.reset_green()
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    # --- parameters ------------------------------------------------------------------------
    def frozen_parameters(self):
        """Mapping and red synthesis: never trained (paper 3.2.2)."""
        return list(self.red.parameters())

    def trainable_parameters(self):
        return list(self.green.parameters())

    def reset_green(self):
        """Make the green synthesis network an exact copy of the red one."""
        state = {k: v for k, v in self.red.state_dict().items() if not k.startswith('style_mlp.')}
        self.green.load_state_dict(state, strict=True)

    def load_stylegan2(self, path, layout='auto', channel_order=None):
        """Initialise mapping, red and green from one pretrained StyleGAN2 generator checkpoint."""
        load_prior(self.red, path, kind='generator', layout=layout, strict=True, channel_order=channel_order,
                  option='network_g.pretrained_channel_order')
        self.reset_green()
        self._forget_mean_latent()

    # --- latents -----------------------------------------------------------------------------
    def _forget_mean_latent(self):
        self._mean_w = None

    @torch.no_grad()
    def mean_latent(self):
        """Truncation centre: mean w of ``num_mean_latent`` fixed z (recomputed after a load)."""
        device = self.red.constant_input.weight.device
        if self._mean_w is None or self._mean_w.device != device:
            z = torch.randn(self.num_mean_latent, self.num_style_feat,
                            generator=torch.Generator().manual_seed(MEAN_LATENT_SEED)).to(device)
            self._mean_w = self.red.mapping(z).mean(0, keepdim=True)
        return self._mean_w

    def noise_sizes(self):
        return [2**((i + 5) // 2) for i in range(self.red.num_layers)]

    def draw_codes(self, batch, generator=None, device=None):
        """Draw z, the style-mixing choice and the noise maps of ``batch`` samples.

        Always draws the same amount of random numbers in the same order, so a seeded
        ``generator`` gives the same sample whatever ``mixing_prob`` and batch layout are.
        """
        device = device if generator is None else generator.device
        kw = dict(generator=generator, device=device)
        z = torch.randn(batch, 2, self.num_style_feat, **kw)
        mix = torch.rand(batch, **kw) < self.mixing_prob
        inject = torch.randint(1, max(2, self.num_latent), (batch, ), **kw)
        inject = torch.where(mix, inject, torch.full_like(inject, self.num_latent))
        noise = [torch.randn(batch, 1, r, r, **kw) for r in self.noise_sizes()]
        return CoupledCodes(z, inject, noise)

    def latents(self, z, inject_index=None, truncation=None):
        """z (b, c) or (b, 2, c) -> per-layer latents (b, num_latent, c) through the shared mapping."""
        truncation = self.truncation if truncation is None else truncation
        if z.ndim == 2:
            z = z.unsqueeze(1)
        b, n, c = z.shape
        w = self.red.mapping(z.reshape(b * n, c)).view(b, n, c)
        if truncation < 1:
            centre = self.mean_latent()
            w = centre + truncation * (w - centre)
        if n == 1 or inject_index is None:
            return w[:, :1].expand(b, self.num_latent, c)
        layer = torch.arange(self.num_latent, device=z.device)
        first = (layer[None, :] < inject_index.to(z.device)[:, None]).unsqueeze(-1)
        return torch.where(first, w[:, :1], w[:, 1:2])

    # --- images ------------------------------------------------------------------------------
    def forward(self, z, noise=None, inject_index=None, truncation=None, with_clean=True):
        """z (b, c) or (b, 2, c) -> (clean y, degraded y_hat), both (b, 3, out_size, out_size) in [-1, 1].

        ``noise``: list of ``red.num_layers`` maps (b or 1, 1, r, r); None draws fresh maps. The
        same maps go to both networks. ``with_clean=False`` skips the red network (returns None).
        """
        latent = self.latents(z, inject_index, truncation)
        if noise is None:
            noise = self.draw_codes(z.shape[0], device=z.device).noise
        clean = self.red.synthesis(latent, noise) if with_clean else None
        return clean, self.green.synthesis(latent, noise)

    def generate(self, codes, truncation=None, with_clean=True):
        """Images of a ``CoupledCodes`` batch (see ``draw_codes``)."""
        return self(codes.z, codes.noise, codes.inject_index, truncation, with_clean)
