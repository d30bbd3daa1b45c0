"""What BasicSR 1.4.2 reads from an option file, key by key: the tables :mod:`dlst_plugin.options_check`
checks option files against.

Written from BasicSR 1.4.2's source: ``utils/options.py`` (``parse_options``), ``train.py``, ``test.py``,
``data/__init__.py`` (``build_dataloader``), ``utils/logger.py`` (``MessageLogger``), ``utils/misc.py``
(``check_resume``) and the models in ``models/*_model.py``. The plugin's own models declare their
``train:`` keys themselves (``TRAIN_OPTIONS`` of the model class); only BasicSR's models are listed here.

A key's spec is a :class:`Key`: its kind (:data:`KINDS`), whether it is required, whether ``~`` (null)
is accepted, and a range rule from :data:`RANGES` (by key name, wherever the key appears).
"""
from typing import NamedTuple


class Key(NamedTuple):
    kind: object = 'any'  # a name of KINDS, or a Python type (int, float, bool, str, dict, list)
    required: bool = False
    null: bool = True  # whether ~ is accepted (means "unset" where BasicSR reads it with .get)


def req(kind):
    return Key(kind, required=True, null=False)


def num(kind):
    """An optional number that BasicSR uses in arithmetic: ~ would fail there."""
    return Key(kind, null=False)


# kinds beyond Python types: 'count' is a whole number (an int, or a float such as !!float 5e3, which
# BasicSR's iteration arithmetic accepts); 'any' is not checked
KINDS = ('count', 'any')

# --- the top level ---------------------------------------------------------------------------------
TOP_LEVEL = {
    'name': req(str), 'model_type': req(str), 'num_gpu': Key('num_gpu', required=True, null=False),
    'scale': num(int), 'manual_seed': Key(int), 'datasets': req(dict), 'path': req(dict),
    'train': Key(dict), 'val': Key(dict), 'logger': Key(dict), 'dist_params': Key(dict),
    'find_unused_parameters': Key(bool),
    'plugin': Key('any'),  # dlst-plugin: ``plugin: !!python/name:dlst_plugin.compat.apply`` imports the plugin
    'allow_unknown': Key(list),  # dlst-plugin: deliberate extra keys (see options_check)
}
# set by BasicSR's parse_options / train_pipeline: a value in the file is overwritten
SET_BY_BASICSR = {'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'}
NETWORK_PREFIX = 'network_'

# --- path: -----------------------------------------------------------------------------------------
PATH = {'resume_state': Key(str), 'ignore_resume_networks': Key(list), 'experiments_root': Key(str)}
PATH_PREFIXES = {'pretrain_network_': Key(str), 'param_key_': Key(str), 'strict_load_': num(bool)}
PATH_SET_BY_BASICSR = {'models', 'training_states', 'log', 'visualization', 'results_root', 'tb_logger'}

# --- logger: (train.py, MessageLogger reads print_freq and use_tb_logger with []) ----------------------
LOGGER = {'print_freq': req('count'), 'save_checkpoint_freq': req('count'), 'use_tb_logger': req(bool),
          'wandb': Key(dict)}
WANDB = {'project': Key(str), 'resume_id': Key(str)}
DIST_PARAMS = {'backend': Key(str), 'port': num(int)}

# --- val: ------------------------------------------------------------------------------------------
VAL = {'val_freq': num('count'), 'save_img': num(bool), 'suffix': Key(str), 'metrics': Key(dict),
       'pbar': num(bool)}
METRIC_KEYS = {'type': req(str), 'better': Key(str)}  # other keys go to the metric function

# --- datasets.<phase>: (build_dataloader; train.py reads prefetch_mode, dataset_enlarge_ratio) --------
DATASET = {'name': req(str), 'type': req(str)}
TRAIN_LOADER = {
    'batch_size_per_gpu': req(int), 'num_worker_per_gpu': req(int), 'dataset_enlarge_ratio': num('count'),
    'prefetch_mode': Key(str), 'num_prefetch_queue': num(int), 'pin_memory': num(bool),
    'persistent_workers': num(bool), 'use_shuffle': num(bool),
}
PREFETCH_MODES = (None, 'cpu', 'cuda')
# the data roots (and other keys read with []) each dataset type needs; a list value means "either"
DATASET_REQUIRED = {
    'DegradedFaceDataset': ('dataroot_gt', ),
    'UnpairedFaceDataset': ('dataroot_lq', ),
    'SecondOrderFaceDataset': ('dataroot_clean', 'dataroot_degraded'),  # + dataroot_hq, see options_check
    'FFHQDataset': ('dataroot_gt', 'io_backend'),
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
_BASE = {'total_iter': req('count'), 'warmup_iter': num('count'), 'scheduler': req(dict)}  # setup_schedulers: []
_SR = {**_BASE, 'optim_g': req(dict), 'ema_decay': num(float), 'pixel_opt': Key(dict), 'perceptual_opt': Key(dict)}
_SRGAN = {**_SR, 'optim_d': req(dict), 'gan_opt': req(dict), 'ldl_opt': Key(dict), 'net_d_iters': num(int),
          'net_d_init_iters': num(int)}
_STYLEGAN2 = {
    **_BASE, 'optim_g': req(dict), 'optim_d': req(dict), 'gan_opt': req(dict), 'r1_reg_weight': req(float),
    'path_reg_weight': req(float), 'net_g_reg_every': req(int), 'net_d_reg_every': req(int),
    'mixing_prob': req(float), 'path_batch_shrink': req(int),
    # in BasicSR's own StyleGAN2 option files, not read by StyleGAN2Model: accepted so those files pass
    'net_d_iters': num(int), 'net_d_init_iters': num(int),
}
_REALESR_TOP = ('queue_size', 'high_order_degradation', 'resize_prob', 'resize_range', 'gaussian_noise_prob',
                'noise_range', 'poisson_scale_range', 'gray_noise_prob', 'jpeg_range', 'second_blur_prob',
                'resize_prob2', 'resize_range2', 'gaussian_noise_prob2', 'noise_range2', 'poisson_scale_range2',
                'gray_noise_prob2', 'jpeg_range2', 'gt_size')


class ModelTable(NamedTuple):
    train: dict
    networks: tuple = ('network_g', )  # the network_* blocks the model builds
    top_level: tuple = ()  # model-specific top-level keys
    val: dict = {}
    val_required: bool = False  # the model reads opt['val'] even when training
    optim_keys: tuple = None  # the optim_* keys the model reads (None: all go to the torch optimizer)
    loss_needed: tuple = ()  # at least one of these must be set


_GAN = ('network_g', 'network_d')
BASICSR_MODELS = {
    'SRModel': ModelTable(_SR, loss_needed=('pixel_opt', 'perceptual_opt')),
    'SwinIRModel': ModelTable(_SR, loss_needed=('pixel_opt', 'perceptual_opt')),
    'SRGANModel': ModelTable(_SRGAN, _GAN),
    'ESRGANModel': ModelTable(_SRGAN, _GAN),
    'HiFaceGANModel': ModelTable({**_SRGAN, 'feature_matching_opt': Key(dict)}, _GAN),
    'StyleGAN2Model': ModelTable(_STYLEGAN2, _GAN, val={'num_val_samples': num(int)}, val_required=True,
                                 optim_keys=('type', 'lr')),
    'RealESRNetModel': ModelTable(_SR, top_level=_REALESR_TOP + ('gt_usm', ),
                                  loss_needed=('pixel_opt', 'perceptual_opt')),
    'RealESRGANModel': ModelTable(_SRGAN, _GAN, top_level=_REALESR_TOP + ('l1_gt_usm', 'percep_gt_usm', 'gan_gt_usm')),
    'VideoBaseModel': ModelTable(_SR, loss_needed=('pixel_opt', 'perceptual_opt')),
    'VideoGANModel': ModelTable(_SRGAN, _GAN),
    'EDVRModel': ModelTable({**_SR, 'tsa_iter': num(int), 'dcn_lr_mul': num(float)}),
    'VideoRecurrentModel': ModelTable({**_SR, 'fix_flow': Key(int), 'flow_lr_mul': num(float)},
                                      val={'flip_seq': num(bool), 'center_frame_only': num(bool)}),
    'VideoRecurrentGANModel': ModelTable({**_SRGAN, 'fix_flow': Key(int, required=True), 'lr_flow': num(float)}, _GAN,
                                         val={'flip_seq': num(bool), 'center_frame_only': num(bool)}),
}
# val: keys of the plugin's models that do not declare VAL_OPTIONS on the class
PLUGIN_NETWORKS = _GAN

SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # BaseModel.setup_schedulers

# --- ranges, by key name ---------------------------------------------------------------------------
RANGES = {
    'total_iter': ('> 0', lambda v: v > 0),
    'warmup_iter': ('-1 (off) or >= 0', lambda v: v >= -1),
    'lr': ('> 0', lambda v: v > 0),
    'batch_size_per_gpu': ('>= 1', lambda v: v >= 1),
    'num_worker_per_gpu': ('>= 0', lambda v: v >= 0),
    'dataset_enlarge_ratio': ('>= 1', lambda v: v >= 1),
    'num_prefetch_queue': ('>= 1', lambda v: v >= 1),
    'ema_decay': ('in [0, 1) (0 = no EMA)', lambda v: 0 <= v < 1),
    'print_freq': ('>= 1', lambda v: v >= 1),
    'save_checkpoint_freq': ('>= 1', lambda v: v >= 1),
    'val_freq': ('>= 1', lambda v: v >= 1),
    'scale': ('>= 1', lambda v: v >= 1),
    'r1_reg_weight': ('>= 0', lambda v: v >= 0),
    'path_reg_weight': ('>= 0', lambda v: v >= 0),
    'net_g_reg_every': ('>= 1', lambda v: v >= 1),
    'net_d_reg_every': ('>= 1', lambda v: v >= 1),
    'path_batch_shrink': ('>= 1', lambda v: v >= 1),
    'mixing_prob': ('in [0, 1]', lambda v: 0 <= v <= 1),
    'net_d_iters': ('>= 1', lambda v: v >= 1),
    'net_d_init_iters': ('>= 0', lambda v: v >= 0),
    'accum_iter': ('>= 1', lambda v: v >= 1),
    'grad_clip': ('> 0', lambda v: v > 0),
    'max_nonfinite_steps': ('>= 0', lambda v: v >= 0),
    'num_gpu': ('>= 0 or auto', lambda v: v >= 0),
    'port': ('in [1, 65535]', lambda v: 1 <= v <= 65535),
}
