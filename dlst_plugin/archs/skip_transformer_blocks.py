"""Building blocks of the Skip-Transformer (paper section 3.3, Figs. 4-6; docs/design.md#skip-transformer).

A transformer block is ``stride-2 conv -> [self-attention + residual] -> residual conv block``;
above ``ATTENTION_MAX_RESOLUTION`` px the attention and its residual are dropped (Fig. 4
caption), which leaves the encoder's residual block. Everything runs in channels-last memory
(the decoder's layout, docs/design.md#toolchain timings).
"""
import torch
from torch import nn
from torch.nn import functional as F

from dlst_plugin.archs.stylegan2_ops import activation_format

ATTENTION_MAX_RESOLUTION = 32
TOKENS_PER_SIDE = 8  # default patch size p = resolution / 8: 64 tokens per image


def default_patch_size(resolution):
    """p = resolution / 8 floored at 1 (docs/design.md#skip-transformer)."""
    return max(1, resolution // TOKENS_PER_SIDE)


def run_block(block, *inputs, checkpointed=False):
    """``block(*inputs)``, through gradient checkpointing when ``checkpointed`` and autograd is recording:
    the block's activations are not kept for the backward pass but recomputed there (less memory,
    about one more forward of the block), with the same gradients."""
    if checkpointed and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint
        return checkpoint(block, *inputs, use_reentrant=False)
    return block(*inputs)


def encode_pyramid(first, stages, resolutions, x, checkpointed=False):
    """The encoders' pass (ST's and GLEAN's): ``first`` at ``resolutions[0]``, then each of ``stages`` at
    the next resolution; returns ({resolution: feature}, the last feature)."""
    out = run_block(first, x, checkpointed=checkpointed)
    features = {resolutions[0]: out}
    for res, stage in zip(resolutions[1:], stages):
        out = run_block(stage, out, checkpointed=checkpointed)
        features[res] = out
    return features, out


def conv_act(in_channels, out_channels, kernel_size=3, stride=1):
    """Conv + leaky ReLU(0.2) (the encoder's and skip layers' activation, as StyleGAN2's)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.LeakyReLU(0.2, inplace=True))


class ResidualConvBlock(nn.Module):
    """``x + conv3x3(lrelu(conv3x3(x)))``: the residual block of encoder stages 1-4 and of the
    skip layers above 32 px, and the feed-forward part of a transformer block."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = conv_act(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class DSConv(nn.Sequential):
    """Depthwise-separable conv (Howard et al. 2017): depthwise 3x3 then pointwise 1x1; makes Q, K, V."""

    def __init__(self, channels):
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Conv2d(channels, channels, 1))


class PatchSelfAttention(nn.Module):
    """Self-attention over patches (paper Eqs. 5-7, Fig. 5).

    Q, K, V come from depthwise-separable convs; patch division (pixel-unshuffle by ``p``:
    (C, H, W) -> (C p^2, H/p, W/p)) and flattening give H W / p^2 tokens of dimension C p^2;
    scaled dot-product attention; patch merge (pixel-shuffle) back to (C, H, W); a 1x1 conv.

    Attention is the standard ``softmax(Q K^T / sqrt(d)) V`` with d the token dimension: the
    paper's Eq. 7 divides the attention output by sqrt(d) after the softmax instead, which only
    rescales V and leaves the softmax unscaled; we take it as a misprint (docs/design.md#skip-transformer).
    """

    def __init__(self, channels, patch_size):
        super().__init__()
        self.patch_size = int(patch_size)
        if self.patch_size < 1:
            raise ValueError(f'patch size must be >= 1, got {patch_size}')
        self.to_q, self.to_k, self.to_v = DSConv(channels), DSConv(channels), DSConv(channels)
        self.proj = nn.Conv2d(channels, channels, 1)

    def _tokens(self, x):
        x = F.pixel_unshuffle(x, self.patch_size) if self.patch_size > 1 else x
        b, d, h, w = x.shape
        return x.permute(0, 2, 3, 1).reshape(b, h * w, d)

    def forward(self, x):
        b, c, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f'patch size {p} does not divide the {h}x{w} feature map')
        out = F.scaled_dot_product_attention(self._tokens(self.to_q(x)), self._tokens(self.to_k(x)),
                                             self._tokens(self.to_v(x)))
        out = out.reshape(b, h // p, w // p, c * p * p).permute(0, 3, 1, 2)
        out = F.pixel_shuffle(out, p) if p > 1 else out
        return self.proj(out.contiguous(memory_format=activation_format(out.device)))


class AttentionResidualBlock(nn.Module):
    """``[x + attention(x)] -> residual conv block``; without attention, a residual block."""

    def __init__(self, channels, attention=True, patch_size=1):
        super().__init__()
        self.attention = PatchSelfAttention(channels, patch_size) if attention else None
        self.feed_forward = ResidualConvBlock(channels)

    def forward(self, x):
        if self.attention is not None:
            x = x + self.attention(x)
        return self.feed_forward(x)


class TransformerBlock(nn.Module):
    """Encoder block 2-8 (Fig. 4): stride-2 conv, then an ``AttentionResidualBlock``."""

    def __init__(self, in_channels, out_channels, attention=True, patch_size=1):
        super().__init__()
        self.down = conv_act(in_channels, out_channels, 3, stride=2)
        self.body = AttentionResidualBlock(out_channels, attention, patch_size)

    def forward(self, x):
        return self.body(self.down(x))


class SkipLayer(nn.Module):
    """Skip layer (paper 3.3.2, Fig. 6): concat(encoder, decoder) -> 1x1 projection to the
    decoder width -> residual block (> 32 px) or transformer block (<= 32 px) -> 1x1 conv back
    to the decoder width.

    The paper gives no widths; the 1x1 projection keeps the block at the decoder width (docs/design.md
    section 5: a block at the concatenated width costs ~4x more). The output conv starts at zero
    and its result is added to the decoder feature, so a pretrained decoder starts unchanged.
    """

    def __init__(self, encoder_channels, decoder_channels, attention=True, patch_size=1):
        super().__init__()
        self.fuse = conv_act(encoder_channels + decoder_channels, decoder_channels, 1)
        self.body = AttentionResidualBlock(decoder_channels, attention, patch_size)
        self.out = nn.Conv2d(decoder_channels, decoder_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, encoder_feature, decoder_feature):
        x = torch.cat([encoder_feature.to(decoder_feature.dtype), decoder_feature], 1)
        return decoder_feature + self.out(self.body(self.fuse(x)))
