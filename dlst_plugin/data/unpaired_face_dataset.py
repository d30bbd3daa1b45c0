"""``UnpairedFaceDataset``: real LQ faces for degradation learning (paper 3.2.1-3.2.2;
docs/design.md#degradation-learning).

The degrader is trained unpaired: the data loader brings only real LQ faces (collected from
WIDER Face, ``dlst-collect-lq-faces``), resized to the generator's size; the model samples z.
"""
import dataclasses
import random
from typing import Optional, Tuple

from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from dlst_plugin.data.degraded_face_dataset import dataset_where, image_to_tensor, resize_square
from dlst_plugin.data.face_image_source import FaceImageSource
from dlst_plugin.options.blocks import DATASET_PASSED_THROUGH, RGB_HALF
from dlst_plugin.options.schema import Block, Range, option


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnpairedFaceOptions(Block):
    """``UnpairedFaceDataset``: real LQ faces (degradation learning), resized to the generator's size."""
    PASSED_THROUGH = DATASET_PASSED_THROUGH
    dataroot_lq: str = option(doc='the real LQ faces: a folder (scanned recursively) or a BasicSR LMDB')
    io_backend: Optional[dict] = option(None, doc='{type: disk} or {type: lmdb}; ~: from the data root')
    out_size: int = option(doc='the generator\'s size; every face is resized to it', rule=Range(1))
    use_hflip: bool = option(True, doc='random horizontal flip')
    mean: Tuple[float, float, float] = option(RGB_HALF, doc='RGB normalisation (0.5: [-1, 1], the generator\'s range)')
    std: Tuple[float, float, float] = option(RGB_HALF, doc='RGB normalisation (non-zero)')
    skip_bad_images: bool = option(False, doc='log and skip unreadable files instead of stopping')

    def __post_init__(self):
        if 0 in self.std:
            raise ValueError(f'std must not contain 0, got {list(self.std)}')


@DATASET_REGISTRY.register()
class UnpairedFaceDataset(data.Dataset):
    """Real LQ faces (folder or BasicSR LMDB) -> ``{'lq': RGB tensor, 'lq_path': str}``.

    Options:
        dataroot_lq, io_backend: the faces; ``io_backend.type`` ``disk`` (recursive folder) or ``lmdb``.
        out_size (int, required): the generator's size; every face is resized to it (area to
            shrink, bicubic to enlarge).
        use_hflip (bool): random horizontal flip (default true; BasicSR's ``augment``, seeded by
            its per-worker seeding).
        mean, std: RGB normalisation (default 0.5, 0.5: [-1, 1], the generator's range).
        skip_bad_images (bool): log and skip unreadable files instead of stopping (default false).
    """

    OPTIONS = UnpairedFaceOptions

    def __init__(self, opt):
        super().__init__()
        options = UnpairedFaceOptions.decode(opt, dataset_where(opt))
        self.out_size, self.use_hflip = options.out_size, options.use_hflip
        self.mean, self.std = list(options.mean), list(options.std)
        self.source = FaceImageSource(options.dataroot_lq, options.io_backend, skip_bad_images=options.skip_bad_images,
                                      option='dataroot_lq')
        get_root_logger().info(f'UnpairedFaceDataset: {len(self.source)} real LQ faces from {self.source.root} '
                               f'({self.source.backend}), resized to {self.out_size} px')

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        index, img = self.source.read_or_skip(index)
        img = resize_square(img, self.out_size)
        if self.use_hflip and random.random() < 0.5:
            img = img[:, ::-1]
        return {'lq': image_to_tensor(img, self.mean, self.std), 'lq_path': self.source.path(index)}

