"""Restorers and degraders from their checkpoint files (``.pth`` or ``.safetensors``): which network a file holds,
checked against its tensors, built and loaded strictly. Shared by ``dlst-restore``, ``dlst-export``, ``DLSTer``,
``FaceRestorer``, ``dlst-generate-pairs``, the training-time pair stream and spandrel.

A read goes: :func:`dlst_plugin.checkpoints.reading.read_checkpoint` (the file) and
:func:`~dlst_plugin.checkpoints.reading.choose_weights` (which weights) -> :func:`resolve_network_options` (an option
file's ``network_g`` when one is given, else the checkpoint's checked metadata, else its tensor shapes) ->
:func:`dlst_plugin.loading.shapes.check_shapes` (every key against the network those options build, on the meta
device) -> the arch, built and loaded. A GLEAN checkpoint saved by MMagic (``GLEANStyleGANv2`` in its ``SRGAN``
editor) is renamed into ``GLEANStyleGAN2``'s layout first (:mod:`dlst_plugin.checkpoints.glean_mmagic`).
"""
import copy
import hashlib
from pathlib import Path

from dlst_plugin.checkpoints.glean_mmagic import check_not_legacy, editor_restorer
from dlst_plugin.checkpoints.meta import INIT_FILE_KEYS, NOT_NETWORK_KEYS, NOT_RESTORERS, read_metadata
from dlst_plugin.checkpoints.meta import network_options as meta_network_options
from dlst_plugin.checkpoints.reading import choose_weights, read_checkpoint, sub_state
from dlst_plugin.errors import CheckpointLayoutError, ConfigError, InputError
from dlst_plugin.loading.shapes import check_shapes, constructor_options, infer_generator_config, infer_network_options

# network_g of the paper's 512 px Skip-Transformer, shipped inside the package (read_network_options())
DEFAULT_OPT = Path(__file__).resolve().parents[1] / 'assets' / 'restore_default.yml'
EXPECTED_CHECKPOINT = ('a restorer checkpoint (.pth: a dict with params_ema or params, as BasicSR saves, or '
                       "MMagic's GLEAN save; or .safetensors)")
EXPECTED_DEGRADER = ('a degrader checkpoint: the net_g_<iter>.pth of DegradationLearningModel, with red.* and '
                     'green.* weights')


class RestoreError(InputError, ValueError):
    """One photo that cannot be restored; the message says why (exit code 1)."""


class RestoreSetupError(ConfigError, RestoreError):
    """The restorer cannot be set up (option file, checkpoint, device, flags): nothing was restored (exit code 2)."""


# -- which network ------------------------------------------------------------------------------------

def read_network_options(opt_path=None):
    """``network_g`` of a BasicSR option file (default: the packaged ``assets/restore_default.yml``, the
    512 px Skip-Transformer), with the files it was initialised from set to None (the checkpoint holds them)."""
    from dlst_plugin.options.file import read_option_file
    path = Path(opt_path) if opt_path else DEFAULT_OPT
    if not path.is_file():
        raise RestoreSetupError(f'--opt {path}: option file not found' if opt_path else
                                f'the packaged default option file {path} is missing (reinstall dlst-plugin, '
                                'or pass --opt X.yml whose network_g matches the checkpoint)')
    try:
        opt = read_option_file(path)  # the plugin's loader: BasicSR's !!python tags read, none evaluated
    except ConfigError as err:
        raise RestoreSetupError(f'--opt {str(err).splitlines()[0]}') from None
    network = opt.get('network_g')
    if not isinstance(network, dict) or 'type' not in network:
        raise RestoreSetupError(f'--opt {path} has no network_g with a type (the restorer to build)')
    return {k: (None if k in INIT_FILE_KEYS else v) for k, v in copy.deepcopy(network).items()}


def resolve_network_options(state, meta, opt=None, name='checkpoint', expected_arch=None):
    """The ``network_g`` block that builds the network ``state`` loads into: ``opt`` (an option file's path, or
    a dict of options given by the caller) when given, else ``meta``'s, else inferred from the shapes of
    ``state``. ``expected_arch``: the arch the caller needs (a refusal names what the file holds instead)."""
    if isinstance(opt, dict):
        return {k: v for k, v in opt.items() if k not in NOT_NETWORK_KEYS}
    if opt:
        return read_network_options(opt)
    if meta is not None:
        wrong = expected_arch and meta['arch'] != expected_arch
        if wrong or (expected_arch is None and meta['arch'] in NOT_RESTORERS):
            held = NOT_RESTORERS.get(meta['arch'], meta['arch'])
            raise CheckpointLayoutError(f'{name} holds a {meta["arch"]}, {held}, not '
                                        f'{"a " + expected_arch if expected_arch else "a face restorer"}')
        return meta_network_options(meta)
    if expected_arch == 'CoupledStyleGAN2':
        return {'type': 'CoupledStyleGAN2', **infer_generator_config(sub_state(state, 'red.'))}
    return infer_network_options(state, name)  # its shapes are checked by build_loaded


def build_loaded(network_opt, state, name='checkpoint'):
    """``network_opt``'s network with ``state`` loaded strictly, in eval mode, frozen; its shapes are checked
    before it is built (a crafted size cannot allocate more than the tensors the file holds)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    check_shapes(network_opt, state, name)
    try:
        net = ARCH_REGISTRY.get(network_opt['type'])(**copy.deepcopy(constructor_options(network_opt)))
        net.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointLayoutError(f'{name} does not fit network_g {network_opt["type"]}: {str(err)[:600]}') \
            from None
    return net.eval().requires_grad_(False)


def build_restorer(net_opt):
    """A restorer for training from its ``network_g`` (BasicSR's registry, given :func:`constructor_options` with
    the init files); GFP-GAN's clean arch gets its ``decoder_load_path`` read by the plugin's reader
    (``weights_only=True``), not by GFP-GAN's ``torch.load``, in its ``decoder_channel_order``."""
    from basicsr.archs import build_network

    from dlst_plugin.archs.external import CLEAN_DECODER_ARCHS
    net = build_network({'type': net_opt['type'], **constructor_options(net_opt, init_files=True)})
    decoder_path = net_opt.get('decoder_load_path') if net_opt['type'] in CLEAN_DECODER_ARCHS else None
    if decoder_path:
        from dlst_plugin.loading.priors import load_clean_decoder
        load_clean_decoder(net, decoder_path, net_opt.get('decoder_channel_order'))
    return net


# -- restorers ----------------------------------------------------------------------------------------

def restorer_weights(ckpt, name):
    """(state dict, meta or None) of a loaded restorer checkpoint: what an MMagic editor saved (mmengine's
    ``state_dict``, or the chosen weights under a generator prefix; MMagic's GLEAN converted), else
    :func:`choose_weights` (``params_ema``, ``params``, flat) with the checkpoint's meta."""
    found = editor_restorer(ckpt.get('state_dict'))
    if found is not None:  # mmengine's save: its meta describes the training run, not this network
        return found[0], None
    state = choose_weights(ckpt)
    if state is None:
        raise CheckpointLayoutError(f'{name} holds no weights (params_ema, params or tensors)')
    found = editor_restorer(state)
    if found is not None and found[1] != '':  # under an editor prefix, or MMagic's GLEAN: the meta is MMagic's
        return found[0], None
    return state, read_metadata(ckpt, name)


def load_restorer_state(path):
    """(state dict, meta or None) of a restorer checkpoint file; RestoreSetupError naming it when unusable."""
    try:
        state, meta = restorer_weights(read_checkpoint(path, '--model', EXPECTED_CHECKPOINT), f'--model {path}')
        check_not_legacy(state, f'--model {path}')
    except CheckpointLayoutError as err:
        raise RestoreSetupError(str(err)) from None
    return state, meta


def load_restorer(model_path, opt=None):
    """(network in eval mode, its ``network_g`` block) of a checkpoint file; ``opt`` (an option file) overrides
    what the file says about its network."""
    state, meta = load_restorer_state(model_path)
    name = f'--model {model_path}'
    try:
        network_opt = resolve_network_options(state, meta, opt, name)
        return build_loaded(network_opt, state, name), network_opt
    except CheckpointLayoutError as err:
        raise RestoreSetupError(str(err)) from None


def face_sizes(network_opt, net=None):
    """(input size, output size) of a restorer: GLEAN's ``in_size`` may be smaller than its ``out_size``."""
    out_size = int(network_opt.get('out_size') or getattr(net, 'out_size', 0) or 512)
    return int(network_opt.get('in_size') or getattr(net, 'in_size', 0) or out_size), out_size


def resolve_device(device='auto', dtype='auto'):
    """(torch.device, torch.dtype) of a restorer: ``dtype`` ``auto`` is the device's native precision
    (:func:`dlst_plugin.devices.resolve_dtype`: bfloat16 where it is computed natively, float16 on CUDA GPUs
    without it, else float32); float16 needs CUDA."""
    from dlst_plugin.devices import pick_device, resolve_dtype
    device = pick_device(device, error=RestoreSetupError)
    return device, resolve_dtype(dtype, device, error=RestoreSetupError)


# -- degraders ----------------------------------------------------------------------------------------

def load_degrader(path, source='--model', weights='params_ema', options=None, device='cpu', **sampling):
    """``(net, state)``: the frozen ``CoupledStyleGAN2`` of checkpoint ``path`` on ``device``, and the state dict
    it was loaded from. ``source`` (a flag or option key) names the setting at fault in every error; ``options``:
    the degrader's ``network_g`` options given by the caller (else the file's meta, else its shapes);
    ``sampling`` (``truncation``, ``mixing_prob``) overrides the file's sampling settings."""
    ckpt = read_checkpoint(path, source, EXPECTED_DEGRADER)
    name = f'{source} {path}'
    state = choose_weights(ckpt, weights)
    if state is None or not any(str(k).startswith('green.') for k in state):
        raise CheckpointLayoutError(f'{name} is not a degrader checkpoint (no green.* weights under {weights!r}); '
                                    f'expected {EXPECTED_DEGRADER}')
    given = dict(options, type='CoupledStyleGAN2') if options else None
    network_opt = resolve_network_options(state, read_metadata(ckpt, name), given, name,
                                          expected_arch='CoupledStyleGAN2')
    network_opt.update({k: v for k, v in sampling.items() if v is not None})
    return build_loaded(network_opt, state, name).to(device), state


def degrader_size(path, source, options=None):
    """The face size of the degrader in checkpoint ``path`` (its options, meta or shapes; nothing is built)."""
    ckpt = read_checkpoint(path, source, EXPECTED_DEGRADER)
    state = choose_weights(ckpt) or {}
    given = dict(options, type='CoupledStyleGAN2') if options else None
    opt = resolve_network_options(state, read_metadata(ckpt, f'{source} {path}'), given, f'{source} {path}',
                                  expected_arch='CoupledStyleGAN2')
    return opt.get('out_size')


def weights_digest(state):
    """Short hash of a state dict: a resumed run must use the very weights the first run used."""
    digest = hashlib.blake2b(digest_size=8)
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
