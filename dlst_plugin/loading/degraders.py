"""Degrader networks (``CoupledStyleGAN2``) from the checkpoints ``DegradationLearningModel`` saves: built and
loaded strictly, frozen, in eval mode. Shared by ``dlst-generate-pairs`` and the training-time pair stream.

Which network: the options given by the caller (an option file's entry), else the checkpoint's ``meta``
entry, else what the red network's tensor shapes say. ``truncation`` and ``mixing_prob`` given by the
caller override whatever the file says (they are sampling settings, not weights).
"""
import hashlib

from dlst_plugin.checkpoints.files import load_checkpoint
from dlst_plugin.errors import ConfigError

EXPECTED_DEGRADER = ('a degrader checkpoint: the net_g_<iter>.pth of DegradationLearningModel, with red.* and '
                     'green.* weights')
NOT_ARCH_OPTIONS = ('type', 'pretrained', 'pretrained_layout', 'pretrained_channel_order')


def degrader_weights(ckpt, weights, source, path):
    """The state dict under ``weights`` (``params_ema`` falls back to ``params``); ConfigError if it is no degrader."""
    state = ckpt.get(weights)
    if state is None and weights == 'params_ema':
        state = ckpt.get('params')
    if not isinstance(state, dict) or not any(str(k).startswith('green.') for k in state):
        raise ConfigError(f'{source} {path} is not a degrader checkpoint (no green.* weights under {weights!r}); '
                          f'expected {EXPECTED_DEGRADER}')
    from dlst_plugin.checkpoints.reading import strip_module_prefix
    return strip_module_prefix(state)


def degrader_options(ckpt, state, options=None):
    """``CoupledStyleGAN2`` keyword arguments: ``options``, else the file's meta, else inferred from shapes."""
    from dlst_plugin.checkpoints.meta import read_metadata
    from dlst_plugin.checkpoints.reading import infer_generator_config, sub_state
    meta = read_metadata(ckpt)
    if options:
        chosen = dict(options)
    elif meta and meta.get('arch') == 'CoupledStyleGAN2':
        chosen = dict(meta['options'])
    else:
        chosen = infer_generator_config(sub_state(state, 'red.'))
    return {k: v for k, v in chosen.items() if k not in NOT_ARCH_OPTIONS}


def load_degrader(path, source='--model', weights='params_ema', options=None, device='cpu', **sampling):
    """``(net, state)``: the frozen ``CoupledStyleGAN2`` of checkpoint ``path`` on ``device``, and the state dict
    it was loaded from. ``source`` (a flag or option key) names the setting at fault in every error;
    ``sampling`` (``truncation``, ``mixing_prob``) overrides the file's sampling settings."""
    from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError
    ckpt = load_checkpoint(path, EXPECTED_DEGRADER, flag=source)
    state = degrader_weights(ckpt, weights, source, path)
    try:
        config = degrader_options(ckpt, state, options)
        config.update({k: v for k, v in sampling.items() if v is not None})
        net = CoupledStyleGAN2(**config)
        net.load_state_dict(state, strict=True)
    except (CheckpointLayoutError, RuntimeError, TypeError, ValueError) as err:
        raise ConfigError(f'{source} {path} does not fit a CoupledStyleGAN2: {str(err)[:600]}') from None
    return net.to(device).eval().requires_grad_(False), state


def weights_digest(state):
    """Short hash of a state dict: a resumed run must use the very weights the first run used."""
    digest = hashlib.blake2b(digest_size=8)
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
