"""``DegradedFaceDataset``: HQ faces and their GFP-GAN-degraded LQ versions (docs/design.md#second-order-set).

A drop-in for GFP-GAN's ``FFHQDegradationDataset`` option block (same keys; the degradation is
``dlst_plugin.data.degradations``), plus: folders are scanned recursively, images of another size
are resized to ``out_size``, bad images raise an error naming them (or are skipped with
``skip_bad_images: true``), and every sample draws from its own seeded RNG.
"""
import cv2
import numpy as np
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from dlst_plugin.data.degradations import FaceDegradation, degrade
from dlst_plugin.data.device_degradation import pack
from dlst_plugin.data.face_image_source import FaceImageSource

# Keys of the dataset block that are not degradation parameters. BasicSR adds ``phase`` and
# ``scale`` and reads the data-loader keys; GFP-GAN's facial-component keys are accepted and ignored.
DATASET_OPTIONS = ('name', 'type', 'phase', 'scale', 'dataroot_gt', 'io_backend', 'out_size', 'mean', 'std', 'seed',
                   'skip_bad_images', 'degradation_on_device')
LOADER_OPTIONS = ('use_shuffle', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode',
                  'num_prefetch_queue', 'pin_memory', 'persistent_workers')
GFPGAN_COMPONENT_OPTIONS = ('crop_components', 'component_path', 'eye_enlarge_ratio')


def _is_half(values):
    return values is not None and all(float(v) == 0.5 for v in values)


def image_to_tensor(img, mean=None, std=None):
    """float32 BGR HxWxC -> RGB CxHxW tensor, normalised as ``(x - mean) / std`` when given."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 3:
        img = img[:, :, ::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    if mean is not None or std is not None:
        channels = tensor.shape[0]
        mean = torch.tensor(mean if mean is not None else [0.0] * channels, dtype=tensor.dtype).view(-1, 1, 1)
        std = torch.tensor(std if std is not None else [1.0] * channels, dtype=tensor.dtype).view(-1, 1, 1)
        tensor.sub_(mean).div_(std)
    return tensor


def resize_square(img, size):
    """Resize to ``size`` x ``size``: area averaging to shrink, bicubic (clipped) to enlarge."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    shrink = size * size < h * w
    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out if shrink else np.clip(out, 0.0, 1.0, out=out)


def check_known_options(cls, opt):
    """ValueError naming the first key of ``opt`` that is not in ``cls.OPTIONS`` (the option check of
    ``dlst-train`` reads the same ``OPTIONS`` to name misspelt keys before anything is built)."""
    unknown = sorted(set(opt) - set(cls.OPTIONS))
    if unknown:
        raise ValueError(f'{cls.__name__}: unknown option {unknown[0]!r}; known options: '
                         f'{", ".join(sorted(cls.OPTIONS))}')


def _check_norm(opt, key):
    value = opt.get(key)
    if value is not None and (not isinstance(value, (list, tuple)) or len(value) != 3):
        raise ValueError(f'DegradedFaceDataset: {key} must be a list of 3 numbers (RGB) or null, got {value!r}')
    if key == 'std' and value is not None and any(v == 0 for v in value):
        raise ValueError(f'DegradedFaceDataset: std must not contain 0, got {value!r}')
    return None if value is None else [float(v) for v in value]


class SeededSamples:
    """``sample_rng(index)``: a fresh numpy Generator per sample, from (seed, rank, DataLoader worker seed,
    draw count, index) in training, so no two draws repeat; from (seed, index) in validation and test sets
    (BasicSR sets ``phase``), so they are the same at every pass."""

    def init_sample_seeds(self, opt):
        seed = opt.get('seed')
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f'{type(self).__name__}: seed must be a non-negative integer or null, got {seed!r}')
        self.seed = torch.initial_seed() if seed is None else seed
        self.rank = get_dist_info()[0]
        self._draws = 0
        self.fixed = opt.get('phase', 'train') != 'train'

    def sample_rng(self, index):
        if self.fixed:
            return np.random.default_rng([self.seed, index])
        worker = data.get_worker_info()
        self._draws += 1
        return np.random.default_rng([self.seed, self.rank, 0 if worker is None else worker.seed, self._draws, index])


@DATASET_REGISTRY.register()
class DegradedFaceDataset(SeededSamples, data.Dataset):
    """HQ faces (folder or LMDB) -> ``{'lq', 'gt', 'lq_path', 'gt_path'}`` with GFP-GAN's degradation.

    Options (a GFP-GAN ``FFHQDegradationDataset`` block works as is):
        dataroot_gt, io_backend: the HQ faces, ``io_backend.type`` ``disk`` or ``lmdb``.
        out_size: side of the returned images; other sizes are resized (null: keep the size).
        mean, std: RGB normalisation of both tensors (GFP-GAN: 0.5, 0.5 -> [-1, 1]).
        the degradation keys of ``FaceDegradation`` (GFP-GAN's names; missing ones take the
            defaults of GFP-GAN's ``train_gfpgan_v1.yml``), including ``use_hflip`` and ``gt_gray``.
        seed: base seed of the per-sample RNGs (default: torch's seed when the dataset is built,
            which BasicSR sets from ``manual_seed`` + rank).
        skip_bad_images: log and skip unreadable images instead of stopping (default false).
        degradation_on_device: leave the degradation to the model (default false): samples are
            ``{'gt', 'gt_path', 'lq_path', 'degradation'}``, ``gt`` the HQ face (normalised, not flipped)
            and ``degradation`` the parameters drawn for it, packed by
            ``dlst_plugin.data.device_degradation.pack`` for ``device_degradation.degrade_batch``.

    Each ``__getitem__`` seeds ``numpy.random.default_rng`` from (seed, rank, the DataLoader
    worker's seed, which torch draws anew every epoch, a per-worker draw counter, index): runs with
    the same seed and loader settings repeat, while workers, epochs and repeated indices differ.
    Validation and test sets (BasicSR's ``phase`` is not ``train``) seed from (seed, index) only:
    every validation of a run sees the same degraded inputs, so its metrics compare along the run.
    """

    OPTIONS = DATASET_OPTIONS + LOADER_OPTIONS + GFPGAN_COMPONENT_OPTIONS + FaceDegradation.option_names()

    def __init__(self, opt):
        super().__init__()
        check_known_options(type(self), opt)
        self.opt = opt
        self.degradation = FaceDegradation.from_opt(opt, strict=False)
        self.mean = _check_norm(opt, 'mean')
        self.std = _check_norm(opt, 'std')
        out_size = opt.get('out_size')
        if out_size is not None and (not isinstance(out_size, int) or isinstance(out_size, bool) or out_size < 1):
            raise ValueError(f'DegradedFaceDataset: out_size must be a positive integer or null, got {out_size!r}')
        self.out_size = out_size
        self.source = FaceImageSource(opt.get('dataroot_gt'), opt.get('io_backend'),
                                      skip_bad_images=opt.get('skip_bad_images', False), option='dataroot_gt')
        self.init_sample_seeds(opt)
        self.on_device = opt.get('degradation_on_device', False)
        if not isinstance(self.on_device, bool):
            raise ValueError(f'DegradedFaceDataset: degradation_on_device must be true or false, '
                             f'got {self.on_device!r}')
        if self.on_device and not (_is_half(self.mean) and _is_half(self.std)):
            raise ValueError('DegradedFaceDataset: degradation_on_device needs mean and std [0.5, 0.5, 0.5] (the '
                             f'model maps gt from [-1, 1] back to [0, 1] to degrade it); got {self.mean}, {self.std}')
        logger = get_root_logger()
        if opt.get('crop_components'):
            logger.warning('DegradedFaceDataset returns no facial component boxes; crop_components is ignored.')
        logger.info(f'DegradedFaceDataset: {len(self.source)} faces from {self.source.root} '
                    f'({self.source.backend}), out_size {self.out_size}, {self.degradation}'
                    f'{" (applied on the device)" if self.on_device else ""}')

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        index, img_gt = self.source.read_or_skip(index)
        if self.out_size is not None:
            img_gt = resize_square(img_gt, self.out_size)
        path = self.source.path(index)
        if self.on_device:  # the same draws as below; the model applies them (device_degradation.degrade_batch)
            params = self.degradation.sample(self.sample_rng(index))
            return {'gt': image_to_tensor(img_gt, self.mean, self.std), 'gt_path': path, 'lq_path': path,
                    'degradation': pack(params, img_gt.shape[:2])}
        img_lq, img_gt = degrade(img_gt, self.sample_rng(index), self.degradation)
        return {
            'lq': image_to_tensor(img_lq, self.mean, self.std),
            'gt': image_to_tensor(img_gt, self.mean, self.std),
            'lq_path': path,
            'gt_path': path,
        }
