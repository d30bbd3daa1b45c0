"""GLEAN (Chan et al., CVPR 2021) as MMagic's ``GLEANStyleGANv2`` builds it, on a ``PureStyleGAN2Generator``
latent bank (docs/mmagic.md#glean).

Three parts, with MMagic's module names, so an MMagic GLEAN checkpoint loads with only its bank renamed
(:mod:`dlst_plugin.checkpoints.glean_mmagic`):

* ``encoder``: an ESRGAN trunk of ``num_rrdbs`` RRDBs at the input size and a conv to the bank's width
  (block 0); one block per halving (stride-2 conv + conv) down to 4 px; at 4 px a conv and a linear layer
  to one latent code per bank layer (the last block);
* the bank (``bank``, frozen) runs its style convs on those latents with its stored noise maps; at every
  resolution from 4 px to the input size, the bank's feature is concatenated with the encoder's feature
  of that size and fused back to the bank's width by a 3x3 conv (``fusion_out``) before the next
  up-sampling conv;
* ``decoder``: from the encoder's input-size feature, PixelShuffle x2 steps (conv + shuffle, no
  activation), each step's output concatenated with the bank's feature of that size; a head of
  conv -> 64 -> leaky ReLU -> conv -> 3 at the output size.

Differences from MMagic's ``GLEANStyleGANv2`` (the output is otherwise the same for the same weights):

* ``in_size == out_size`` (blind restoration, how DL-ST's Table 1 trains GLEAN at 512 px) is accepted;
  MMagic refuses it, because its bank would then not reach the output at all. Here the bank is fused
  from 4 px to ``in_size / 2`` and its ``out_size`` feature is concatenated with the encoder's
  ``in_size`` feature as the head's input (the head's input width doubles). For ``in_size < out_size``
  the network is MMagic's.
* MMagic also runs the bank's RGB branch (ToRGB layers and a ``fusion_skip`` conv per fused resolution),
  whose image never reaches the output. It is not computed here; ``fusion_skip`` is kept (frozen, as it
  gets no gradient in MMagic either) so checkpoints load in both directions. The bank's ToRGB layers and
  mapping network are frozen for the same reason.
* Inputs are RGB in [-1, 1] (MMagic's GLEAN configs: RGB, mean = std = 127.5); ``img_channels`` is 3.
* ``fix_bank=False`` (fine-tuning the bank) and gradient checkpointing are the plugin's additions.
"""
import logging

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from dlst_plugin.archs.face_input import check_face_input
from dlst_plugin.archs.hyperparameters import store_hyperparameters
from dlst_plugin.archs.prior_files import load_prior
from dlst_plugin.archs.rrdb_blocks import RRDBTrunk
from dlst_plugin.archs.skip_transformer_blocks import run_block
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.archs.stylegan2_layers import log2_size, stylegan2_channels
from dlst_plugin.archs.stylegan2_ops import activation_format

HEAD_CHANNELS = 64  # MMagic's head: conv -> 64 -> leaky ReLU -> conv -> 3
# options of the plugin's GLEAN before it followed MMagic's (residual-block encoder): what replaced them
REMOVED_OPTIONS = {
    'num_first_blocks': 'the encoder now starts with num_rrdbs RRDBs of rrdb_channels (MMagic: 23 x 64)',
    'encoder_narrow': "the encoder's widths are the bank's (MMagic's GLEAN)",
}
logger = logging.getLogger(__name__)


def _conv_act(in_channels, out_channels, stride=1):
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True)]


class PixelShuffleUp(nn.Module):
    """``pixel_shuffle(conv3x3(x), 2)``, no activation (MMagic's ``PixelShufflePack``: ``upsample_conv``)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * 4, 3, padding=1)
        nn.init.kaiming_normal_(self.upsample_conv.weight, nonlinearity='relu')
        nn.init.zeros_(self.upsample_conv.bias)

    def forward(self, x):
        return F.pixel_shuffle(self.upsample_conv(x), 2)


def _warn_removed(given):
    for key, value in given.items():
        if value is None:
            continue
        if key == 'encoder_narrow' and value != 1:
            raise ValueError(f'GLEANStyleGAN2: encoder_narrow={value} is no longer supported: {REMOVED_OPTIONS[key]}; '
                             'remove encoder_narrow from network_g (docs/mmagic.md#glean)')
        logger.warning('GLEANStyleGAN2: %s=%s is ignored since GLEAN follows MMagic\'s GLEANStyleGANv2: %s. Remove it '
                       'from network_g; checkpoints of the former network do not load (docs/mmagic.md#glean)',
                       key, value, REMOVED_OPTIONS[key])


@ARCH_REGISTRY.register()
@store_hyperparameters
class GLEANStyleGAN2(nn.Module):
    """GLEAN: (b, 3, in_size, in_size) RGB in [-1, 1] -> (b, 3, out_size, out_size).

    Args:
        in_size, out_size: powers of two, ``4 <= in_size <= out_size``, ``out_size >= 8`` (equal: restoration;
            smaller input: super-resolution by ``out_size / in_size``, MMagic's case).
        num_style_feat, num_mlp, channel_multiplier, narrow, lr_mlp: the StyleGAN2 bank's (``out_size`` px;
            MMagic: ``style_channels``, ``num_mlps``). Encoder, fusion and decoder widths are the bank's.
        rrdb_channels, num_rrdbs, rrdb_growth_channels: the encoder's RRDB trunk (MMagic: 64, 23, 32).
        bank_load_path: pretrained StyleGAN2 generator checkpoint (any layout ``dlst_plugin.checkpoints.reading``
            reads; ``bank_layout`` forces one) loaded into the bank. ``bank_channel_order``: 'rgb' or 'bgr'
            (a prior trained on BGR images, as MMagic's StyleGAN2 pipeline trains them: its ToRGB outputs are
            swapped on loading); unset = 'rgb', with a warning for an MMagic training save.
        fix_bank: freeze the bank (GLEAN's; False fine-tunes it).
        use_checkpoint: gradient checkpointing of the RRDBs and encoder blocks in training.
        num_first_blocks, encoder_narrow: options of the plugin's former GLEAN, ignored with a warning.

    The bank always uses its stored noise maps, in training too (MMagic's), so the output is deterministic.
    """

    LR_FACTORS = {'bank': 0.1}  # default learning-rate factor of a bank that is fine-tuned
    MEMORY_FORMAT = torch.channels_last  # encoder and bank run channels-last inside

    def __init__(self, in_size=512, out_size=512, num_style_feat=512, num_mlp=8, channel_multiplier=2, narrow=1,
                 lr_mlp=0.01, rrdb_channels=64, num_rrdbs=23, rrdb_growth_channels=32, bank_load_path=None,
                 bank_layout='auto', bank_channel_order=None, fix_bank=True, use_checkpoint=False,
                 num_first_blocks=None, encoder_narrow=None):
        super().__init__()
        log2_size(in_size, 'in_size')
        log2_size(out_size, 'out_size')
        if in_size > out_size or out_size < 8:
            raise ValueError(f'GLEANStyleGAN2 needs in_size <= out_size and out_size >= 8; got in_size={in_size}, '
                             f'out_size={out_size} (in_size must not exceed out_size)')
        _warn_removed({'num_first_blocks': num_first_blocks, 'encoder_narrow': encoder_narrow})
        self.in_size, self.out_size, self.num_style_feat = in_size, out_size, num_style_feat
        self.bank = PureStyleGAN2Generator(out_size, num_style_feat, num_mlp, channel_multiplier, lr_mlp=lr_mlp,
                                           narrow=narrow)
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.encoder_resolutions = [in_size >> i for i in range(log2_size(in_size) - 1)]  # in_size ... 4
        self.fusion_resolutions = [r for r in self.encoder_resolutions[::-1] if r < out_size]  # 4 ... in_size
        self.decoder_resolutions = [in_size << i for i in range(log2_size(out_size) - log2_size(in_size) + 1)]
        self.bank_feature_resolutions = [r for r in self.decoder_resolutions if r > self.fusion_resolutions[-1]]
        self.encoder = self._build_encoder(channels, rrdb_channels, num_rrdbs, rrdb_growth_channels)
        self.fusion_out = nn.ModuleList([nn.Conv2d(2 * channels[r], channels[r], 3, padding=1)
                                         for r in self.fusion_resolutions])
        self.fusion_skip = nn.ModuleList([nn.Conv2d(channels[r] + 3, 3, 3, padding=1)
                                          for r in self.fusion_resolutions])
        self.decoder = self._build_decoder(channels)
        self.use_checkpoint = use_checkpoint
        if bank_load_path:
            self.load_bank(bank_load_path, bank_layout, bank_channel_order)
        for unused in (self.bank.style_mlp, self.bank.to_rgb1, self.bank.to_rgbs, self.fusion_skip):
            unused.requires_grad_(False)  # never reach the output (nor do they in MMagic)
        self.fix_bank = fix_bank
        if fix_bank:
            self.bank.requires_grad_(False)

    def _build_encoder(self, channels, rrdb_channels, num_rrdbs, growth):
        in_size = self.in_size
        blocks = [nn.Sequential(RRDBTrunk(3, rrdb_channels, num_rrdbs, growth),
                                *_conv_act(rrdb_channels, channels[in_size]))]
        for res in self.encoder_resolutions:
            if res > 4:
                blocks.append(nn.Sequential(*_conv_act(channels[res], channels[res // 2], stride=2),
                                            *_conv_act(channels[res // 2], channels[res // 2])))
            else:
                blocks.append(nn.Sequential(*_conv_act(channels[4], channels[4]), nn.Flatten(),
                                            nn.Linear(16 * channels[4], self.bank.num_latent * self.num_style_feat)))
        return nn.ModuleList(blocks)

    def _build_decoder(self, channels):
        blocks = []
        for res in self.decoder_resolutions:
            width = channels[res] * (2 if res in self.bank_feature_resolutions else 1)
            if res < self.out_size:
                blocks.append(PixelShuffleUp(width, channels[res * 2]))
            else:
                blocks.append(nn.Sequential(nn.Conv2d(width, HEAD_CHANNELS, 3, padding=1),
                                            nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(HEAD_CHANNELS, 3, 3, padding=1)))
        return nn.ModuleList(blocks)

    @staticmethod
    def normalise_hyperparameters(values):
        return {k: v for k, v in values.items() if k not in REMOVED_OPTIONS}

    @property
    def use_checkpoint(self):
        return self.encoder[0][0].checkpointed

    @use_checkpoint.setter
    def use_checkpoint(self, value):
        self.encoder[0][0].checkpointed = bool(value)

    def load_bank(self, path, layout='auto', channel_order=None):
        """Load a pretrained StyleGAN2 generator into the bank (a checkpoint that does not fit raises
        ``CheckpointLayoutError``, naming the keys)."""
        detected = load_prior(self.bank, path, kind='generator', layout=layout, channel_order=channel_order,
                             option='network_g.bank_channel_order')
        logger.info('GLEAN latent bank loaded from %s (%s layout)', path, detected)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self):
        """Trainable parameters by part: {'encoder': encoder, fusion and decoder; 'bank': the bank}."""
        groups = {'encoder': [], 'bank': []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                groups['bank' if name.startswith('bank.') else 'encoder'].append(p)
        return groups

    def check_input(self, x):
        check_face_input(x, self.in_size, f'GLEANStyleGAN2(in_size={self.in_size})')

    def encode(self, x):
        """({resolution: encoder feature} for in_size ... 4, per-layer latents (b, num_latent, num_style_feat))."""
        features, out = {}, x
        for i, block in enumerate(self.encoder):
            out = run_block(block, out, checkpointed=self.use_checkpoint and i > 0)
            if i < len(self.encoder_resolutions):
                features[self.encoder_resolutions[i]] = out
        return features, out.view(x.shape[0], self.bank.num_latent, self.num_style_feat)

    def run_bank(self, features, latent, dtype):
        """The bank's style convs with the encoder fused in; {resolution: bank feature} the decoder takes."""
        bank, noise = self.bank, self.bank.fixed_noise()
        out = bank.constant_input(latent.shape[0]).to(dtype=dtype, memory_format=activation_format(latent.device))
        out = bank.style_conv1(out, latent[:, 0], noise=noise[0])
        taken, res, index = {}, 4, 1
        for up_conv, conv, noise1, noise2 in zip(bank.style_convs[::2], bank.style_convs[1::2], noise[1::2],
                                                  noise[2::2]):
            if res in self.fusion_resolutions:
                fuse = self.fusion_out[self.fusion_resolutions.index(res)]
                out = fuse(torch.cat([out, features[res].to(out.dtype)], 1))
            out = up_conv(out, latent[:, index], noise=noise1)
            out = conv(out, latent[:, index + 1], noise=noise2)
            res, index = res * 2, index + 2
            if res in self.bank_feature_resolutions:
                taken[res] = out
        return taken

    def forward(self, x):
        self.check_input(x)
        features, latent = self.encode(x.contiguous(memory_format=activation_format(x.device)))
        bank_features = self.run_bank(features, latent, x.dtype)
        out = features[self.in_size].to(x.dtype)
        for res, block in zip(self.decoder_resolutions, self.decoder):
            if res in bank_features:
                out = torch.cat([out, bank_features[res]], 1)
            out = block(out)
        return out

