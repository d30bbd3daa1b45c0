"""GLEAN checkpoints saved by MMagic, read into ``GLEANStyleGAN2``'s layout (docs/mmagic.md#glean).

``GLEANStyleGAN2`` names its encoder, fusion and decoder modules as MMagic's ``GLEANStyleGANv2`` does, so
only the latent bank is renamed: MMagic keeps it under ``generator.`` in its own StyleGANv2 layout, the
plugin under ``bank.`` in BasicSR's (:func:`dlst_plugin.checkpoints.stylegan2_layouts.from_mmagic`; its fixed FIR
kernels are dropped). MMagic saves the trained GLEAN inside its ``SRGAN`` editor: under ``generator.``, or
``generator_ema.`` / ``generator_ema.module.`` when an EMA copy is kept (preferred), in mmengine's
``state_dict`` or at the top level. A bare ``GLEANStyleGANv2.state_dict()`` is read too.
"""
from dlst_plugin.checkpoints.reading import strip_module_prefix, sub_state
from dlst_plugin.checkpoints.stylegan2_layouts import from_mmagic
from dlst_plugin.errors import CheckpointLayoutError

# keys that only a GLEANStyleGANv2 state dict holds: its RRDB trunk and its StyleGANv2 bank
MMAGIC_SIGNATURE = ('encoder.0.0.conv_first.weight', 'encoder.0.1.weight', 'fusion_out.0.weight',
                    'generator.constant_input.input', 'generator.conv1.conv.weight_orig')
CONTAINERS = ('state_dict', 'params_ema', 'params', '')
EDITOR_PREFIXES = ('generator_ema.module.', 'generator_ema.', 'generator.module.', 'generator.', '')
BANK_PREFIX = 'generator.'
# the plugin's GLEAN before it followed MMagic's (residual-block encoder, another decoder)
LEGACY_SIGNATURE = ('encoder.to_latent.2.weight', 'encoder.first.0.0.weight', 'decoder.first.0.weight')
LEGACY_MESSAGE = ("was saved by dlst-plugin's former GLEANStyleGAN2 (residual-block encoder, fusion before ToRGB, "
                  "PixelShuffle decoder with activations): GLEANStyleGAN2 now is MMagic's GLEANStyleGANv2 "
                  "(RRDB encoder, MMagic's fusion order and decoder), a different network that these weights do "
                  "not fit. Retrain it, or restore it with the dlst-plugin release that trained it "
                  "(docs/mmagic.md#glean)")


def is_mmagic_glean(state):
    return isinstance(state, dict) and all(key in state for key in MMAGIC_SIGNATURE)


def is_legacy_glean(state):
    return isinstance(state, dict) and all(key in state for key in LEGACY_SIGNATURE)


def check_not_legacy(state, name='checkpoint'):
    """Raise ``CheckpointLayoutError`` saying what changed when ``state`` is the plugin's former GLEAN."""
    if is_legacy_glean(state):
        raise CheckpointLayoutError(f'{name} {LEGACY_MESSAGE}')


def find_mmagic_glean(obj):
    """(where, GLEANStyleGANv2 state dict) of a loaded checkpoint holding MMagic's GLEAN, else None."""
    if not isinstance(obj, dict):
        return None
    for container in CONTAINERS:
        state = obj if container == '' else obj.get(container)
        if not isinstance(state, dict):
            continue
        for prefix in EDITOR_PREFIXES:
            sub = sub_state(state, prefix) if prefix else state
            if is_mmagic_glean(sub):
                where = f'{container or "the top level"}' + (f', prefix {prefix!r}' if prefix else '')
                return where, strip_module_prefix(sub)
    return None


def glean_from_mmagic(state):
    """A ``GLEANStyleGANv2`` state dict (no editor prefix) in ``GLEANStyleGAN2``'s layout."""
    bank = from_mmagic(sub_state(state, BANK_PREFIX), 'generator')
    out = {key: value for key, value in state.items() if not key.startswith(BANK_PREFIX)}
    out.update({'bank.' + key: value for key, value in bank['state'].items()})
    return out


def editor_network(state, signature):
    """The network an MMagic editor saved under one of its generator prefixes (EMA first) whose keys include
    ``signature``, without the prefix; ``state`` itself when it holds them; else None. This is how a network of
    the plugin trained by MMagic (``SRGAN`` with ``type='SkipTransformer'`` / ``'GLEANStyleGAN2'``) is saved."""
    for prefix in EDITOR_PREFIXES:
        sub = sub_state(state, prefix) if prefix else state
        if sub and all(key in sub for key in signature):
            return strip_module_prefix(sub)
    return None


def read_mmagic_glean(obj):
    """(GLEANStyleGAN2 state dict, where it was found) of a checkpoint holding MMagic's GLEAN, else None."""
    found = find_mmagic_glean(obj)
    if found is None:
        return None
    where, state = found
    return glean_from_mmagic(state), where
