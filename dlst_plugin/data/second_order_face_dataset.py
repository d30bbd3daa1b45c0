"""``SecondOrderFaceDataset``: the Skip-Transformer's training set (paper 3.2.4 and 4.4.1;
docs/design.md#second-order-set).

``mode: second_order`` (the paper's "Method (2)", default), two sources mixed by
``ratio`` (default 0.5):
  (a) generated pairs: input = GFP-GAN degradation of the *degraded* (green) face, target = clean (red) face;
  (b) FFHQ: input = GFP-GAN degradation of the HQ face, target = HQ face.
``mode: method1`` (ablation, Table 3): only generated faces;
  (a) clean face + GFP-GAN degradation as input, target clean;
  (b) the green degraded face as input, no further degradation, target clean.
The GFP-GAN recipe is ``dlst_plugin.data.degradations`` (source (b) of second_order and (a) of
method1 are ``DegradedFaceDataset`` itself).
"""
import dataclasses
import math
import os.path as osp
from typing import List, Literal, Optional, Union

import numpy as np
from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from dlst_plugin.data import image_ops
from dlst_plugin.data.degradations import degrade
from dlst_plugin.data.degraded_face_dataset import (
    DegradedFaceDataset,
    FaceSetOptions,
    SeededSamples,
    dataset_where,
    image_to_tensor,
    resize_square,
)
from dlst_plugin.data.face_components import ComponentBoxes
from dlst_plugin.data.face_image_source import FaceImageSource
from dlst_plugin.options.schema import Range, option

ROOTS = Union[str, List[str]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SecondOrderOptions(FaceSetOptions):
    """``SecondOrderFaceDataset``: generated pairs and FFHQ, degraded a second time (paper 3.2.4, 4.4.1)."""
    mode: Literal['second_order', 'method1'] = option('second_order', doc='second_order: the paper\'s set; method1: '
                                                                          'Table 3\'s ablation')
    dataroot_clean: ROOTS = option(doc='clean faces of dlst-generate-pairs (LMDB or folder; a list for shards)')
    dataroot_degraded: ROOTS = option(doc='their degraded faces, the same keys (a list in the same order)')
    dataroot_hq: Optional[str] = option(None, doc='FFHQ faces (second_order; component_path applies to them)')
    ratio: float = option(0.5, Range(0, 1), 'share of generated pairs (method1: of clean faces + GFP-GAN\'s '
                                            'degradation); 1 or 0: one source only')

    def __post_init__(self):
        super().__post_init__()
        if self.mode == 'second_order' and self.ratio < 1 and self.dataroot_hq is None:
            raise ValueError('dataroot_hq: missing: mode second_order with ratio < 1 mixes in FFHQ faces')


def backend_of(root, io_backend=None):
    """``io_backend`` if given, else ``lmdb`` for a folder holding ``data.mdb`` and ``disk`` otherwise."""
    if io_backend:
        return dict(io_backend)
    return {'type': 'lmdb' if osp.isfile(osp.join(osp.expanduser(str(root)), 'data.mdb')) else 'disk'}


class GeneratedPairs(data.Dataset):
    """(clean, degraded) pairs written by ``dlst-generate-pairs``: two folders or LMDBs with the same
    keys, or lists of them (one per shard). ``sample(index, recipe)`` makes a training pair, target
    always the clean face; input by recipe:

    * ``second_order``: GFP-GAN's degradation of the degraded face (the clean target takes its
      flip and gray choices);
    * ``clean_gfpgan``: GFP-GAN's degradation of the clean face (Method (1));
    * ``green``: the degraded face as it is, flipped with the target (Method (1)).

    One object serves every recipe: an LMDB may be opened only once per process."""

    RECIPES = ('second_order', 'clean_gfpgan', 'green')

    def __init__(self, opt, degradation, sample_rng):
        """``opt``: the dataset's decoded :class:`SecondOrderOptions`."""
        cleans, degradeds = _as_list(opt.dataroot_clean), _as_list(opt.dataroot_degraded)
        if len(cleans) != len(degradeds):
            raise ValueError(f'dataroot_clean and dataroot_degraded must list as many folders: {len(cleans)} vs '
                             f'{len(degradeds)}')
        self.parts = [self._open_pair(c, d, opt) for c, d in zip(cleans, degradeds)]
        self.offsets = np.cumsum([0] + [len(part[0]) for part in self.parts])
        self.degradation = degradation
        self.sample_rng = sample_rng
        self.out_size = opt.out_size
        self.mean, self.std = opt.mean, opt.std
        self.components = ComponentBoxes(opt, 'SecondOrderFaceDataset', use_file=False)  # generated: the template

    @staticmethod
    def _open_pair(clean_root, degraded_root, opt):
        io_backend, skip = opt.io_backend, opt.skip_bad_images
        clean = FaceImageSource(clean_root, backend_of(clean_root, io_backend), skip, option='dataroot_clean')
        degraded = FaceImageSource(degraded_root, backend_of(degraded_root, io_backend), skip,
                                   option='dataroot_degraded')
        degraded_index = {key: i for i, key in enumerate(degraded.keys)}
        missing = [key for key in clean.keys if key not in degraded_index]
        extra = sorted(set(degraded.keys) - set(clean.keys))
        if missing or extra:
            raise ValueError(f'{clean_root} and {degraded_root} must hold the same keys: {len(missing)} clean key(s) '
                             f'have no degraded face (first: {missing[:1]}), {len(extra)} degraded key(s) have no '
                             f'clean face (first: {extra[:1]})')
        return clean, degraded, degraded_index

    def __len__(self):
        return int(self.offsets[-1])

    def sample(self, index, recipe):
        part = int(np.searchsorted(self.offsets, index, side='right')) - 1
        clean_source, degraded_source, degraded_index = self.parts[part]
        inner, clean = clean_source.read_or_skip(index - int(self.offsets[part]))
        clean = self._resized(clean)
        rng = self.sample_rng(index)
        if recipe == 'clean_gfpgan':
            lq, clean, params = degrade(clean, rng, self.degradation, return_params=True)
            lq_path, flipped = clean_source.path(inner), params.hflip
        else:
            d_inner = degraded_index[clean_source.keys[inner]]
            degraded = self._resized(degraded_source.read(d_inner))
            lq_path = degraded_source.path(d_inner)
            if recipe == 'second_order':
                lq, _, params = degrade(degraded, rng, self.degradation, return_params=True)
                flipped = params.hflip
                # the target takes the flip and gray choices apply_degradation gives its own gt
                if params.hflip:
                    clean = clean[:, ::-1]
                if params.gray and params.gt_gray:
                    clean = image_ops.to_gray(clean)
            else:
                lq = degraded
                flipped = bool(self.degradation.use_hflip and rng.random() < 0.5)
                if flipped:
                    lq, clean = lq[:, ::-1], clean[:, ::-1]
        return {'lq': image_to_tensor(lq, self.mean, self.std), 'gt': image_to_tensor(clean, self.mean, self.std),
                'lq_path': lq_path, 'gt_path': clean_source.path(inner),
                **self.components.locations(index, clean.shape[1], clean.shape[1], flipped)}

    def _resized(self, img):
        return img if self.out_size is None else resize_square(img, self.out_size)


class PairRecipe(data.Dataset):
    """``GeneratedPairs`` seen through one recipe."""

    def __init__(self, pairs, recipe):
        self.pairs, self.recipe = pairs, recipe

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        return self.pairs.sample(index, self.recipe)


def _as_list(roots):
    return list(roots) if isinstance(roots, (list, tuple)) else [roots]


@DATASET_REGISTRY.register()
class SecondOrderFaceDataset(SeededSamples, data.Dataset):
    """Generated pairs and FFHQ, degraded a second time (see the module docstring).

    Options:
        mode: ``second_order`` (default) or ``method1``.
        dataroot_clean, dataroot_degraded: the pairs of ``dlst-generate-pairs`` (LMDBs or folders; lists
            of them for the shards of a sharded run, in the same order).
        dataroot_hq: FFHQ faces (``second_order`` only).
        ratio: share of source (a) in the mix (default 0.5); 1 or 0 uses one source only.
        io_backend: optional; by default each root is an LMDB when it holds ``data.mdb``, else a folder.
        out_size, mean, std, seed, skip_bad_images: as ``DegradedFaceDataset``; and the
            degradation keys of ``FaceDegradation`` (GFP-GAN's names and defaults).
        crop_components, eye_enlarge_ratio: as ``DegradedFaceDataset`` (``loc_*`` eye and mouth boxes for
            GFPGANModel); generated faces take the alignment template's boxes, FFHQ faces those of
            ``component_path`` (GFP-GAN's landmark file for ``dataroot_hq``) when it is set, else the template's.

    Sample ``i`` of an epoch comes from source (a) when ``floor((i + 1) r) > floor(i r)``, so
    an epoch holds the ratio exactly (to one sample) whatever the shuffling; the length
    is the smallest that shows every image of both sources once.
    """

    OPTIONS = SecondOrderOptions

    def __init__(self, opt):
        super().__init__()
        options = SecondOrderOptions.decode(opt, dataset_where(opt))
        self.mode, self.ratio = options.mode, options.ratio
        self.init_sample_seeds(options.seed, opt.get('phase', 'train'))
        degradation = options.degradation
        pairs = GeneratedPairs(options, degradation, self.sample_rng)
        if self.mode == 'second_order':
            hq = _degraded_faces(options, self.seed, opt.get('phase', 'train')) if self.ratio < 1 else None
            self.sources = (PairRecipe(pairs, 'second_order'), hq)
            self.names = ('generated', 'ffhq')
        else:
            self.sources = (PairRecipe(pairs, 'clean_gfpgan'), PairRecipe(pairs, 'green'))
            self.names = ('clean_gfpgan', 'green')
        self.length = _mixed_length([len(s) if s is not None else 0 for s in self.sources], self.ratio)
        get_root_logger().info(f'SecondOrderFaceDataset ({self.mode}): {self.names[0]} {len(self.sources[0] or [])}, '
                               f'{self.names[1]} {len(self.sources[1] or [])}, ratio {self.ratio}, {self.length} '
                               f'samples an epoch')

    def __len__(self):
        return self.length

    def locate(self, index):
        """(source number, index inside that source) of sample ``index``."""
        before = math.floor(index * self.ratio)
        if math.floor((index + 1) * self.ratio) > before:
            return 0, before % len(self.sources[0])
        return 1, (index - before) % len(self.sources[1])

    def __getitem__(self, index):
        which, inner = self.locate(index)
        sample = self.sources[which][inner]
        sample['source'] = self.names[which]
        return sample


def _degraded_faces(options, seed, phase):
    """FFHQ + GFP-GAN degradation: ``DegradedFaceDataset`` itself, with this block's shared options."""
    shared = {k: v for k, v in options.to_dict().items() if k in FaceSetOptions.keys()}
    root = options.dataroot_hq
    return DegradedFaceDataset(dict(shared, dataroot_gt=root, io_backend=backend_of(root, options.io_backend),
                                    seed=seed, phase=phase))


def _mixed_length(sizes, ratio):
    if ratio >= 1:
        return sizes[0]
    if ratio <= 0:
        return sizes[1]
    return max(math.ceil(sizes[0] / ratio), math.ceil(sizes[1] / (1 - ratio)))
