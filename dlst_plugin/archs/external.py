"""Architectures of other packages that the plugin's models train: imported when their name is asked for.

An option file may name ``GFPGANv1Clean`` (GFP-GAN's restorer, the paper's Table 1 baseline). GFP-GAN
registers it in BasicSR's ARCH_REGISTRY only when ``gfpgan.archs`` is imported, which no launcher
does; ``compat.patch_arch_registry`` makes the registry import it on the first lookup of that name,
and say which extra to install when the package is missing.

GFP-GAN's own constructor reads ``decoder_load_path`` with a plain ``torch.load`` (it would run code
from a crafted file); :func:`dlst_plugin.loading.networks.build_restorer` reads that file through the plugin's
checkpoint reader (``weights_only=True``) instead.
"""
import importlib

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
