"""Architectures of other packages that the plugin's models train: imported when their name is asked for.

An option file may name ``GFPGANv1Clean`` (GFP-GAN's restorer, the paper's Table 1 baseline). GFP-GAN
registers it in BasicSR's ARCH_REGISTRY only when ``gfpgan.archs`` is imported, which no launcher
does; ``compat.patch_arch_registry`` makes the registry import it on the first lookup of that name,
and say which extra to install when the package is missing.

GFP-GAN's own constructor reads ``decoder_load_path`` with a plain ``torch.load`` (it would run code
from a crafted file); :func:`build_restorer` reads that file through the plugin's checkpoint reader
(``weights_only=True``) instead.
"""
import importlib
import logging

# registry name -> (module that registers it, pip extra that installs its package)
EXTERNAL_ARCHS = {
    'GFPGANv1Clean': ('gfpgan.archs.gfpganv1_clean_arch', 'baselines'),
    'StyleGAN2GeneratorClean': ('gfpgan.archs.stylegan2_clean_arch', 'baselines'),
    'ResNetArcFace': ('gfpgan.archs.arcface_arch', 'baselines'),  # GFP-GAN's identity loss network
}
# archs whose ``decoder_load_path`` holds a GFP-GAN clean StyleGAN2 for their ``stylegan_decoder``
CLEAN_DECODER_ARCHS = ('GFPGANv1Clean', )
# network_g keys of those archs that the plugin reads itself (their constructors do not take them)
PLUGIN_READ_KEYS = ('decoder_channel_order', )
logger = logging.getLogger(__name__)


class ExternalArchError(ImportError):
    """An architecture of another package that cannot be imported; the message says what to install."""


def import_external_arch(name):
    """Import the module registering ``name``; False when ``name`` is not an external arch."""
    if name not in EXTERNAL_ARCHS:
        return False
    module, extra = EXTERNAL_ARCHS[name]
    package = module.split('.')[0]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ExternalArchError(f'network type {name} comes from the {package} package, which cannot be imported '
                                f'({err}); install it with: pip install "dlst-plugin[{extra}]"') from None
    return True


def load_clean_decoder(net, path, channel_order=None):
    """Load a StyleGAN2 prior into ``net.stylegan_decoder`` (GFP-GAN's clean StyleGAN2).

    A GFP-GAN clean checkpoint loads as it is; any other layout the plugin reads (BasicSR, e.g. GFP-GAN's
    ``StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth``, rosinality, MMagic) is converted exactly, weight by
    weight, with a log line saying that the clean network resamples bilinearly, so the prior's images
    shift slightly above 4 px (fine-tuning absorbs it). ``channel_order='bgr'`` (``network_g.decoder_channel_order``)
    reads a prior trained on BGR images: its ToRGB outputs are swapped."""
    from dlst_plugin.checkpoints.reading import (
        CheckpointLayoutError,
        check_state,
        convert_network,
        find_network,
        read_checkpoint,
        swap_rgb_bgr,
    )
    from dlst_plugin.checkpoints.stylegan2_layouts import to_gfpgan_clean
    decoder = net.stylegan_decoder
    ckpt = read_checkpoint(path)
    _, state, layout = find_network(ckpt, 'generator', name=str(path))
    option = 'network_g.decoder_channel_order'
    if layout == 'gfpgan_clean' and channel_order == 'bgr':
        state = swap_rgb_bgr(state, 'generator')[0]
    if layout != 'gfpgan_clean':
        state = to_gfpgan_clean(convert_network(ckpt, 'generator', name=str(path), channel_order=channel_order,
                                                option=option).state, lr_mlp=0.01)
        logger.info('%s (%s layout) converted for %s.stylegan_decoder; it resamples bilinearly, not with the '
                    'FIR filter of the prior', path, layout, type(net).__name__)
    expected = {k: v.shape for k, v in decoder.state_dict().items()}
    try:
        check_state(expected, state, f'{path} ({layout} StyleGAN2 for {type(net).__name__}.stylegan_decoder)')
    except CheckpointLayoutError as err:
        raise CheckpointLayoutError(f'{err}\n  is the prior of the same size and channel_multiplier as network_g?') \
            from None
    decoder.load_state_dict(state, strict=True)


def build_restorer(net_opt):
    """``build_network`` for a restorer's ``network_g``, reading foreign pretrained files safely."""
    from basicsr.archs import build_network
    net_opt = dict(net_opt)
    decoder_path = channel_order = None
    if net_opt.get('type') in CLEAN_DECODER_ARCHS:
        decoder_path = net_opt.pop('decoder_load_path', None)
        channel_order = net_opt.pop('decoder_channel_order', None)
    net = build_network(net_opt)
    if decoder_path:
        load_clean_decoder(net, decoder_path, channel_order)
    return net
