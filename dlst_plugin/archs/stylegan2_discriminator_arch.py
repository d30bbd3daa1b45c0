"""Pure-PyTorch StyleGAN2 discriminator (BasicSR layout) with FreezeD (Mo et al. 2020)."""
import logging
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dlst_plugin.archs.hyperparameters import store_hyperparameters
from dlst_plugin.archs.stylegan2_layers import (
    RESAMPLE_KERNEL,
    ConvLayer,
    EqualLinear,
    ResBlock,
    log2_size,
    stylegan2_channels,
)

logger = logging.getLogger(__name__)
_warned_batches = set()


def stddev_group_size(batch, group):
    """Samples per minibatch-stddev group for a batch of ``batch`` (StyleGAN2: ``min(batch, group)``).

    BasicSR and StyleGAN2 fail when the batch is not a multiple of the group (a last partial batch,
    a batch of 6 with groups of 4); here the largest divisor of the batch not above ``group`` is used
    instead, with a one-time warning. Groups of one give a constant statistic (the feature carries
    no information), which the warning says."""
    size = min(batch, group)
    if batch % size == 0:
        return size
    size = max(d for d in range(1, size + 1) if batch % d == 0)
    if batch not in _warned_batches:
        _warned_batches.add(batch)
        logger.warning('discriminator: a batch of %d is not a multiple of stddev_group %d; its minibatch-stddev '
                       'uses groups of %d%s', batch, group, size,
                       ' (a constant feature: make the batch a multiple of the group)' if size == 1 else '')
    return size


@ARCH_REGISTRY.register()
@store_hyperparameters
class PureStyleGAN2Discriminator(nn.Module):
    """StyleGAN2 discriminator; checkpoint-compatible with BasicSR's ``StyleGAN2Discriminator``.

    Args: as BasicSR's (out_size, channel_multiplier, resample_kernel, stddev_group, narrow),
    plus ``num_frozen_blocks``: the first N blocks of ``conv_body`` (block 0 is the 1x1
    from-RGB conv, then one ResBlock per resolution) have ``requires_grad=False`` and are
    left out of ``trainable_parameters()``, so no optimizer ever updates them (FreezeD).
    """

    def __init__(self, out_size, channel_multiplier=2, resample_kernel=RESAMPLE_KERNEL, stddev_group=4, narrow=1,
                 num_frozen_blocks=0):
        super().__init__()
        channels = stylegan2_channels(channel_multiplier, narrow)
        log_size = log2_size(out_size)
        conv_body = [ConvLayer(3, channels[out_size], 1)]
        in_channels = channels[out_size]
        for i in range(log_size, 2, -1):
            conv_body.append(ResBlock(in_channels, channels[2**(i - 1)], resample_kernel))
            in_channels = channels[2**(i - 1)]
        self.conv_body = nn.Sequential(*conv_body)
        self.final_conv = ConvLayer(in_channels + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation='fused_lrelu'),
            EqualLinear(channels[4], 1),
        )
        self.stddev_group = stddev_group
        self.stddev_feat = 1
        self.out_size = out_size
        self.freeze_blocks(num_frozen_blocks)

    @staticmethod
    def blocks_above(out_size, resolution=32):
        """How many leading blocks work above ``resolution`` px: the default of docs/design.md#degradation-learning
        FreezeD depth (the from-RGB conv and every ResBlock whose input is larger)."""
        return 1 + max(0, int(math.log2(out_size)) - int(math.log2(resolution)))

    def freeze_blocks(self, num):
        if not 0 <= num <= len(self.conv_body):
            raise ValueError(f'num_frozen_blocks must be in [0, {len(self.conv_body)}], got {num}')
        self.num_frozen_blocks = num
        for idx, block in enumerate(self.conv_body):
            for p in block.parameters():
                p.requires_grad_(idx >= num)

    def frozen_parameters(self):
        return [p for block in self.conv_body[:self.num_frozen_blocks] for p in block.parameters()]

    def trainable_parameters(self):
        frozen = {id(p) for p in self.frozen_parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]

    def forward(self, x):
        if x.shape[-2:] != (self.out_size, self.out_size):
            raise ValueError(f'discriminator expects {self.out_size}x{self.out_size} images, got '
                             f'{tuple(x.shape[-2:])}')
        out = self.conv_body(x)
        b, c, h, w = out.shape
        group = stddev_group_size(b, self.stddev_group)
        # in float32 (any memory format): under float16 autocast the 1e-8 would vanish and sqrt's
        # gradient at a zero variance would turn R1's double backward into NaN
        stddev = out.float().reshape(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2).repeat(group, 1, h, w).to(out.dtype)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.reshape(b, -1))
