"""Tiny randomly initialised restorers saved the way the plugin saves them (with ``meta``) or bare (without),
for the checkpoint-metadata, spandrel and DLSTer tests."""
import copy

import torch

# 32 px, 16 channels: milliseconds per face on a CPU
TINY_ST = {'type': 'SkipTransformer', 'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2, 'channel_multiplier': 1,
           'narrow': 1 / 32, 'attention': True, 'skip_resolutions': [8, 16], 'decoder_load_path': None}
TINY_GLEAN = {'type': 'GLEANStyleGAN2', 'in_size': 16, 'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2,
              'channel_multiplier': 2, 'narrow': 1 / 32, 'rrdb_channels': 8, 'num_rrdbs': 1, 'rrdb_growth_channels': 4,
              'bank_load_path': None}


def build(net_opt, seed=0):
    """The network of a BasicSR ``network_g`` block, randomly initialised (``seed``), in eval mode."""
    from basicsr.archs import build_network

    import dlst_plugin  # noqa: F401  (fills the registries)
    torch.manual_seed(seed)
    net = build_network(copy.deepcopy(net_opt)).eval()
    with torch.no_grad():  # ST's skip output convs start at zero: make every part count
        for name, p in net.named_parameters():
            if name.endswith('out.weight'):
                p.normal_(0, 0.02)
    return net


def training_checkpoint(net, net_opt):
    """What the plugin's training models save as ``net_g_*.pth`` (EMA and live weights, and ``meta``)."""
    from dlst_plugin.checkpoints.meta import network_metadata
    state = net.state_dict()
    return {'params': state, 'params_ema': state, 'meta': network_metadata(net_opt)}


def save_training_checkpoint(path, net_opt, seed=0):
    """(path, network): ``net_opt``'s network saved as training saves it."""
    net = build(net_opt, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(training_checkpoint(net, net_opt), path)
    return path, net


def save_bare_checkpoint(path, net_opt, seed=0, key='params_ema'):
    """(path, network): the weights alone under ``key`` (None: a flat state dict), no metadata (older files)."""
    net = build(net_opt, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict() if key is None else {key: net.state_dict()}, path)
    return path, net


TINY_DEGRADER = {'type': 'CoupledStyleGAN2', 'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2,
                 'channel_multiplier': 1, 'narrow': 1 / 32}


def save_degrader_checkpoint(path, out_size=32, seed=0, trained=True):
    """A tiny degrader saved as DegradationLearningModel saves it (params, params_ema, meta). ``trained``: its
    green network no longer equals the red one, as after training."""
    from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2
    from dlst_plugin.checkpoints.meta import network_metadata
    net_opt = dict(TINY_DEGRADER, out_size=out_size)
    torch.manual_seed(seed)
    net = CoupledStyleGAN2(**{k: v for k, v in net_opt.items() if k != 'type'})
    if trained:
        with torch.no_grad():
            for p in net.green.parameters():
                p.add_(0.05 * torch.randn_like(p))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict(), 'meta': network_metadata(net_opt)}, path)
    return path
