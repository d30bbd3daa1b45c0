"""Restorer networks from checkpoint files (``.pth`` or ``.safetensors``): which network a file holds, built
and loaded strictly. Shared by ``dlst-restore``, ``dlst-export``, :class:`~dlst_plugin.inference.dlster.DLSTer` and
:class:`~dlst_plugin.inference.face_restorer.FaceRestorer`.

Which network: an option file's ``network_g`` when one is given (it overrides everything), else the
checkpoint's ``meta`` entry, else what its keys and tensor shapes say (:mod:`dlst_plugin.checkpoints.meta`).
A GLEAN checkpoint saved by MMagic (``GLEANStyleGANv2`` in its ``SRGAN`` editor) is read into
``GLEANStyleGAN2``'s layout first (:mod:`dlst_plugin.checkpoints.glean_mmagic`).
"""
import copy
from pathlib import Path

import torch

from dlst_plugin.checkpoints.files import load_checkpoint
from dlst_plugin.errors import ConfigError, InputError

# network_g of the paper's 512 px Skip-Transformer, shipped inside the package (read_network_options())
DEFAULT_OPT = Path(__file__).resolve().parents[1] / 'assets' / 'restore_default.yml'
CHECKPOINT_KEYS = ('params_ema', 'params')  # BasicSR net_g_*.pth: the EMA weights first
EXPECTED_CHECKPOINT = ('a restorer checkpoint (.pth: a dict with params_ema or params, as BasicSR saves, or '
                       "MMagic's GLEAN save; or .safetensors)")
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


class RestoreError(InputError, ValueError):
    """One photo that cannot be restored; the message says why (exit code 1)."""


class RestoreSetupError(ConfigError, RestoreError):
    """The restorer cannot be set up (option file, checkpoint, device, flags): nothing was restored (exit code 2)."""


def read_network_options(opt_path=None):
    """``network_g`` of a BasicSR option file (default: the packaged ``assets/restore_default.yml``, the
    512 px Skip-Transformer), with the files it was initialised from set to None (the checkpoint holds them)."""
    from dlst_plugin.checkpoints.meta import INIT_FILE_KEYS
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
    network = copy.deepcopy(network)
    for key in INIT_FILE_KEYS:
        if key in network:
            network[key] = None  # the restorer checkpoint holds the decoder (ST, GFP-GAN) or bank (GLEAN)
    return network


def split_checkpoint(ckpt):
    """(state dict, meta or None) of a loaded checkpoint: MMagic's GLEAN converted, else ``params_ema``, else
    ``params``, else the file as a state dict, without ``module.`` prefixes."""
    from dlst_plugin.checkpoints.glean_mmagic import read_mmagic_glean
    from dlst_plugin.checkpoints.meta import META_KEY, read_metadata
    mmagic = read_mmagic_glean(ckpt)
    if mmagic is not None:
        return mmagic[0], None  # MMagic's meta describes its training run, not this network
    trained_in_mmagic = _editor_restorer(ckpt)
    if trained_in_mmagic is not None:
        return trained_in_mmagic, None
    meta = read_metadata(ckpt)
    state = next((ckpt[k] for k in CHECKPOINT_KEYS if isinstance(ckpt.get(k), dict)), None)
    if state is None:
        state = {k: v for k, v in ckpt.items() if k != META_KEY}
    from dlst_plugin.checkpoints.reading import strip_module_prefix
    return strip_module_prefix(state), meta


def _editor_restorer(ckpt):
    """One of the plugin's restorers trained in MMagic's ``SRGAN`` editor (``options/mmagic/``): mmengine's
    ``state_dict`` with the network under ``generator.`` (or an EMA prefix); None otherwise."""
    from dlst_plugin.checkpoints.glean_mmagic import editor_network
    from dlst_plugin.checkpoints.meta import SIGNATURES
    container = ckpt.get('state_dict') if isinstance(ckpt, dict) else None
    if not isinstance(container, dict):
        return None
    for signature in SIGNATURES.values():
        found = editor_network(container, signature)
        if found is not None:
            return found
    return None


def load_restorer_state(path):
    """(state dict, meta or None) of a restorer checkpoint file; RestoreSetupError naming it when unreadable."""
    from dlst_plugin.checkpoints.glean_mmagic import check_not_legacy
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError
    try:
        state, meta = split_checkpoint(load_checkpoint(path, EXPECTED_CHECKPOINT))
        check_not_legacy(state, f'--model {path}')
    except (ConfigError, CheckpointLayoutError) as err:
        raise RestoreSetupError(str(err)) from None
    return state, meta


def load_state_dict(path):
    """The restorer's weights: ``params_ema``, else ``params``, else the file as a state dict."""
    return load_restorer_state(path)[0]


def network_options_for(state, meta, opt=None, name='checkpoint'):
    """The ``network_g`` block to build: ``opt``'s (an option file) when given, else ``meta``'s, else inferred
    from the shapes of ``state``."""
    from dlst_plugin.checkpoints.meta import NOT_RESTORERS, infer_network_options, network_options
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError
    if opt:
        return read_network_options(opt)
    if meta is not None:
        if meta['arch'] in NOT_RESTORERS:
            raise RestoreSetupError(f'--model {name} holds a {meta["arch"]}, {NOT_RESTORERS[meta["arch"]]}, not a '
                                    'face restorer')
        return network_options(meta)
    try:
        return infer_network_options(state, name)
    except CheckpointLayoutError as err:
        raise RestoreSetupError(f'--model {err}') from None


def build_loaded_network(network_opt, state, name='checkpoint'):
    """``network_opt``'s network (BasicSR's registry) with ``state`` loaded strictly, in eval mode."""
    from basicsr.archs import build_network

    import dlst_plugin  # noqa: F401  (fills the registries)
    try:
        net = build_network(copy.deepcopy(network_opt))
    except (KeyError, TypeError, ValueError) as err:
        raise RestoreSetupError(f'cannot build network_g {network_opt.get("type")!r}: {err}') from err
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise RestoreSetupError(f'--model {name} does not fit network_g {network_opt["type"]} '
                                f'(wrong --opt?): {str(err)[:600]}') from None
    return net.eval().requires_grad_(False)


def load_restorer(model_path, opt=None):
    """(network in eval mode, its ``network_g`` block) of a checkpoint file; ``opt`` (an option file) overrides
    what the file says about its network."""
    state, meta = load_restorer_state(model_path)
    network_opt = network_options_for(state, meta, opt, str(model_path))
    return build_loaded_network(network_opt, state, str(model_path)), network_opt


def face_sizes(network_opt, net=None):
    """(input size, output size) of a restorer: GLEAN's ``in_size`` may be smaller than its ``out_size``."""
    out_size = int(network_opt.get('out_size') or getattr(net, 'out_size', 0) or 512)
    return int(network_opt.get('in_size') or getattr(net, 'in_size', 0) or out_size), out_size


def resolve_device(device='auto', dtype='float32'):
    """(torch.device, torch.dtype); float16 needs CUDA, bfloat16 works on both."""
    from dlst_plugin.devices import pick_device
    device = pick_device(device, error=RestoreSetupError)
    if dtype not in DTYPES:
        raise RestoreSetupError(f'--dtype {dtype!r}: choose one of {sorted(DTYPES)}')
    if dtype == 'float16' and device.type != 'cuda':
        raise RestoreSetupError('--dtype float16 runs on CUDA only; on CPU use bfloat16 or float32')
    return device, DTYPES[dtype]
