"""What BasicSR 1.4.2 (and the model code of GFP-GAN 1.3.8 and Real-ESRGAN 0.3.0) reads from an option
file, key by key: the tables the option check holds option files against.

Written from BasicSR 1.4.2's source: ``utils/options.py`` (``parse_options``), ``train.py``, ``test.py``,
``data/__init__.py`` (``build_dataloader``), ``utils/logger.py`` (``MessageLogger``), ``utils/misc.py``
(``check_resume``), ``models/base_model.py`` (``load_network``: ``strict`` goes to ``load_state_dict``,
where ``~`` means non-strict) and the models in ``models/*_model.py``; GFP-GAN's ``GFPGANModel`` and
Real-ESRGAN's ``RealESRGANModel`` / ``RealESRNetModel`` likewise. The plugin's own models declare their
``train:`` keys as typed blocks (:mod:`dlst_plugin.options.blocks`); only other projects' are listed here.

A key's spec is a :class:`Key`: its kind, whether it is required, whether ``~`` (null) is accepted, a range
rule and the allowed choices.
"""
from typing import NamedTuple

from dlst_plugin.options.schema import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Range

PROBABILITY = Range(0, 1)


class Key(NamedTuple):
    kind: object = 'any'  # 'any', 'count' (a whole number), 'num_gpu' (an int or auto), or int/float/bool/str/dict/list
    required: bool = False
    null: bool = True  # whether ~ is accepted (means "unset" where BasicSR reads it with .get)
    rule: Range = None
    choices: tuple = ()


def req(kind, rule=None):
    return Key(kind, required=True, null=False, rule=rule)


def num(kind, rule=None):
    """An optional number that BasicSR uses in arithmetic: ~ would fail there."""
    return Key(kind, null=False, rule=rule)


# --- the top level ---------------------------------------------------------------------------------
TOP_LEVEL = {
    'name': req(str), 'model_type': req(str), 'num_gpu': Key('num_gpu', required=True, null=False, rule=NON_NEGATIVE),
    'scale': num(int, AT_LEAST_ONE), 'manual_seed': Key(int), 'datasets': req(dict), 'path': req(dict),
    'train': Key(dict), 'val': Key(dict), 'logger': Key(dict), 'dist_params': Key(dict),
    'find_unused_parameters': Key(bool),
    'plugin': Key('any'),  # dlst-plugin: ``plugin: !!python/name:dlst_plugin.compat.apply`` imports the plugin
    'allow_unknown': Key(list),  # dlst-plugin: deliberate extra keys (see dlst_plugin.options.check)
}
# set by BasicSR's parse_options / train_pipeline: a value in the file is overwritten
SET_BY_BASICSR = {'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'}
NETWORK_PREFIX = 'network_'

# --- path: -----------------------------------------------------------------------------------------
PATH = {'resume_state': Key(str), 'ignore_resume_networks': Key(list), 'experiments_root': Key(str)}
PATH_PREFIXES = {
    'pretrain_network_': Key(str), 'param_key_': Key(str),
    'strict_load_': Key(bool),  # ~ is read as non-strict (load_state_dict(strict=None))
    'channel_order_': Key(str, choices=('rgb', 'bgr')),  # dlst-plugin: a BGR StyleGAN2 prior for network_<x>
}
PATH_SET_BY_BASICSR = {'models', 'training_states', 'log', 'visualization', 'results_root', 'tb_logger'}

# --- logger: (train.py, MessageLogger reads print_freq and use_tb_logger with []) ----------------------
LOGGER = {'print_freq': req('count', AT_LEAST_ONE), 'save_checkpoint_freq': req('count', AT_LEAST_ONE),
          'use_tb_logger': req(bool), 'wandb': Key(dict)}
WANDB = {'project': Key(str), 'resume_id': Key(str)}
DIST_PARAMS = {'backend': Key(str), 'port': num(int, Range(1, 65535))}

# --- val: ------------------------------------------------------------------------------------------
VAL = {'val_freq': num('count', AT_LEAST_ONE), 'save_img': num(bool), 'suffix': Key(str), 'metrics': Key(dict),
       'pbar': num(bool)}
METRIC_KEYS = {'type': req(str), 'better': Key(str, choices=('higher', 'lower'))}  # others go to the metric

# --- datasets.<phase>: (build_dataloader; train.py reads prefetch_mode, dataset_enlarge_ratio) --------
DATASET = {'name': req(str), 'type': req(str)}
TRAIN_LOADER = {
    'batch_size_per_gpu': req(int, AT_LEAST_ONE), 'num_worker_per_gpu': req(int, NON_NEGATIVE),
    'dataset_enlarge_ratio': num('count', AT_LEAST_ONE), 'prefetch_mode': Key(str), 'num_prefetch_queue': num(
        int, AT_LEAST_ONE), 'pin_memory': num(bool), 'persistent_workers': num(bool), 'use_shuffle': num(bool),
}
PREFETCH_MODES = (None, 'cpu', 'cuda')
# the data roots (and other keys read with []) each dataset type needs
DATASET_REQUIRED = {
    'DegradedFaceDataset': ('dataroot_gt', ),  # TODO(schema): the plugin's datasets move to typed blocks
    'UnpairedFaceDataset': ('dataroot_lq', ),
    'SecondOrderFaceDataset': ('dataroot_clean', 'dataroot_degraded'),
    'FFHQDataset': ('dataroot_gt', 'io_backend'),
    'FFHQDegradationDataset': ('dataroot_gt', 'io_backend', 'mean', 'std', 'out_size', 'use_hflip'),
    'PairedImageDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend'),
    'SingleImageDataset': ('dataroot_lq', 'io_backend'),
    'RealESRGANDataset': ('dataroot_gt', 'io_backend'),
    'RealESRGANPairedDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend'),
    'REDSDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file'),
    'REDSRecurrentDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file'),
    'Vimeo90KDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file'),
    'Vimeo90KRecurrentDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file'),
    'VideoTestDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend'),
    'VideoTestVimeo90KDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend', 'meta_info_file'),
    'VideoRecurrentTestDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend'),
    'VideoTestDUFDataset': ('dataroot_gt', 'dataroot_lq', 'io_backend'),
}

# --- train: of BasicSR's models ------------------------------------------------------------------
_BASE = {'total_iter': req('count', POSITIVE), 'warmup_iter': num('count', Range(-1)),
         'scheduler': req(dict)}  # setup_schedulers reads it with []
EMA = Range(0, 1, hi_open=True, note='(0 = no EMA)')
_SR = {**_BASE, 'optim_g': req(dict), 'ema_decay': num(float, EMA), 'pixel_opt': Key(dict), 'perceptual_opt': Key(dict)}
_D_ITERS = {'net_d_iters': num(int, AT_LEAST_ONE), 'net_d_init_iters': num(int, NON_NEGATIVE)}
_SRGAN = {**_SR, 'optim_d': req(dict), 'gan_opt': req(dict), 'ldl_opt': Key(dict), **_D_ITERS}
_R1 = {'r1_reg_weight': req(float, NON_NEGATIVE), 'net_d_reg_every': req(int, AT_LEAST_ONE)}
_STYLEGAN2 = {
    **_BASE, 'optim_g': req(dict), 'optim_d': req(dict), 'gan_opt': req(dict), **_R1,
    'path_reg_weight': req(float, NON_NEGATIVE), 'net_g_reg_every': req(int, AT_LEAST_ONE),
    'mixing_prob': req(float, PROBABILITY), 'path_batch_shrink': req(int, AT_LEAST_ONE),
    **_D_ITERS,  # in BasicSR's own StyleGAN2 option files, not read by StyleGAN2Model: accepted so they pass
}
# GFP-GAN 1.3.8's GFPGANModel (gfpgan/models/gfpgan_model.py); its EMA decay is fixed in the code
_GFPGAN = {
    **_BASE, 'optim_g': req(dict), 'optim_d': req(dict), 'optim_component': Key(dict), 'gan_opt': req(dict),
    'gan_component_opt': Key(dict), 'pixel_opt': Key(dict), 'perceptual_opt': Key(dict), 'L1_opt': req(dict), **_R1,
    **_D_ITERS, 'pyramid_loss_weight': num(float, NON_NEGATIVE), 'remove_pyramid_loss': num('count', NON_NEGATIVE),
    'comp_style_weight': num(float, NON_NEGATIVE), 'identity_weight': num(float, NON_NEGATIVE),
}
_REALESR_TOP = ('queue_size', 'high_order_degradation', 'resize_prob', 'resize_range', 'gaussian_noise_prob',
                'noise_range', 'poisson_scale_range', 'gray_noise_prob', 'jpeg_range', 'second_blur_prob',
                'resize_prob2', 'resize_range2', 'gaussian_noise_prob2', 'noise_range2', 'poisson_scale_range2',
                'gray_noise_prob2', 'jpeg_range2', 'gt_size')
GFPGAN_NETWORKS = ('network_g', 'network_d', 'network_d_left_eye', 'network_d_right_eye', 'network_d_mouth',
                   'network_identity')


class ModelTable(NamedTuple):
    train: dict
    networks: tuple = ('network_g', )  # the network_* blocks the model builds
    top_level: tuple = ()  # model-specific top-level keys
    val: dict = {}
    val_required: bool = False  # the model reads opt['val'] even when training
    optim_keys: tuple = None  # the optim_* keys the model reads (None: all go to the torch optimizer)
    loss_needed: tuple = ()  # at least one of these must be set


_GAN = ('network_g', 'network_d')
_SR_LOSSES = ('pixel_opt', 'perceptual_opt')
# {(package, class name): table} of the model classes other projects register in BasicSR's registry
MODELS = {
    ('basicsr', 'SRModel'): ModelTable(_SR, loss_needed=_SR_LOSSES),
    ('basicsr', 'SwinIRModel'): ModelTable(_SR, loss_needed=_SR_LOSSES),
    ('basicsr', 'SRGANModel'): ModelTable(_SRGAN, _GAN),
    ('basicsr', 'ESRGANModel'): ModelTable(_SRGAN, _GAN),
    ('basicsr', 'HiFaceGANModel'): ModelTable({**_SRGAN, 'feature_matching_opt': Key(dict)}, _GAN),
    ('basicsr', 'StyleGAN2Model'): ModelTable(_STYLEGAN2, _GAN, val={'num_val_samples': num(int, AT_LEAST_ONE)},
                                              val_required=True, optim_keys=('type', 'lr')),
    ('basicsr', 'RealESRNetModel'): ModelTable(_SR, top_level=_REALESR_TOP + ('gt_usm', ), loss_needed=_SR_LOSSES),
    ('basicsr', 'RealESRGANModel'): ModelTable(_SRGAN, _GAN, top_level=_REALESR_TOP + (
        'l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm')),
    ('basicsr', 'VideoBaseModel'): ModelTable(_SR, loss_needed=_SR_LOSSES),
    ('basicsr', 'VideoGANModel'): ModelTable(_SRGAN, _GAN),
    ('basicsr', 'EDVRModel'): ModelTable({**_SR, 'tsa_iter': num(int), 'dcn_lr_mul': num(float)}),
    ('basicsr', 'VideoRecurrentModel'): ModelTable({**_SR, 'fix_flow': Key(int), 'flow_lr_mul': num(float)},
                                                   val={'flip_seq': num(bool), 'center_frame_only': num(bool)}),
    ('basicsr', 'VideoRecurrentGANModel'): ModelTable(
        {**_SRGAN, 'fix_flow': Key(int, required=True), 'lr_flow': num(float)}, _GAN,
        val={'flip_seq': num(bool), 'center_frame_only': num(bool)}),
    ('gfpgan', 'GFPGANModel'): ModelTable(_GFPGAN, GFPGAN_NETWORKS, optim_keys=('type', 'lr')),
    # the plugin's entry to GFPGANModel (Table 1's GFP-GAN rows): GFP-GAN's keys
    ('dlst_plugin', 'GFPGANRecipeModel'): ModelTable(_GFPGAN, GFPGAN_NETWORKS, optim_keys=('type', 'lr')),
    ('realesrgan', 'RealESRNetModel'): ModelTable(_SR, top_level=_REALESR_TOP + ('gt_usm', ), loss_needed=_SR_LOSSES),
    ('realesrgan', 'RealESRGANModel'): ModelTable(_SRGAN, _GAN, top_level=_REALESR_TOP + (
        'l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm')),
}
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # BaseModel.setup_schedulers
