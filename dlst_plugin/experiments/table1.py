"""The paper's Table 1 as a grid of training runs: three restorer archs x two training sets.

Table 1 of the paper asks whether training on learned degradations helps any restorer, not only the
Skip-Transformer: GFP-GAN (``GFPGANv1Clean``), GLEAN (``GLEANStyleGAN2``) and ST (``SkipTransformer``),
each trained once on FFHQ with GFP-GAN's synthetic degradation (``DegradedFaceDataset``, column
"GFP-GAN data") and once on DL-ST's second-order set (``SecondOrderFaceDataset``, column "DL data").

Paper 4.2: "all networks are trained in 200,000 iterations, and the losses and hyperparameters are kept
the same as in the original paper". So each row trains with its own paper's recipe (:data:`RECIPES`;
docs/table1.md gives each value's source) for 200k iterations; the two cells of a row differ only in the
training set, and all six share the prior, the validation set and the logging. The option files in
``options/table1/`` are written from this module (``dlst-table1 options``), so they cannot drift apart;
a test checks the shipped files.
"""
import copy
import textwrap

import yaml

ARCHS = ('gfpgan', 'glean', 'st')  # table rows, in the paper's order
DATA = ('gfpdeg', 'dl')  # table columns
ARCH_TITLES = {'st': 'ST (SkipTransformer)', 'glean': 'GLEAN (GLEANStyleGAN2)', 'gfpgan': 'GFP-GAN (GFPGANv1Clean)'}
DATA_TITLES = {'gfpdeg': "GFP-GAN's degradation", 'dl': 'DL (second-order)'}
RECIPES = {
    'gfpgan': "GFP-GAN's options/train_gfpgan_v1.yml (GFPGANModel: pyramid L1, L1 + VGG19 perceptual/style, "
              'wgan_softplus + R1/16, eye and mouth discriminators, ArcFace identity; Adam 2e-3)',
    'glean': "MMagic's configs/glean/glean_x16_2xb8_ffhq.py (L2 + 0.01 VGG16 conv4_3 + 0.01 vanilla GAN; "
             'Adam 1e-4 (0.9, 0.99), cosine)',
    'st': "the paper's 3.3.4 / 3.3.5 (L2 + 0.02 VGG16 + 0.02 vanilla GAN; Adam 5e-5 (0.5, 0.99), decoder 5e-6, "
          'cosine restarts)',
}
# the GPUs each recipe was run on: batch_size_per_gpu is the recipe's, so its total batch needs as many
RECIPE_GPUS = {'gfpgan': 4, 'glean': 2, 'st': 1}
TOTAL_ITER = 200_000  # paper 4.2, every cell
PRIOR = 'experiments/pretrained_models/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth'
PRIOR_D = 'experiments/pretrained_models/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k_D.pth'
FFHQ_COMPONENTS = 'experiments/pretrained_models/FFHQ_eye_mouth_landmarks_512.pth'  # GFP-GAN's landmark file
ARCFACE = 'experiments/pretrained_models/arcface_resnet18.pth'  # GFP-GAN's identity network
NORM = {'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]}
LOADER = {'use_shuffle': True, 'num_worker_per_gpu': 6, 'batch_size_per_gpu': 8, 'prefetch_mode': None}

TRAIN_SETS = {
    'gfpdeg': {'name': 'ffhq_gfpgan_degradation', 'type': 'DegradedFaceDataset',
               'dataroot_gt': 'datasets/ffhq/ffhq_512.lmdb', 'io_backend': {'type': 'lmdb'}, 'out_size': 512,
               'use_hflip': True, **NORM, **LOADER, 'dataset_enlarge_ratio': 1},
    'dl': {'name': 'dl_second_order', 'type': 'SecondOrderFaceDataset', 'mode': 'second_order', 'ratio': 0.5,
           'dataroot_clean': 'datasets/dl_pairs/clean.lmdb', 'dataroot_degraded': 'datasets/dl_pairs/degraded.lmdb',
           'dataroot_hq': 'datasets/ffhq/ffhq_512.lmdb', 'out_size': 512, 'use_hflip': True, **NORM, **LOADER,
           'dataset_enlarge_ratio': 1},
}
# GFP-GAN's rows: its batch (3 per GPU) and the eye/mouth boxes GFPGANModel reads (FFHQ: GFP-GAN's file;
# generated faces: the alignment template, docs/table1.md#component-boxes)
GFPGAN_DATA = {'batch_size_per_gpu': 3, 'crop_components': True, 'component_path': FFHQ_COMPONENTS,
               'eye_enlarge_ratio': 1.4}
STREAM_SUFFIX = '_stream'
STREAM_ARCHS = ('glean', 'st')  # GFPGANModel trains on the loader's pairs only
DEGRADER = 'experiments/DL_StyleGAN2_512/models/net_g_latest.pth'
STREAM = {'degrader': DEGRADER, 'ratio': 0.5, 'queue_size': 0, 'mode': 'second_order'}
VAL_SET = {'name': 'ffhq_val', 'type': 'DegradedFaceDataset', 'dataroot_gt': 'datasets/ffhq_val',
           'io_backend': {'type': 'disk'}, 'out_size': 512, 'seed': 0, **NORM}


# every row's StyleGAN2 discriminator (GFP-GAN's and MMagic's are StyleGAN2's too; this one is checkpoint-
# compatible with BasicSR's and runs without BasicSR's CUDA extension)
DISCRIMINATOR = {'type': 'PureStyleGAN2Discriminator', 'out_size': 512, 'channel_multiplier': 1, 'narrow': 1,
                 'num_frozen_blocks': 0}


def _path(pretrain_d, param_key_g='params', **extra):
    return {'pretrain_network_g': None, 'param_key_g': param_key_g, 'strict_load_g': True,
            'pretrain_network_d': pretrain_d, 'strict_load_d': True, **extra, 'resume_state': None}


def gfpgan_recipe():
    """GFP-GAN's options/train_gfpgan_v1.yml on GFPGANv1Clean, 200k iterations (its MultiStepLR milestones
    600k/700k of 800k scaled to the same shares of 200k)."""
    component = {'type': 'PureFacialComponentDiscriminator', 'narrow': 1}
    nets = {
        'network_g': {'type': 'GFPGANv1Clean', 'out_size': 512, 'num_style_feat': 512, 'channel_multiplier': 1,
                      'decoder_load_path': PRIOR, 'fix_decoder': True, 'num_mlp': 8, 'input_is_latent': True,
                      'different_w': True, 'narrow': 1, 'sft_half': True},
        'network_d': dict(DISCRIMINATOR),
        'network_d_left_eye': dict(component), 'network_d_right_eye': dict(component),
        'network_d_mouth': dict(component),
        'network_identity': {'type': 'ResNetArcFace', 'block': 'IRBlock', 'layers': [2, 2, 2, 2], 'use_se': False},
    }
    path = _path(None, 'params_ema',  # GFP-GAN trains its discriminators from scratch
 pretrain_network_d_left_eye=None, pretrain_network_d_right_eye=None,
                 pretrain_network_d_mouth=None, pretrain_network_identity=ARCFACE,
                 ignore_resume_networks=['network_identity'])
    adam = {'type': 'Adam', 'lr': 2e-3}  # GFPGANModel sets the betas: (0, 0.99), D's corrected for R1 every 16
    train = {
        'optim_g': dict(adam), 'optim_d': dict(adam), 'optim_component': dict(adam),
        'scheduler': {'type': 'MultiStepLR', 'milestones': [150_000, 175_000], 'gamma': 0.5},
        'total_iter': TOTAL_ITER, 'warmup_iter': -1,
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 0.1, 'reduction': 'mean'},
        'L1_opt': {'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'},
        'pyramid_loss_weight': 1, 'remove_pyramid_loss': 50_000,
        'perceptual_opt': {'type': 'PerceptualStyleLoss', 'layer_weights': {'conv1_2': 0.1, 'conv2_2': 0.1,
                                                                            'conv3_4': 1, 'conv4_4': 1, 'conv5_4': 1},
                           'vgg_type': 'vgg19', 'use_input_norm': True, 'perceptual_weight': 1.0, 'style_weight': 50,
                           'range_norm': True, 'criterion': 'l1', 'weights_path': None},
        'gan_opt': {'type': 'GANLoss', 'gan_type': 'wgan_softplus', 'loss_weight': 0.1},
        'r1_reg_weight': 10,
        'gan_component_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                              'loss_weight': 1},
        'comp_style_weight': 200, 'identity_weight': 10,
        'net_d_iters': 1, 'net_d_init_iters': 0, 'net_d_reg_every': 16,
    }
    return {'model_type': 'GFPGANRecipeModel', **nets, 'path': path, 'train': train, 'find_unused_parameters': True}


def glean_recipe():
    """MMagic's GLEAN FFHQ recipe (configs/glean/glean_x16_2xb8_ffhq.py) with FaceRestorationModel's keys, 200k
    iterations (its cosine's T_max, twice its 300k iterations, kept twice the run)."""
    # MMagic's GLEANStyleGANv2 encoder (23 RRDBs of 64 channels) at MMagic's x8 face ratio: the 512 px LQ face is
    # resized to 64 px first (FaceRestorationModel does it); at 512 px in, the RRDB trunk alone costs 8.8 TFLOP
    network_g = {'type': 'GLEANStyleGAN2', 'in_size': 64, 'out_size': 512, 'num_style_feat': 512, 'num_mlp': 8,
                 'channel_multiplier': 1, 'narrow': 1, 'rrdb_channels': 64, 'num_rrdbs': 23,
                 'rrdb_growth_channels': 32, 'bank_load_path': PRIOR, 'bank_channel_order': 'rgb', 'fix_bank': True}
    adam = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]}
    train = {
        'optim_g': dict(adam), 'optim_d': dict(adam),
        'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [2 * TOTAL_ITER], 'restart_weights': [1],
                      'eta_min': 1e-7},
        'total_iter': TOTAL_ITER, 'warmup_iter': -1, 'ema_decay': 0,  # MMagic's SRGAN keeps no EMA
        'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1.0, 'reduction': 'mean'},
        # MMagic's PerceptualLoss: layer '21' (conv4_3), mse, weight 1e-2, norm_img False: the [-1, 1] images
        # are ImageNet-normalised as if they were in [0, 1]
        'perceptual_opt': {'type': 'VGGPerceptualLoss', 'vgg_type': 'vgg16', 'criterion': 'l2', 'loss_weight': 0.01,
                           'layer_weights': {'conv4_3': 1.0}, 'input_range': [0, 1], 'weights_path': None},
        'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.01, 'real_label_val': 1.0,
                    'fake_label_val': 0.0},
    }
    # MMagic initialises GLEAN's discriminator from the StyleGAN2 the bank comes from
    return {'model_type': 'FaceRestorationModel', 'network_g': network_g, 'network_d': dict(DISCRIMINATOR),
            'path': _path(PRIOR_D), 'train': train}


def st_recipe():
    """The paper's Skip-Transformer recipe (3.3.4, 3.3.5), 200k iterations: four cosine restarts of 50k."""
    network_g = {'type': 'SkipTransformer', 'out_size': 512, 'num_style_feat': 512, 'num_mlp': 8,
                 'channel_multiplier': 1, 'narrow': 1, 'encoder_narrow': 1, 'num_first_blocks': 4, 'attention': True,
                 'skip_resolutions': [8, 16, 32, 64, 128, 256], 'decoder_load_path': PRIOR, 'fix_decoder': False}
    train = {
        'optim_g': {'type': 'Adam', 'lr': 5e-5, 'decoder_lr': 5e-6, 'betas': [0.5, 0.99]},
        'optim_d': {'type': 'Adam', 'lr': 5e-5, 'betas': [0.5, 0.99]},
        'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [TOTAL_ITER // 4] * 4, 'restart_weights': [1] * 4,
                      'eta_min': 1e-7},
        'total_iter': TOTAL_ITER, 'warmup_iter': -1, 'ema_decay': 0.999,
        'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1.0, 'reduction': 'mean'},
        'perceptual_opt': {'type': 'VGGPerceptualLoss', 'vgg_type': 'vgg16', 'criterion': 'l2', 'loss_weight': 0.02,
                           'layer_weights': {'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_3': 1.0, 'conv4_3': 1.0,
                                             'conv5_3': 1.0}, 'weights_path': None},
        'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.02},
    }
    return {'model_type': 'FaceRestorationModel', 'network_g': network_g, 'network_d': dict(DISCRIMINATOR),
            'path': _path(PRIOR_D), 'train': train}


RECIPE_BUILDERS = {'gfpgan': gfpgan_recipe, 'glean': glean_recipe, 'st': st_recipe}
SHARED = {
    'val': {'val_freq': 5000, 'save_img': True,
            'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
                        'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False}}},
    'logger': {'print_freq': 100, 'save_checkpoint_freq': 5000, 'use_tb_logger': True,
               'wandb': {'project': None, 'resume_id': None}},
    'dist_params': {'backend': 'nccl', 'port': 29500},
}
HEADER = """# Table 1 of the paper, cell {cell}: {arch} trained on {data}.
# Recipe ({iters} iterations, paper 4.2; docs/table1.md gives the source of every value):
{recipe}
# batch_size_per_gpu is the recipe's, which ran on {gpus} GPU(s); its total batch on as many processes:
#   dlst-table1 train {cell} --nproc {gpus}       (or: dlst-train -opt options/table1/{cell}.yml)
# Written by `dlst-table1 options` from dlst_plugin/experiments/table1.py: edit that module (or copy this file) rather
# than this file, so the two cells of a row keep the same recipe.
# Paths a user must provide: the StyleGAN2 prior and its discriminator (GFP-GAN's
# StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth and its _D file, or any layout the plugin reads), FFHQ
# as a 512 px LMDB, the pairs of dlst-generate-pairs (DL column), held-out HQ faces for validation{extra}.
"""
GFPGAN_FILES = (",\n# GFP-GAN's FFHQ_eye_mouth_landmarks_512.pth (FFHQ's eye and mouth boxes) and\n"
                "# arcface_resnet18.pth, torchvision's vgg19-dcbb9e9d.pth (in ./weights or $DLST_WEIGHTS_DIR)")
VGG16_FILE = ",\n# torchvision's vgg16-397923af.pth (in ./weights or $DLST_WEIGHTS_DIR)"


def cells():
    """Every cell id, row by row: ``<arch>_<data>``."""
    return [f'{arch}_{data}' for arch in ARCHS for data in DATA]


def stream_files():
    """The DL cells' streaming variants (``<arch>_dl_stream``): same experiment, pairs drawn on the device."""
    return [f'{arch}_dl{STREAM_SUFFIX}' for arch in STREAM_ARCHS]


def split_cell(cell):
    base = cell[:-len(STREAM_SUFFIX)] if cell.endswith(STREAM_SUFFIX) else cell
    arch, _, data = base.partition('_')
    if arch not in ARCHS or data not in DATA or (base != cell and (data != 'dl' or arch not in STREAM_ARCHS)):
        raise ValueError(f'unknown Table 1 cell {cell!r}; the cells are: {", ".join(cells() + stream_files())}')
    return arch, data


def recipe_of(cell):
    """One line naming the recipe the cell trains with."""
    arch, _ = split_cell(cell)
    return f'{RECIPES[arch]}, {TOTAL_ITER} iterations'


def _train_set(arch, data, stream):
    train_set = copy.deepcopy(TRAIN_SETS['gfpdeg' if stream else data])
    if arch == 'gfpgan':
        train_set.update(GFPGAN_DATA)
    if stream:
        train_set.update(name='ffhq_share', batch_size_per_gpu=train_set['batch_size_per_gpu'] // 2)
    return train_set


def cell_options(cell):
    """The option dict of one cell (a fresh copy). A ``*_dl_stream`` variant trains the same experiment as
    its DL cell, with FFHQ (GFP-GAN's degradation) from the loader for half of each batch and the generated
    pairs streamed from the degrader for the other half (GLEAN and ST rows: GFPGANModel does not stream)."""
    arch, data = split_cell(cell)
    stream = cell.endswith(STREAM_SUFFIX)
    recipe = RECIPE_BUILDERS[arch]()
    if stream:
        recipe['train']['stream_pairs'] = copy.deepcopy(STREAM)
    networks = {k: v for k, v in recipe.items() if k.startswith('network_')}
    extra = {k: v for k, v in recipe.items() if k not in networks and k not in ('model_type', 'path', 'train')}
    return {'name': f'table1_{arch}_{data}', 'model_type': recipe['model_type'], 'num_gpu': 'auto', 'manual_seed': 0,
            'datasets': {'train': _train_set(arch, data, stream), 'val': copy.deepcopy(VAL_SET)}, **networks,
            'path': recipe['path'], 'train': recipe['train'], **copy.deepcopy(SHARED), **extra}


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for short lists of numbers: how BasicSR option files look."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence('tag:yaml.org,2002:seq', v, flow_style=True))


def cell_yaml(cell):
    arch, data = split_cell(cell)
    text = yaml.dump(cell_options(cell), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
    recipe = textwrap.fill(RECIPES[arch], width=106, initial_indent='#   ', subsequent_indent='#   ')
    header = HEADER.format(cell=cell, arch=ARCH_TITLES[arch], data=DATA_TITLES[data], recipe=recipe,
                           iters=TOTAL_ITER, gpus=RECIPE_GPUS[arch], extra=GFPGAN_FILES if arch == 'gfpgan' else
                           VGG16_FILE)
    if cell.endswith(STREAM_SUFFIX):
        header += ('# Streaming variant of the DL cell (same experiment name): half of each batch FFHQ from the\n'
                   '# loader, half pairs drawn each iteration by the trained degrader (train.stream_pairs).\n')
    return header + text
