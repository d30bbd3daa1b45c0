"""``UnpairedFaceDataset``: real LQ faces for degradation learning (paper 3.2.1-3.2.2;
docs/design.md#degradation-learning).

The degrader is trained unpaired: the data loader brings only real LQ faces (collected from
WIDER Face, ``dlst-collect-lq-faces``), resized to the generator's size; the model samples z.
"""
import random

from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from dlst_plugin.data.degraded_face_dataset import LOADER_OPTIONS, check_known_options, image_to_tensor, resize_square
from dlst_plugin.data.face_image_source import FaceImageSource

GENERATOR_RANGE_MEAN_STD = [0.5, 0.5, 0.5]  # (x - 0.5) / 0.5: [0, 1] -> [-1, 1], the generator's range
OPTIONS = ('name', 'type', 'phase', 'scale', 'dataroot_lq', 'io_backend', 'out_size', 'use_hflip', 'mean', 'std',
           'skip_bad_images') + LOADER_OPTIONS


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

    OPTIONS = OPTIONS

    def __init__(self, opt):
        super().__init__()
        check_known_options(type(self), opt)
        out_size = opt.get('out_size')
        if not isinstance(out_size, int) or isinstance(out_size, bool) or out_size < 1:
            raise ValueError(f'UnpairedFaceDataset: out_size must be the generator size (a positive integer), '
                             f'got {out_size!r}')
        self.out_size = out_size
        self.use_hflip = bool(opt.get('use_hflip', True))
        self.mean = _rgb_triplet(opt, 'mean')
        self.std = _rgb_triplet(opt, 'std')
        self.source = FaceImageSource(opt.get('dataroot_lq'), opt.get('io_backend'),
                                      skip_bad_images=opt.get('skip_bad_images', False), option='dataroot_lq')
        get_root_logger().info(f'UnpairedFaceDataset: {len(self.source)} real LQ faces from {self.source.root} '
                               f'({self.source.backend}), resized to {out_size} px')

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        index, img = self.source.read_or_skip(index)
        img = resize_square(img, self.out_size)
        if self.use_hflip and random.random() < 0.5:
            img = img[:, ::-1]
        return {'lq': image_to_tensor(img, self.mean, self.std), 'lq_path': self.source.path(index)}


def _rgb_triplet(opt, key):
    value = opt.get(key, GENERATOR_RANGE_MEAN_STD)
    if not isinstance(value, (list, tuple)) or len(value) != 3 or (key == 'std' and 0 in value):
        raise ValueError(f'UnpairedFaceDataset: {key} must be 3 numbers (RGB{", non-zero" if key == "std" else ""}), '
                         f'got {value!r}')
    return [float(v) for v in value]
