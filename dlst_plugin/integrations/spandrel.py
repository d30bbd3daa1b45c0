"""Let spandrel load the plugin's restorers, so ComfyUI, chaiNNer, AUTOMATIC1111 / Forge and any other
program that loads models through spandrel can run DL-ST checkpoints.

Call :func:`install` once (a ComfyUI custom node's ``__init__.py`` is a good place); it adds two
architectures to ``spandrel.MAIN_REGISTRY``, and is idempotent::

    import spandrel
    from dlst_plugin.integrations.spandrel import install
    install()
    model = spandrel.ModelLoader().load_from_file('net_g_latest.safetensors')   # or .pth
    restored = model(face)   # (1, 3, H, W) RGB in [0, 1] -> same, the face restored

Detection looks at key names only the plugin's networks have (``encoder.to_w`` + ``decoder.*`` for the
Skip-Transformer, GLEAN's RRDB trunk + ``fusion_*`` + ``bank.*``, or + ``generator.*`` in MMagic's GLEAN
layout), so GFP-GAN, RestoreFormer, CodeFormer and the other architectures spandrel knows are never taken
for ours, nor ours for them. GLEAN checkpoints saved by MMagic (``GLEANStyleGANv2`` in its ``SRGAN``
editor, under ``generator.`` / ``generator_ema.``) are converted to the plugin's layout on loading. spandrel
hands an architecture only the weights (it unwraps ``params_ema`` / ``params`` / ``state_dict`` and drops the
rest, ``meta`` included), so the network's options come from the tensor shapes and the Skip-Transformer's
``attention_patch_sizes`` buffer (:mod:`dlst_plugin.checkpoints.meta`); the built network's
``hyperparameters`` hold them, as spandrel's own architectures do.

The descriptor's ``call_fn`` keeps spandrel's contract (RGB in [0, 1] in and out) and converts to the
[-1, 1] range the networks use and back. Inputs of another size than the network's face size are
resized to it and the output resized back (``scale`` x the input; GLEAN's ``scale`` is out / in size).
Callers should pass aligned faces, as with any face restorer.
"""
from torch.nn import functional as F

from dlst_plugin.errors import CheckpointLayoutError, MissingPackageError

try:
    from spandrel import MAIN_REGISTRY, Architecture, ArchSupport, ImageModelDescriptor, ModelTiling, SizeRequirements
    from spandrel.util import KeyCondition
except ImportError as err:
    raise MissingPackageError(f"dlst_plugin.integrations.spandrel needs spandrel ({err}): install it into the "
                              "environment that runs the model: pip install 'dlst-plugin[spandrel]'") from err

from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2  # noqa: E402
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer  # noqa: E402
from dlst_plugin.checkpoints.glean_mmagic import MMAGIC_SIGNATURE, editor_restorer  # noqa: E402
from dlst_plugin.checkpoints.meta import SIGNATURES  # noqa: E402
from dlst_plugin.checkpoints.reading import listing  # noqa: E402
from dlst_plugin.checkpoints.stylegan2_layouts import EDITOR_PREFIXES  # noqa: E402
from dlst_plugin.loading.shapes import check_shapes, infer_glean, infer_skip_transformer  # noqa: E402

__all__ = ['ARCHITECTURES', 'GLEANStyleGAN2Arch', 'SkipTransformerArch', 'install']

# Measured on CPU (torch 2.14, random weights, against float32 outputs in [0, 1]): 256 px Skip-Transformer
# bfloat16 46.6 dB / float16 55.2 dB, GLEAN 64 -> 256 px 61.9 / 79.4 dB, all finite. float16 was measured with
# CPU kernels only (no GPU here); the StyleGAN2 demodulation is computed in float32, so its 1e-8 epsilon cannot
# underflow in half precision. The plugin's GPU check (tests/test_cuda.py) asserts >= 45 dB for float16 on CUDA.
SUPPORTS_HALF = True
SUPPORTS_BFLOAT16 = True
# spandrel's architectures whose registration ours must come before (detection order): the face restorers,
# whose detection is by a few keys as well
DETECT_BEFORE = ('GFPGAN', 'RestoreFormer', 'CodeFormer')


def to_network_range(image, size):
    """spandrel's (b, 3, h, w) RGB in [0, 1] -> the network's [-1, 1] at ``size`` x ``size``."""
    if tuple(image.shape[-2:]) != (size, size):
        image = F.interpolate(image.float(), size=(size, size), mode='bicubic', align_corners=False,
                              antialias=True).to(image.dtype)
    return image * 2 - 1


def from_network_range(y, height, width):
    """The network's [-1, 1] output -> [0, 1] at ``height`` x ``width`` (spandrel clamps afterwards)."""
    if tuple(y.shape[-2:]) != (height, width):
        y = F.interpolate(y.float(), size=(height, width), mode='bicubic', align_corners=False,
                          antialias=True).to(y.dtype)
    return (y + 1) / 2


def make_call(in_size, scale):
    def call(model, image):
        h, w = image.shape[-2:]
        return from_network_range(model(to_network_range(image, in_size)), h * scale, w * scale)
    return call


def describe(arch, model, state_dict, in_size, out_size):
    scale = out_size // in_size
    tags = [f'{out_size}px'] if scale == 1 else [f'{in_size}px', f'{out_size}px']
    return ImageModelDescriptor(
        model, state_dict, architecture=arch, purpose='FaceSR', tags=tags,
        supports_half=SUPPORTS_HALF, supports_bfloat16=SUPPORTS_BFLOAT16, scale=scale, input_channels=3,
        output_channels=3, size_requirements=SizeRequirements(square=True), tiling=ModelTiling.DISCOURAGED,
        call_fn=make_call(in_size, scale))


class SkipTransformerArch(Architecture[SkipTransformer]):
    """DL-ST's Skip-Transformer (``SkipTransformer`` in BasicSR's ARCH_REGISTRY)."""

    def __init__(self):
        super().__init__(id='SkipTransformer', name='Skip-Transformer (DL-ST)',
                         detect=KeyCondition.has_any(*in_editor('SkipTransformer')))

    def load(self, state_dict):
        state_dict = restorer_state(state_dict, 'SkipTransformer')
        options = infer_skip_transformer(state_dict, 'SkipTransformer weights', 'spandrel passes weights only')
        check_shapes({'type': 'SkipTransformer', **options}, state_dict, 'SkipTransformer weights')
        model = SkipTransformer(**options)
        return describe(self, model, state_dict, options['out_size'], options['out_size'])


def restorer_state(state_dict, arch):
    """The ``arch`` weights spandrel detected, in the plugin's layout: out of an MMagic editor's generator prefix,
    MMagic's GLEAN converted (as the plugin's own loaders read them)."""
    found = editor_restorer(state_dict, (arch, ))
    if found is None:  # detection matched the same keys: only a caller skipping detection gets here
        raise CheckpointLayoutError(f'these weights hold no {arch}; their keys: {listing(state_dict)}')
    return found[0]


def in_editor(arch):
    """The arch's own keys, bare or under an MMagic editor's generator prefix (trained in MMagic's SRGAN)."""
    return [KeyCondition.has_all(*(prefix + key for key in SIGNATURES[arch])) for prefix in EDITOR_PREFIXES]


def glean_detection():
    """The plugin's GLEAN layout, or MMagic's (bare, or inside its editor under any of its prefixes)."""
    mmagic = [KeyCondition.has_all(*(prefix + key for key in MMAGIC_SIGNATURE)) for prefix in EDITOR_PREFIXES]
    return KeyCondition.has_any(*in_editor('GLEANStyleGAN2'), *mmagic)


class GLEANStyleGAN2Arch(Architecture[GLEANStyleGAN2]):
    """GLEAN with a StyleGAN2 latent bank (``GLEANStyleGAN2``, also MMagic's ``GLEANStyleGANv2`` weights):
    restoration, or face SR when in < out size."""

    def __init__(self):
        super().__init__(id='GLEANStyleGAN2', name='GLEAN (StyleGAN2 bank, dlst-plugin)', detect=glean_detection())

    def load(self, state_dict):
        state_dict = restorer_state(state_dict, 'GLEANStyleGAN2')
        options = infer_glean(state_dict, 'GLEANStyleGAN2 weights')
        check_shapes({'type': 'GLEANStyleGAN2', **options}, state_dict, 'GLEANStyleGAN2 weights')
        model = GLEANStyleGAN2(**options)
        return describe(self, model, state_dict, options['in_size'], options['out_size'])


ARCHITECTURES = (SkipTransformerArch, GLEANStyleGAN2Arch)


def install(registry=None):
    """Add the plugin's architectures to ``registry`` (``spandrel.MAIN_REGISTRY`` by default), detected before
    spandrel's face restorers. Idempotent: an id already registered is left as it is. Returns the ids added."""
    registry = MAIN_REGISTRY if registry is None else registry
    supports = [ArchSupport.from_architecture(cls(), before=DETECT_BEFORE) for cls in ARCHITECTURES]
    added = registry.add(*supports, ignore_duplicates=True)
    return [str(support.architecture.id) for support in added]
