"""``DegradedFaceDataset``: HQ faces and their GFP-GAN-degraded LQ versions (docs/design.md#second-order-set).

A drop-in for GFP-GAN's ``FFHQDegradationDataset`` option block (same keys; the degradation is
``dlst_plugin.data.degradations``), plus: folders are scanned recursively, images of another size
are resized to ``out_size``, bad images raise an error naming them (or are skipped with
``skip_bad_images: true``), and every sample draws from its own seeded RNG.
"""
import dataclasses
from typing import Optional, Tuple

import cv2
import numpy as np
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from dlst_plugin.data.degradations import FaceDegradation, degrade
from dlst_plugin.data.device_degradation import pack
from dlst_plugin.data.face_components import ComponentBoxes
from dlst_plugin.data.face_image_source import FaceImageSource
from dlst_plugin.options.blocks import DATASET_PASSED_THROUGH
from dlst_plugin.options.schema import Block, Range, option

RGB = Tuple[float, float, float]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FaceSetOptions(Block):
    """What every face dataset of the plugin reads besides its data roots (and BasicSR's loader keys)."""
    PASSED_THROUGH = DATASET_PASSED_THROUGH
    io_backend: Optional[dict] = option(None, doc='{type: disk} or {type: lmdb}; ~: lmdb for a folder with data.mdb, '
                                                  'else disk')
    out_size: Optional[int] = option(None, Range(1), 'side of the returned faces (others are resized); ~: as stored')
    mean: Optional[RGB] = option(None, doc='RGB normalisation (x - mean) / std of both tensors (GFP-GAN: 0.5)')
    std: Optional[RGB] = option(None, doc='RGB normalisation (non-zero; GFP-GAN: 0.5 -> [-1, 1])')
    seed: Optional[int] = option(None, Range(0), 'base seed of the per-sample RNGs; ~: torch\'s seed (manual_seed + '
                                                 'rank)')
    skip_bad_images: bool = option(False, doc='log and skip unreadable images instead of stopping')
    crop_components: bool = option(False, doc='add GFP-GAN\'s eye and mouth boxes (loc_left_eye, loc_right_eye, '
                                              'loc_mouth)')
    component_path: Optional[str] = option(None, doc='GFP-GAN\'s landmark file; ~: the alignment template\'s boxes')
    eye_enlarge_ratio: float = option(1.0, Range(0, lo_open=True), 'eye boxes enlarged by this (GFP-GAN\'s recipe: '
                                                                   '1.4)')
    degradation: FaceDegradation = option(factory=FaceDegradation, flatten=True,
                                          doc='GFP-GAN\'s degradation recipe, its keys at this level')

    def __post_init__(self):
        if self.std is not None and 0 in self.std:
            raise ValueError(f'std must not contain 0, got {list(self.std)}')


@dataclasses.dataclass(frozen=True, kw_only=True)
class DegradedFaceOptions(FaceSetOptions):
    """``DegradedFaceDataset``: HQ faces and GFP-GAN's degradation of them (a GFP-GAN ``FFHQDegradationDataset``
    block works as it is)."""
    dataroot_gt: str = option(doc='the HQ faces: a folder (scanned recursively) or a BasicSR LMDB')
    degradation_on_device: bool = option(False, doc='leave the degradation to the model (batched on the device; '
                                                    'needs mean and std 0.5)')

    def __post_init__(self):
        super().__post_init__()
        half = all(v == 0.5 for v in (self.mean or ())) and all(v == 0.5 for v in (self.std or ()))
        if self.degradation_on_device and not (self.mean and self.std and half):
            raise ValueError('degradation_on_device needs mean and std [0.5, 0.5, 0.5] (the model maps gt from [-1, 1] '
                             'back to [0, 1] to degrade it)')


def dataset_where(opt):
    """How errors name a dataset block: ``datasets.<phase>`` (BasicSR adds ``phase``)."""
    return f'datasets.{opt.get("phase", "train")}'


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


class SeededSamples:
    """``sample_rng(index)``: a fresh numpy Generator per sample, from (seed, rank, DataLoader worker seed,
    draw count, index) in training, so no two draws repeat; from (seed, index) in validation and test sets
    (BasicSR sets ``phase``), so they are the same at every pass."""

    def init_sample_seeds(self, seed, phase):
        """``seed``: the block's (decoded, checked) seed or None; ``phase``: BasicSR's ``train``/``val``/``test``."""
        self.seed = torch.initial_seed() if seed is None else seed
        self.rank = get_dist_info()[0]
        self._draws = 0
        self.fixed = phase != 'train'

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
        crop_components, component_path, eye_enlarge_ratio: GFP-GAN's keys; with ``crop_components``
            samples add ``loc_left_eye``, ``loc_right_eye``, ``loc_mouth`` (GFPGANModel's eye and mouth
            boxes, flipped with the face) from GFP-GAN's landmark file ``component_path``, keyed by the
            face's index, or without one from the alignment template (``dlst_plugin.data.face_components``).

    Each ``__getitem__`` seeds ``numpy.random.default_rng`` from (seed, rank, the DataLoader
    worker's seed, which torch draws anew every epoch, a per-worker draw counter, index): runs with
    the same seed and loader settings repeat, while workers, epochs and repeated indices differ.
    Validation and test sets (BasicSR's ``phase`` is not ``train``) seed from (seed, index) only:
    every validation of a run sees the same degraded inputs, so its metrics compare along the run.
    """

    OPTIONS = DegradedFaceOptions

    def __init__(self, opt):
        super().__init__()
        options = DegradedFaceOptions.decode(opt, dataset_where(opt))
        self.opt = opt
        self.degradation = options.degradation
        self.mean = None if options.mean is None else list(options.mean)
        self.std = None if options.std is None else list(options.std)
        self.out_size = options.out_size
        self.source = FaceImageSource(options.dataroot_gt, options.io_backend, skip_bad_images=options.skip_bad_images,
                                      option='dataroot_gt')
        self.init_sample_seeds(options.seed, opt.get('phase', 'train'))
        self.on_device = options.degradation_on_device
        self.components = ComponentBoxes(options, 'DegradedFaceDataset')
        self.components.check_covers(len(self.source), self.source.root)
        get_root_logger().info(f'DegradedFaceDataset: {len(self.source)} faces from {self.source.root} '
                               f'({self.source.backend}), out_size {self.out_size}, {self.degradation}'
                               f'{" (applied on the device)" if self.on_device else ""}'
                               f'{", " + self.components.describe() if self.components.enabled else ""}')

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        index, img_gt = self.source.read_or_skip(index)
        stored_size = img_gt.shape[1]
        if self.out_size is not None:
            img_gt = resize_square(img_gt, self.out_size)
        path = self.source.path(index)
        if self.on_device:  # the same draws as below; the model applies them (device_degradation.degrade_batch)
            params = self.degradation.sample(self.sample_rng(index))
            return {'gt': image_to_tensor(img_gt, self.mean, self.std), 'gt_path': path, 'lq_path': path,
                    'degradation': pack(params, img_gt.shape[:2]),
                    **self.components.locations(index, stored_size, img_gt.shape[1], params.hflip)}
        img_lq, img_gt, params = degrade(img_gt, self.sample_rng(index), self.degradation, return_params=True)
        return {
            'lq': image_to_tensor(img_lq, self.mean, self.std),
            'gt': image_to_tensor(img_gt, self.mean, self.std),
            'lq_path': path,
            'gt_path': path,
            **self.components.locations(index, stored_size, img_gt.shape[1], params.hflip),
        }
