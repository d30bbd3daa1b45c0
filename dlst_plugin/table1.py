"""The paper's Table 1 as a grid of training runs: three restorer archs x two training sets.

Table 1 of the paper asks whether training on learned degradations helps any restorer, not only the
Skip-Transformer: GFP-GAN (``GFPGANv1Clean``), GLEAN (``GLEANStyleGAN2``) and ST (``SkipTransformer``),
each trained once on FFHQ with GFP-GAN's synthetic degradation (``DegradedFaceDataset``, column
"GFP-GAN data") and once on DL-ST's second-order set (``SecondOrderFaceDataset``, column "DL data").

The six cells share everything but ``network_g`` and the training set: the losses (1.0 L2 + 0.02 VGG16
perceptual + 0.02 vanilla GAN), the StyleGAN2 discriminator, batch 8, 220k iterations, Adam betas
(0.5, 0.99) at 5e-5, the validation set. The option files in ``options/table1/`` are written from
this module (``dlst-table1 options``), so they cannot drift apart; a test checks the shipped files.
"""
import copy

import yaml

ARCHS = ('gfpgan', 'glean', 'st')  # table rows, in the paper's order
DATA = ('gfpdeg', 'dl')  # table columns
ARCH_TITLES = {'st': 'ST (SkipTransformer)', 'glean': 'GLEAN (GLEANStyleGAN2)', 'gfpgan': 'GFP-GAN (GFPGANv1Clean)'}
DATA_TITLES = {'gfpdeg': "GFP-GAN's degradation", 'dl': 'DL (second-order)'}
PRIOR = 'experiments/pretrained_models/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth'
PRIOR_D = 'experiments/pretrained_models/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k_D.pth'
NORM = {'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]}
LOADER = {'use_shuffle': True, 'num_worker_per_gpu': 6, 'batch_size_per_gpu': 8, 'prefetch_mode': None}

NETWORKS = {
    'st': {'type': 'SkipTransformer', 'out_size': 512, 'num_style_feat': 512, 'num_mlp': 8, 'channel_multiplier': 1,
           'narrow': 1, 'encoder_narrow': 1, 'num_first_blocks': 4, 'attention': True,
           'skip_resolutions': [8, 16, 32, 64, 128, 256], 'decoder_load_path': PRIOR, 'fix_decoder': False},
    'glean': {'type': 'GLEANStyleGAN2', 'in_size': 512, 'out_size': 512, 'num_style_feat': 512, 'num_mlp': 8,
              'channel_multiplier': 1, 'narrow': 1, 'encoder_narrow': 1, 'num_first_blocks': 1,
              'bank_load_path': PRIOR, 'fix_bank': True},
    'gfpgan': {'type': 'GFPGANv1Clean', 'out_size': 512, 'num_style_feat': 512, 'channel_multiplier': 1,
               'decoder_load_path': PRIOR, 'fix_decoder': False, 'num_mlp': 8, 'input_is_latent': True,
               'different_w': True, 'narrow': 1, 'sft_half': True},
}
GROUP_LRS = {'st': {'decoder_lr': 5e-6}, 'glean': {}, 'gfpgan': {}}  # ST: the paper's decoder at a tenth

TRAIN_SETS = {
    'gfpdeg': {'name': 'ffhq_gfpgan_degradation', 'type': 'DegradedFaceDataset',
               'dataroot_gt': 'datasets/ffhq/ffhq_512.lmdb', 'io_backend': {'type': 'lmdb'}, 'out_size': 512,
               'use_hflip': True, **NORM, **LOADER, 'dataset_enlarge_ratio': 1},
    'dl': {'name': 'dl_second_order', 'type': 'SecondOrderFaceDataset', 'mode': 'second_order', 'ratio': 0.5,
           'dataroot_clean': 'datasets/dl_pairs/clean.lmdb', 'dataroot_degraded': 'datasets/dl_pairs/degraded.lmdb',
           'dataroot_hq': 'datasets/ffhq/ffhq_512.lmdb', 'out_size': 512, 'use_hflip': True, **NORM, **LOADER,
           'dataset_enlarge_ratio': 1},
}
STREAM_SUFFIX = '_stream'
DEGRADER = 'experiments/DL_StyleGAN2_512/models/net_g_latest.pth'
STREAM = {'degrader': DEGRADER, 'ratio': 0.5, 'queue_size': 0, 'mode': 'second_order'}
VAL_SET = {'name': 'ffhq_val', 'type': 'DegradedFaceDataset', 'dataroot_gt': 'datasets/ffhq_val',
           'io_backend': {'type': 'disk'}, 'out_size': 512, 'seed': 0, **NORM}

SHARED_TRAIN = {
    'ema_decay': 0.999,
    'optim_d': {'type': 'Adam', 'lr': 5e-5, 'betas': [0.5, 0.99]},
    'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [55000] * 4, 'restart_weights': [1] * 4,
                  'eta_min': 1e-7},
    'total_iter': 220000,
    'warmup_iter': -1,
    'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1.0, 'reduction': 'mean'},
    'perceptual_opt': {'type': 'VGGPerceptualLoss', 'vgg_type': 'vgg16', 'criterion': 'l2', 'loss_weight': 0.02,
                       'layer_weights': {'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_3': 1.0, 'conv4_3': 1.0,
                                         'conv5_3': 1.0}, 'weights_path': None},
    'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.02},
}
SHARED = {
    'model_type': 'FaceRestorationModel',
    'num_gpu': 'auto',
    'manual_seed': 0,
    'network_d': {'type': 'PureStyleGAN2Discriminator', 'out_size': 512, 'channel_multiplier': 1, 'narrow': 1,
                  'num_frozen_blocks': 0},
    'path': {'pretrain_network_g': None, 'param_key_g': 'params', 'strict_load_g': True,
             'pretrain_network_d': PRIOR_D, 'strict_load_d': True, 'resume_state': None},
    'val': {'val_freq': 5000, 'save_img': True,
            'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
                        'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False}}},
    'logger': {'print_freq': 100, 'save_checkpoint_freq': 5000, 'use_tb_logger': True,
               'wandb': {'project': None, 'resume_id': None}},
    'dist_params': {'backend': 'nccl', 'port': 29500},
}
HEADER = """# Table 1 of the paper, cell {cell}: {arch} trained on {data}.
# Written by `dlst-table1 options` from dlst_plugin/table1.py: edit that module (or copy this file) rather
# than this file, so the six cells keep the same losses, batch, iterations and validation.
#   dlst-table1 train {cell} [--nproc N]       (or: dlst-train -opt options/table1/{cell}.yml)
# Paths a user must provide: the StyleGAN2 prior and its discriminator (GFP-GAN's
# StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth and its _D file, or any layout the plugin reads), FFHQ
# as a 512 px LMDB, the pairs of dlst-generate-pairs (DL column), held-out HQ faces for validation.
"""


def cells():
    """Every cell id, row by row: ``<arch>_<data>``."""
    return [f'{arch}_{data}' for arch in ARCHS for data in DATA]


def stream_files():
    """The DL cells' streaming variants (``<arch>_dl_stream``): same experiment, pairs drawn on the device."""
    return [f'{arch}_dl{STREAM_SUFFIX}' for arch in ARCHS]


def split_cell(cell):
    base = cell[:-len(STREAM_SUFFIX)] if cell.endswith(STREAM_SUFFIX) else cell
    arch, _, data = base.partition('_')
    if arch not in ARCHS or data not in DATA or (base != cell and data != 'dl'):
        raise ValueError(f'unknown Table 1 cell {cell!r}; the cells are: {", ".join(cells() + stream_files())}')
    return arch, data


def cell_options(cell):
    """The option dict of one cell (a fresh copy). A ``*_dl_stream`` variant trains the same experiment as
    its DL cell, with FFHQ (GFP-GAN's degradation) from the loader for half of each batch of 8 and the
    generated pairs streamed from the degrader for the other half."""
    arch, data = split_cell(cell)
    stream = cell.endswith(STREAM_SUFFIX)
    shared = copy.deepcopy(SHARED)
    optim_g = {'type': 'Adam', 'lr': 5e-5, **GROUP_LRS[arch], 'betas': [0.5, 0.99]}
    train = {'optim_g': optim_g, **copy.deepcopy(SHARED_TRAIN)}
    train_set = copy.deepcopy(TRAIN_SETS['gfpdeg' if stream else data])
    if stream:
        train_set.update(name='ffhq_share', batch_size_per_gpu=LOADER['batch_size_per_gpu'] // 2)
        train['stream_pairs'] = copy.deepcopy(STREAM)
    return {'name': f'table1_{arch}_{data}', 'model_type': shared.pop('model_type'), 'num_gpu': shared.pop('num_gpu'),
            'manual_seed': shared.pop('manual_seed'), 'datasets': {'train': train_set, 'val': copy.deepcopy(VAL_SET)},
            'network_g': copy.deepcopy(NETWORKS[arch]), 'network_d': shared.pop('network_d'),
            'path': shared.pop('path'), 'train': train, **shared}


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for short lists of numbers: how BasicSR option files look."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence('tag:yaml.org,2002:seq', v, flow_style=True))


def cell_yaml(cell):
    arch, data = split_cell(cell)
    text = yaml.dump(cell_options(cell), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
    header = HEADER.format(cell=cell, arch=ARCH_TITLES[arch], data=DATA_TITLES[data])
    if cell.endswith(STREAM_SUFFIX):
        header += ('# Streaming variant of the DL cell (same experiment name): 4 FFHQ faces from the loader + 4 pairs\n'
                   '# drawn each iteration by the trained degrader (train.stream_pairs), no generated-pairs LMDB.\n')
    return header + text
