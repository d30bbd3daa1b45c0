"""Residual-in-residual dense blocks (ESRGAN, Wang et al. 2018): the trunk of GLEAN's encoder.

Module and parameter names follow the ESRGAN trunk as MMagic's GLEAN stores it (``conv_first``,
``body.<i>.rdb<1-3>.conv<1-5>``, ``conv_body``), so GLEAN checkpoints saved by MMagic load without renaming.
"""
import torch
from torch import nn

from dlst_plugin.archs.skip_transformer_blocks import run_block

RESIDUAL_SCALE = 0.2  # ESRGAN's residual scaling, inside each dense block and around each RRDB
INIT_SCALE = 0.1  # dense-block convs start at a tenth of Kaiming's scale (ESRGAN's stable start)


def scaled_kaiming_(conv, scale):
    nn.init.kaiming_normal_(conv.weight, a=0, mode='fan_in', nonlinearity='relu')
    conv.weight.data.mul_(scale)
    nn.init.zeros_(conv.bias)


class DenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the input and every earlier output (``growth`` channels each); the last
    maps back to ``channels``; ``x + 0.2 * out``."""

    def __init__(self, channels, growth):
        super().__init__()
        for i in range(5):
            conv = nn.Conv2d(channels + i * growth, channels if i == 4 else growth, 3, padding=1)
            scaled_kaiming_(conv, INIT_SCALE)
            self.add_module(f'conv{i + 1}', conv)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        seen = [x]
        for i in range(1, 5):
            seen.append(self.act(getattr(self, f'conv{i}')(torch.cat(seen, 1))))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(seen, 1))


class RRDB(nn.Module):
    """Three dense blocks in a row, with a scaled residual around them."""

    def __init__(self, channels, growth):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (DenseBlock(channels, growth) for _ in range(3))

    def forward(self, x):
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBTrunk(nn.Module):
    """ESRGAN without its up-sampler: ``f = conv_first(x); f + conv_body(RRDBs(f))``, at the input size.

    ``checkpointed``: each RRDB through gradient checkpointing in training (set by the owning network)."""

    def __init__(self, in_channels, channels, num_blocks, growth):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(channels, growth) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.checkpointed = False

    def forward(self, x):
        feat = self.conv_first(x)
        out = feat
        for block in self.body:
            out = run_block(block, out, checkpointed=self.checkpointed)
        return feat + self.conv_body(out)
