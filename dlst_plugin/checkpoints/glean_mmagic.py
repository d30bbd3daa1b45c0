"""GLEAN checkpoints saved by MMagic, read into ``GLEANStyleGAN2``'s layout (docs/mmagic.md#glean).

``GLEANStyleGAN2`` names its encoder, fusion and decoder modules as MMagic's ``GLEANStyleGANv2`` does, so
only the latent bank is renamed: MMagic keeps it under ``generator.`` in its own StyleGANv2 layout, the
plugin under ``bank.`` in BasicSR's (:func:`dlst_plugin.checkpoints.stylegan2_layouts.from_mmagic`; its fixed FIR
kernels are dropped). MMagic saves the trained GLEAN inside its ``SRGAN`` editor: under ``generator.``, or
``generator_ema.`` / ``generator_ema.module.`` when an EMA copy is kept (preferred), in mmengine's
``state_dict`` or at the top level. A bare ``GLEANStyleGANv2.state_dict()`` is read too.
"""
from dlst_plugin.checkpoints.meta import RESTORER_ARCHS, SIGNATURES
from dlst_plugin.checkpoints.reading import strip_module_prefix, sub_state
from dlst_plugin.checkpoints.stylegan2_layouts import EDITOR_PREFIXES, from_mmagic
from dlst_plugin.errors import CheckpointLayoutError

# keys that only a GLEANStyleGANv2 state dict holds: its RRDB trunk and its StyleGANv2 bank
MMAGIC_SIGNATURE = ('encoder.0.0.conv_first.weight', 'encoder.0.1.weight', 'fusion_out.0.weight',
                    'generator.constant_input.input', 'generator.conv1.conv.weight_orig')
BANK_PREFIX = 'generator.'
# the plugin's GLEAN before it followed MMagic's (residual-block encoder, another decoder)
LEGACY_SIGNATURE = ('encoder.to_latent.2.weight', 'encoder.first.0.0.weight', 'decoder.first.0.weight')
LEGACY_MESSAGE = ("was saved by dlst-plugin's former GLEANStyleGAN2 (residual-block encoder, fusion before ToRGB, "
                  "PixelShuffle decoder with activations): GLEANStyleGAN2 now is MMagic's GLEANStyleGANv2 "
                  "(RRDB encoder, MMagic's fusion order and decoder), a different network that these weights do "
                  "not fit. Retrain it, or restore it with the dlst-plugin release that trained it "
                  "(docs/mmagic.md#glean)")


def is_legacy_glean(state):
    return isinstance(state, dict) and all(key in state for key in LEGACY_SIGNATURE)


def check_not_legacy(state, name='checkpoint'):
    """Raise ``CheckpointLayoutError`` saying what changed when ``state`` is the plugin's former GLEAN."""
    if is_legacy_glean(state):
        raise CheckpointLayoutError(f'{name} {LEGACY_MESSAGE}')


def glean_from_mmagic(state):
    """A ``GLEANStyleGANv2`` state dict (no editor prefix) in ``GLEANStyleGAN2``'s layout."""
    bank = from_mmagic(sub_state(state, BANK_PREFIX), 'generator')
    out = {key: value for key, value in state.items() if not key.startswith(BANK_PREFIX)}
    out.update({'bank.' + key: value for key, value in bank['state'].items()})
    return out


def editor_network(state, signature):
    """(prefix, network without it) of the network an MMagic editor saved under one of its generator prefixes (EMA
    first) whose keys include ``signature``; prefix '' when ``state`` itself holds them; else None. This is how
    MMagic saves its own GLEAN, and a network of the plugin it trained (``SRGAN`` with ``type='SkipTransformer'`` /
    ``'GLEANStyleGAN2'``)."""
    for prefix in EDITOR_PREFIXES:
        sub = sub_state(state, prefix) if prefix else state
        if sub and all(key in sub for key in signature):
            return prefix, strip_module_prefix(sub)
    return None


def editor_restorer(state, archs=RESTORER_ARCHS):
    """(network, prefix) of the restorer of the plugin (one of ``archs``) that one state dict holds, bare (prefix
    '') or saved by an MMagic editor under a generator prefix, or of MMagic's own GLEAN (``GLEANStyleGANv2``, bare
    or in its editor; prefix None), converted into ``GLEANStyleGAN2``'s layout. None when it holds none of them.
    The one reader of editor saves: restorer checkpoints (:func:`dlst_plugin.loading.networks.restorer_weights`)
    and spandrel's loaders use it."""
    if not isinstance(state, dict):
        return None
    mmagic = editor_network(state, MMAGIC_SIGNATURE) if 'GLEANStyleGAN2' in archs else None
    if mmagic is not None:
        return glean_from_mmagic(mmagic[1]), None
    for arch in archs:
        found = editor_network(state, SIGNATURES[arch])
        if found is not None:
            return found[1], found[0]
    return None
