"""Tiny networks of the three Table 1 archs (32 px, a few channels) and tiny Table 1 cells, for the tests."""
import copy

TINY_NETWORKS = {
    'st': {'type': 'SkipTransformer', 'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2, 'channel_multiplier': 1,
           'narrow': 1 / 32, 'skip_resolutions': [8, 16], 'decoder_load_path': None},
    'glean': {'type': 'GLEANStyleGAN2', 'in_size': 32, 'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2,
              'channel_multiplier': 1, 'narrow': 1 / 32, 'rrdb_channels': 8, 'num_rrdbs': 1,
              'rrdb_growth_channels': 4, 'bank_load_path': None, 'fix_bank': True},
    'gfpgan': {'type': 'GFPGANv1Clean', 'out_size': 32, 'num_style_feat': 32, 'channel_multiplier': 1,
               'decoder_load_path': None, 'fix_decoder': False, 'num_mlp': 2, 'input_is_latent': True,
               'different_w': True, 'narrow': 1 / 16, 'sft_half': True},
}
TINY_D = {'type': 'PureStyleGAN2Discriminator', 'out_size': 32, 'channel_multiplier': 1, 'narrow': 1 / 32}


def tiny_network(arch):
    return copy.deepcopy(TINY_NETWORKS[arch])


def tiny_cell_options(cell, faces, pairs=None, iters=4, tmp_root=None):
    """A Table 1 cell's option dict shrunk to 32 px, tiny widths, CPU, a few iterations.

    ``faces``: folder of HQ faces (FFHQ stand-in and validation set); ``pairs``: folder holding
    ``clean/`` and ``degraded/`` with the same file names (the DL column's generated pairs)."""
    from dlst_plugin.experiments import table1
    arch, data = table1.split_cell(cell)
    opt = table1.cell_options(cell)
    opt['network_g'] = tiny_network(arch)
    opt['network_d'] = dict(TINY_D)
    opt['path'].update(pretrain_network_d=None)
    if tmp_root is not None:
        opt['path']['experiments_root'] = str(tmp_root / 'experiments' / opt['name'])
    train_set = opt['datasets']['train']
    train_set.update(out_size=32, num_worker_per_gpu=0, batch_size_per_gpu=2)
    if data == 'gfpdeg':
        train_set.update(dataroot_gt=str(faces), io_backend={'type': 'disk'})
    else:
        train_set.update(dataroot_clean=str(pairs / 'clean'), dataroot_degraded=str(pairs / 'degraded'),
                         dataroot_hq=str(faces))
    opt['datasets']['val'].update(dataroot_gt=str(faces), out_size=32)
    opt['train'].update(total_iter=iters, scheduler={'type': 'CosineAnnealingRestartLR', 'periods': [iters],
                                                     'restart_weights': [1], 'eta_min': 1e-6})
    opt['train']['perceptual_opt'].update(random_init=True, layer_weights={'conv1_2': 0.1, 'conv2_2': 0.1})
    opt['val'].update(val_freq=iters)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=iters, use_tb_logger=False)
    return opt
