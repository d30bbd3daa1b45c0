"""Skip-Transformer (ST) restorer (paper section 3.3, Fig. 3; docs/design.md#skip-transformer).

Encoder (nine blocks at 512 px): a full-resolution stage of residual blocks, residual stages
down to 64 px, transformer stages at 32-4 px, a fully connected layer to w. Decoder: a
``PureStyleGAN2Generator``'s synthesis network fed w at every layer; skip layers replace its
features at a set of resolutions through the synthesis ``feature_hook``.

The attention patch sizes leave no trace in the weights' shapes, so the network keeps them in a small
persistent buffer, ``attention_patch_sizes`` (p at 4, 8, ... out_size px): a program that rebuilds the
network from its weights alone (spandrel, ComfyUI, chaiNNer) gets the sizes it was trained with. Loading a
state dict that carries other sizes switches the network to them; one without the buffer (saved before it
existed) keeps the network's own.
"""
import logging

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dlst_plugin.archs.face_input import check_face_input
from dlst_plugin.archs.hyperparameters import store_hyperparameters
from dlst_plugin.archs.prior_files import load_prior
from dlst_plugin.archs.skip_transformer_blocks import (
    ATTENTION_MAX_RESOLUTION,
    ResidualConvBlock,
    SkipLayer,
    TransformerBlock,
    conv_act,
    default_patch_size,
    encode_pyramid,
    run_block,
)
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.archs.stylegan2_layers import log2_size, stylegan2_channels
from dlst_plugin.archs.stylegan2_ops import activation_format

MIN_SKIP_RESOLUTION = 8  # the paper's six skip layers at 512 px: 8 ... 256
PATCH_SIZES_KEY = 'attention_patch_sizes'  # the buffer: p at 4, 8, ... out_size px
logger = logging.getLogger(__name__)


def patch_sizes_from_buffer(values, out_size):
    """{resolution: p} of an ``attention_patch_sizes`` buffer (a sequence: p at 4, 8, ... ``out_size``)."""
    resolutions = [2**i for i in range(2, log2_size(out_size) + 1)]
    values = [int(v) for v in values]
    if len(values) != len(resolutions):
        raise ValueError(f'{PATCH_SIZES_KEY} holds {len(values)} sizes; a {out_size} px SkipTransformer has '
                         f'{len(resolutions)} (4 ... {out_size} px)')
    return _patch_sizes(out_size, dict(zip(resolutions, values)))


def patch_size_overrides(sizes):
    """The entries of {resolution: p} that differ from the default p = resolution / 8 (ints)."""
    return {int(r): int(p) for r, p in sorted(sizes.items(), key=lambda item: int(item[0]))
            if int(p) != default_patch_size(int(r))}


def _keep_patch_sizes_of_old_files(module, state_dict, prefix, *args):
    """Load pre-hook: a state dict saved before the buffer existed keeps the network's sizes."""
    state_dict.setdefault(prefix + PATCH_SIZES_KEY, getattr(module, PATCH_SIZES_KEY).clone())


def _adopt_loaded_patch_sizes(module, incompatible_keys):
    """Load post-hook: switch the attention modules to the patch sizes the loaded weights were trained with."""
    loaded = patch_sizes_from_buffer(getattr(module, PATCH_SIZES_KEY).tolist(), module.out_size)
    if loaded != module.patch_sizes:
        logger.info('SkipTransformer: attention patch sizes %s taken from the loaded weights (the network was built '
                    'with %s)', patch_size_overrides(loaded) or 'default', patch_size_overrides(module.patch_sizes)
                    or 'default')
        module.set_patch_sizes(loaded)


def _patch_sizes(out_size, patch_sizes):
    """{resolution: p} for every resolution <= 32 px; ``patch_sizes`` overrides the default."""
    sizes = {res: default_patch_size(res) for res in (2**i for i in range(2, log2_size(out_size) + 1))}
    for res, p in (patch_sizes or {}).items():
        res, p = int(res), int(p)
        if res not in sizes or res % p or p < 1:
            raise ValueError(f'patch_sizes[{res}] = {p}: need a resolution in {sorted(sizes)} that p divides')
        sizes[res] = p
    return sizes


class STEncoder(nn.Module):
    """Image -> ({resolution: feature}, w). Stage 1 keeps the input resolution (``num_first_blocks``
    residual blocks, as GLEAN); each later stage halves it, with attention at <= 32 px."""

    def __init__(self, out_size, channels, num_style_feat, num_first_blocks, attention, patch_sizes,
                 use_checkpoint=False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.first = nn.Sequential(conv_act(3, channels[out_size]),
                                   *[ResidualConvBlock(channels[out_size]) for _ in range(num_first_blocks)])
        self.stages = nn.ModuleList()
        self.resolutions = [out_size]  # of the stages' outputs: static ints, so tracing (export) works
        res = out_size
        while res > 4:
            res //= 2
            use_attention = attention and res <= ATTENTION_MAX_RESOLUTION
            self.stages.append(TransformerBlock(channels[res * 2], channels[res], use_attention, patch_sizes[res]))
            self.resolutions.append(res)
        self.to_w = nn.Linear(channels[4] * 4 * 4, num_style_feat)

    def forward(self, x):
        features, out = encode_pyramid(self.first, self.stages, self.resolutions, x, self.use_checkpoint)
        return features, self.to_w(out.flatten(1))


@ARCH_REGISTRY.register()
@store_hyperparameters
class SkipTransformer(nn.Module):
    """DL-ST's restorer: (b, 3, out_size, out_size) in [-1, 1] -> restored image, same shape.

    Args:
        out_size: image size (512 in the paper).
        num_style_feat, num_mlp, channel_multiplier, narrow, lr_mlp: the StyleGAN2 decoder's
            (channel_multiplier 1 = GFP-GAN's 512 px prior). Encoder and skip widths mirror the
            decoder's per resolution, scaled by ``encoder_narrow``.
        num_first_blocks: residual blocks of the full-resolution stage (4).
        attention: False removes every self-attention module (the paper's Table 4 ablation).
        patch_sizes: {resolution: p} overrides of the default p = resolution / 8.
        skip_resolutions: decoder resolutions that get a skip layer (default: 8 ... out_size / 2,
            the paper's six at 512 px).
        decoder_load_path: pretrained StyleGAN2 checkpoint (any layout ``dlst_plugin.checkpoints.reading``
            reads) loaded into the decoder. fix_decoder: freeze the decoder.
        decoder_channel_order: 'rgb' or 'bgr', the colour order the decoder's prior was trained on ('bgr':
            its ToRGB outputs are swapped on loading); unset = 'rgb', with a warning for an MMagic training
            save (MMagic trains StyleGAN2 on BGR images).
        use_checkpoint: gradient checkpointing of the encoder stages and skip layers in training
            (their activations are recomputed in the backward pass: less memory, same gradients).

    The decoder's mapping network is kept (checkpoints load strictly) but unused and frozen.
    ``LR_FACTORS``: the training model's default learning rate of the decoder group is a tenth of the
    encoder's (the paper's 5e-6 vs 5e-5).
    The decoder noise is random in training mode and the stored maps in eval mode, so
    restoration is deterministic.
    """

    LR_FACTORS = {'decoder': 0.1}
    MEMORY_FORMAT = torch.channels_last  # the encoder and the decoder run channels-last inside

    def __init__(self, out_size=512, num_style_feat=512, num_mlp=8, channel_multiplier=1, narrow=1,
                 encoder_narrow=1, num_first_blocks=4, attention=True, patch_sizes=None,
                 skip_resolutions=None, lr_mlp=0.01, decoder_load_path=None, fix_decoder=False, use_checkpoint=False,
                 decoder_channel_order=None):
        super().__init__()
        log2_size(out_size)
        self.out_size = out_size
        self.attention = attention
        self.decoder = PureStyleGAN2Generator(out_size, num_style_feat, num_mlp, channel_multiplier, lr_mlp=lr_mlp,
                                              narrow=narrow)
        dec_channels = stylegan2_channels(channel_multiplier, narrow)
        enc_channels = {res: max(1, int(c * encoder_narrow)) for res, c in dec_channels.items()}
        patches = _patch_sizes(out_size, patch_sizes)
        self.patch_sizes = patches
        self.register_buffer(PATCH_SIZES_KEY, torch.tensor([patches[r] for r in sorted(patches)], dtype=torch.int64))
        self.register_load_state_dict_pre_hook(_keep_patch_sizes_of_old_files)
        self.register_load_state_dict_post_hook(_adopt_loaded_patch_sizes)
        self.encoder = STEncoder(out_size, enc_channels, num_style_feat, num_first_blocks, attention, patches,
                                 use_checkpoint)
        if skip_resolutions is None:
            skip_resolutions = [r for r in patches if MIN_SKIP_RESOLUTION <= r < out_size]
        self.skip_resolutions = sorted(int(r) for r in skip_resolutions)
        bad = [r for r in self.skip_resolutions if r not in patches]
        if bad:
            raise ValueError(f'skip_resolutions {bad} are not decoder resolutions of a {out_size} px ST '
                             f'(choose from {sorted(patches)})')
        self.skips = nn.ModuleDict({
            str(res): SkipLayer(enc_channels[res], dec_channels[res], attention and res <= ATTENTION_MAX_RESOLUTION,
                                patches[res])
            for res in self.skip_resolutions
        })
        if decoder_load_path:
            self.load_decoder(decoder_load_path, decoder_channel_order)
        self.decoder.style_mlp.requires_grad_(False)
        self.fix_decoder = fix_decoder
        if fix_decoder:
            self.decoder.requires_grad_(False)

    def load_decoder(self, path, channel_order=None):
        """Load a pretrained StyleGAN2 generator into the decoder (BasicSR, rosinality, GFP-GAN clean or
        MMagic layout; a checkpoint that does not fit raises, naming the keys)."""
        layout = load_prior(self.decoder, path, kind='generator', channel_order=channel_order,
                           option='network_g.decoder_channel_order')
        logger.info('ST decoder loaded from %s (%s layout)', path, layout)

    @staticmethod
    def normalise_hyperparameters(values):
        """``patch_sizes`` as its non-default entries with int keys, ``skip_resolutions`` as the sorted list
        built (its default written out)."""
        values = dict(values)
        out_size = values['out_size']
        values['patch_sizes'] = patch_size_overrides(_patch_sizes(out_size, values['patch_sizes']))
        skips = values['skip_resolutions']
        if skips is None:
            skips = [2**i for i in range(2, log2_size(out_size) + 1) if MIN_SKIP_RESOLUTION <= 2**i < out_size]
        values['skip_resolutions'] = sorted(int(r) for r in skips)
        return values

    def set_patch_sizes(self, sizes):
        """Give every attention module the patch size of its resolution ({resolution: p}, all resolutions)."""
        sizes = _patch_sizes(self.out_size, sizes)
        for res, stage in zip(self.encoder.resolutions[1:], self.encoder.stages):
            if stage.body.attention is not None:
                stage.body.attention.patch_size = sizes[res]
        for res, layer in self.skips.items():
            if layer.body.attention is not None:
                layer.body.attention.patch_size = sizes[int(res)]
        self.patch_sizes = sizes
        buffer = getattr(self, PATCH_SIZES_KEY)
        buffer.copy_(torch.tensor([sizes[r] for r in sorted(sizes)], dtype=buffer.dtype))
        if hasattr(self, 'hyperparameters'):
            self.hyperparameters['patch_sizes'] = patch_size_overrides(sizes)

    def param_groups(self):
        """Trainable parameters by part: {'encoder', 'skip', 'decoder'} (separate learning rates)."""
        def trainable(module):
            return [p for p in module.parameters() if p.requires_grad]
        return {'encoder': trainable(self.encoder), 'skip': trainable(self.skips), 'decoder': trainable(self.decoder)}

    def check_input(self, x):
        check_face_input(x, self.out_size, f'SkipTransformer(out_size={self.out_size})')

    @property
    def use_checkpoint(self):
        """Gradient checkpointing in training, of the encoder stages and the skip layers (one switch)."""
        return self.encoder.use_checkpoint

    @use_checkpoint.setter
    def use_checkpoint(self, value):
        self.encoder.use_checkpoint = value

    def forward(self, x):
        self.check_input(x)
        features, w = self.encoder(x.contiguous(memory_format=activation_format(x.device)))
        latent = w[:, None].expand(-1, self.decoder.num_latent, -1)
        noise = None if self.training else self.decoder.fixed_noise()

        def skip_hook(resolution, feature):
            layer = self.skips[str(resolution)] if resolution in self.skip_resolutions else None
            if layer is None:
                return feature
            return run_block(layer, features[resolution], feature, checkpointed=self.encoder.use_checkpoint)

        return self.decoder.synthesis(latent, noise, feature_hook=skip_hook, dtype=x.dtype)
