"""Pretrained StyleGAN2 priors into networks: the decoder of the Skip-Transformer, GLEAN's bank, the degrader's
red and green networks, discriminators, GFP-GAN's clean decoder. Any layout the plugin reads
(:mod:`dlst_plugin.checkpoints.stylegan2_layouts`), every shape checked before anything is loaded.

Installed as the archs' reader (:mod:`dlst_plugin.archs.prior_files`) when the package is imported.
"""
import logging

from dlst_plugin.archs import prior_files
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.checkpoints.reading import read_checkpoint
from dlst_plugin.checkpoints.stylegan2_layouts import (
    check_channel_order,
    convert_found,
    find_network,
    load_stylegan2_state,
    swap_rgb_bgr,
    to_gfpgan_clean,
)
from dlst_plugin.errors import CheckpointLayoutError
from dlst_plugin.loading.shapes import check_state

logger = logging.getLogger(__name__)
CLEAN_DECODER_OPTION = 'network_g.decoder_channel_order'  # the setting that gives load_clean_decoder its order


def load_into(module, path, kind=None, layout='auto', strict=True, channel_order=None, option='channel_order'):
    """Load a checkpoint of any known layout into a ``PureStyleGAN2Generator``/``Discriminator`` (or a module
    with the same parameter names); return the detected layout.

    ``kind`` defaults to what ``module`` is. Nothing is loaded when a key does not fit. ``channel_order``: 'rgb',
    'bgr' (a prior trained on BGR images: swapped to RGB) or None (``option`` is the setting a warning names).
    """
    if kind is None:
        kind = 'discriminator' if isinstance(module, PureStyleGAN2Discriminator) else 'generator'
    mlp = getattr(module, 'style_mlp', None)
    lr_mlp = mlp[1].lr_mul if mlp is not None and len(mlp) > 1 else 0.01
    state, detected = load_stylegan2_state(path, kind, layout, lr_mlp, channel_order, option)
    expected = {k: v.shape for k, v in module.state_dict().items()}
    check_state(expected, state, f'{path} ({detected} {kind})', strict)
    module.load_state_dict(state, strict=strict)
    return detected


def load_clean_decoder(net, path, channel_order=None):
    """Load a StyleGAN2 prior into ``net.stylegan_decoder`` (GFP-GAN's clean StyleGAN2).

    A GFP-GAN clean checkpoint loads as it is; any other layout the plugin reads (BasicSR, e.g. GFP-GAN's
    ``StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth``, rosinality, MMagic) is converted exactly, weight by
    weight, with a log line saying that the clean network resamples bilinearly, so the prior's images
    shift slightly above 4 px (fine-tuning absorbs it). ``channel_order='bgr'`` (``network_g.decoder_channel_order``)
    reads a prior trained on BGR images: its ToRGB outputs are swapped."""
    decoder = net.stylegan_decoder
    check_channel_order(channel_order, CLEAN_DECODER_OPTION)  # a misspelt order is refused, never read as RGB
    ckpt = read_checkpoint(path, 'network_g.decoder_load_path')
    found = find_network(ckpt, 'generator', name=str(path))
    state, layout = found[1], found[2]
    if layout == 'gfpgan_clean':  # loads as it is: no round trip through BasicSR's layout
        state = swap_rgb_bgr(state, 'generator')[0] if channel_order == 'bgr' else state
    else:
        state = to_gfpgan_clean(convert_found(ckpt, found, 'generator', name=str(path), channel_order=channel_order,
                                              option=CLEAN_DECODER_OPTION).state, lr_mlp=0.01)
        logger.info('%s (%s layout) converted for %s.stylegan_decoder; it resamples bilinearly, not with the '
                    'FIR filter of the prior', path, layout, type(net).__name__)
    expected = {k: v.shape for k, v in decoder.state_dict().items()}
    try:
        check_state(expected, state, f'{path} ({layout} StyleGAN2 for {type(net).__name__}.stylegan_decoder)')
    except CheckpointLayoutError as err:
        raise CheckpointLayoutError(f'{err}\n  is the prior of the same size and channel_multiplier as network_g?') \
            from None
    decoder.load_state_dict(state, strict=True)


prior_files.install_reader(load_into)
