"""GLEAN (Chan et al., CVPR 2021) with a ``PureStyleGAN2Generator`` as its generative latent bank.

GLEAN restores or upsamples an image by borrowing the priors of a pretrained StyleGAN2 (the
"latent bank") instead of learning them from the training pairs alone. Three parts:

* an encoder turns the input image into a pyramid of features (input size down to 4 px) and,
  from the 4 px feature, one latent code per StyleGAN2 layer;
* the bank runs its synthesis network on those latents; at every resolution up to the input
  size, the encoder's feature is fused into the bank's feature and into its RGB skip (a 3x3
  conv on the concatenation), through the synthesis network's ``feature_hook``/``rgb_hook``;
* a decoder starts from the encoder's top feature together with the bank's feature of the same
  resolution, then upsamples (PixelShuffle) step by step to the output size, concatenating the
  bank's feature of each resolution, and ends on a small head that also sees the bank's image.

``in_size < out_size`` is GLEAN's large-factor super-resolution (64 -> 1024 on faces);
``in_size == out_size`` is blind restoration (how DL-ST compares against GLEAN at 512 px).
Differences from the published network: the decoder's first layer sees the bank's feature at
the input size (in the original, the encoder's top feature alone enters the decoder, which
would leave an ``in_size == out_size`` GLEAN without any use of the bank at full resolution),
and the decoder head takes the bank's RGB image as three extra channels (in the original the
bank's RGB skip, and so the fused skip, never reaches the output). The encoder's full
resolution stage uses the plugin's residual blocks where the original uses ESRGAN's RRDBs.
"""
import logging

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dlst_plugin.archs.face_input import check_face_input
from dlst_plugin.archs.skip_transformer_blocks import ResidualConvBlock, conv_act, encode_pyramid
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.archs.stylegan2_layers import log2_size, stylegan2_channels
from dlst_plugin.archs.stylegan2_ops import activation_format

logger = logging.getLogger(__name__)


class GLEANEncoder(nn.Module):
    """Image -> ({resolution: feature} for in_size ... 4, per-layer latents (b, num_latent, c)).

    A conv and ``num_first_blocks`` residual blocks at the input size; one stage per halving
    (stride-2 conv + conv); at 4 px a conv, then a linear layer to all the bank's latents.
    """

    def __init__(self, in_size, channels, num_latent, num_style_feat, num_first_blocks, use_checkpoint=False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.num_latent, self.num_style_feat = num_latent, num_style_feat
        self.first = nn.Sequential(conv_act(3, channels[in_size]),
                                   *[ResidualConvBlock(channels[in_size]) for _ in range(num_first_blocks)])
        self.stages = nn.ModuleList()
        self.resolutions = [in_size]  # of the stages' outputs: static ints, so tracing works
        res = in_size
        while res > 4:
            res //= 2
            self.stages.append(nn.Sequential(conv_act(channels[res * 2], channels[res], 3, stride=2),
                                             conv_act(channels[res], channels[res])))
            self.resolutions.append(res)
        self.to_latent = nn.Sequential(conv_act(channels[4], channels[4]), nn.Flatten(),
                                       nn.Linear(16 * channels[4], num_latent * num_style_feat))

    def forward(self, x):
        features, out = encode_pyramid(self.first, self.stages, self.resolutions, x, self.use_checkpoint)
        return features, self.to_latent(out).unflatten(1, (self.num_latent, self.num_style_feat))


class GLEANDecoder(nn.Module):
    """(encoder feature at in_size, bank features in_size ... out_size, bank image) -> image.

    Widths follow the bank's: ``bank_channels[r]`` at every resolution r, including the head's
    hidden layer (``bank_channels[out_size]``), so a narrow bank makes a narrow decoder.
    """

    def __init__(self, in_size, out_size, encoder_channels, bank_channels):
        super().__init__()
        self.resolutions = [in_size * 2**i for i in range(log2_size(out_size) - log2_size(in_size) + 1)]
        self.first = conv_act(encoder_channels[in_size] + bank_channels[in_size], bank_channels[in_size])
        self.ups, self.merges = nn.ModuleList(), nn.ModuleList()
        for res in self.resolutions[1:]:
            self.ups.append(nn.Sequential(nn.Conv2d(bank_channels[res // 2], 4 * bank_channels[res], 3, padding=1),
                                          nn.PixelShuffle(2), nn.LeakyReLU(0.2, inplace=True)))
            self.merges.append(conv_act(2 * bank_channels[res], bank_channels[res]))
        width = bank_channels[out_size]
        self.head = nn.Sequential(conv_act(width + 3, width), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, encoder_feature, bank_features, bank_image):
        out = self.first(torch.cat([encoder_feature.to(bank_image.dtype), bank_features[self.resolutions[0]]], 1))
        for res, up, merge in zip(self.resolutions[1:], self.ups, self.merges):
            out = merge(torch.cat([up(out), bank_features[res]], 1))
        return self.head(torch.cat([out, bank_image.to(out.dtype)], 1))


@ARCH_REGISTRY.register()
class GLEANStyleGAN2(nn.Module):
    """GLEAN: (b, 3, in_size, in_size) in [-1, 1] -> (b, 3, out_size, out_size).

    Args:
        in_size, out_size: powers of two >= 4 with ``in_size <= out_size`` (equal: restoration;
            smaller input: super-resolution by ``out_size / in_size``).
        num_style_feat, num_mlp, channel_multiplier, narrow, lr_mlp: the StyleGAN2 bank's
            (``out_size`` px). Encoder widths are the bank's per resolution scaled by
            ``encoder_narrow``; decoder widths are the bank's.
        num_first_blocks: residual blocks of the encoder's input-size stage.
        bank_load_path: pretrained StyleGAN2 generator checkpoint (any layout
            ``dlst_plugin.checkpoints`` reads; ``bank_layout`` forces one) loaded into the bank.
        fix_bank: freeze the bank (GLEAN's default).
        use_checkpoint: gradient checkpointing of the encoder stages in training (less memory, same
            gradients).

    The bank's mapping network is kept (checkpoints load strictly) but never used (the encoder
    gives the latents) and always frozen. The bank's noise is random in training mode and its
    stored maps in eval mode, so restoration is deterministic.
    """

    LR_FACTORS = {'bank': 0.1}  # default learning-rate factor of a bank that is fine-tuned
    MEMORY_FORMAT = torch.channels_last  # encoder and bank run channels-last inside

    def __init__(self, in_size=512, out_size=512, num_style_feat=512, num_mlp=8, channel_multiplier=2, narrow=1,
                 encoder_narrow=1, num_first_blocks=1, lr_mlp=0.01, bank_load_path=None, bank_layout='auto',
                 fix_bank=True, use_checkpoint=False):
        super().__init__()
        log2_size(in_size, 'in_size')
        log2_size(out_size, 'out_size')
        if in_size > out_size:
            raise ValueError(f'in_size ({in_size}) must not exceed out_size ({out_size})')
        self.in_size, self.out_size = in_size, out_size
        self.bank = PureStyleGAN2Generator(out_size, num_style_feat, num_mlp, channel_multiplier, lr_mlp=lr_mlp,
                                           narrow=narrow)
        bank_channels = stylegan2_channels(channel_multiplier, narrow)
        enc_channels = {res: max(1, int(c * encoder_narrow)) for res, c in bank_channels.items()}
        self.encoder = GLEANEncoder(in_size, enc_channels, self.bank.num_latent, num_style_feat, num_first_blocks,
                                    use_checkpoint)
        self.fusion_resolutions = [r for r in self.encoder.resolutions[::-1] if r < out_size]  # 4 ... in_size
        self.fuse_feat = nn.ModuleDict({
            str(r): nn.Conv2d(enc_channels[r] + bank_channels[r], bank_channels[r], 3, padding=1)
            for r in self.fusion_resolutions
        })
        self.fuse_rgb = nn.ModuleDict(
            {str(r): nn.Conv2d(enc_channels[r] + 3, 3, 3, padding=1) for r in self.fusion_resolutions})
        self.decoder = GLEANDecoder(in_size, out_size, enc_channels, bank_channels)
        if bank_load_path:
            self.load_bank(bank_load_path, bank_layout)
        self.bank.style_mlp.requires_grad_(False)
        self.fix_bank = fix_bank
        if fix_bank:
            self.bank.requires_grad_(False)

    def load_bank(self, path, layout='auto'):
        """Load a pretrained StyleGAN2 generator into the bank (a checkpoint that does not fit
        raises ``CheckpointLayoutError``, naming the keys)."""
        from dlst_plugin.checkpoints import load_into
        detected = load_into(self.bank, path, kind='generator', layout=layout)
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

    def forward(self, x):
        self.check_input(x)
        features, latent = self.encoder(x.contiguous(memory_format=activation_format(x.device)))
        noise = None if self.training else self.bank.fixed_noise()
        bank_features = {}

        def feature_hook(resolution, feature):
            if resolution in self.fusion_resolutions:
                fused = torch.cat([features[resolution].to(feature.dtype), feature], 1)
                feature = self.fuse_feat[str(resolution)](fused)
            if resolution >= self.in_size:
                bank_features[resolution] = feature
            return feature

        def rgb_hook(resolution, skip):
            if resolution not in self.fusion_resolutions:
                return skip
            return self.fuse_rgb[str(resolution)](torch.cat([skip, features[resolution].to(skip.dtype)], 1))

        image = self.bank.synthesis(latent, noise, feature_hook=feature_hook, dtype=x.dtype, rgb_hook=rgb_hook)
        return self.decoder(features[self.in_size], bank_features, image)
