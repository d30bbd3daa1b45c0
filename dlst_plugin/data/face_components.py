"""Eye and mouth boxes of aligned faces, as GFP-GAN's ``GFPGANModel`` reads them (docs/table1.md#component-boxes).

GFP-GAN's training set hands its model three boxes per face, ``loc_left_eye``, ``loc_right_eye`` and
``loc_mouth`` (``[x1, y1, x2, y2]`` in pixels of the returned face; "left" is the eye on the image's
left), for the facial-component discriminators and their style loss. They come from one of two places:

* **a component file** (``component_path``): GFP-GAN's own format, e.g. its
  ``FFHQ_eye_mouth_landmarks_512.pth``: ``{'00000000': {'left_eye': [cx, cy, half_len], 'right_eye': [...],
  'mouth': [...]}, ...}``, keyed by the dataset index written with eight digits, in pixels of the stored
  image (FFHQ 512 px). They are scaled when a face is resized to another ``out_size``.
* **the alignment template** (no file): the faces the plugin trains on are aligned to the five-point
  FFHQ template (:mod:`dlst_plugin.faces.alignment`), and the faces a StyleGAN2 prior generates follow
  FFHQ's alignment, whose mean the template is; the boxes are those of the template's own points
  (:func:`boxes_from_points`). docs/table1.md gives how far they land from detected landmarks.

A box is ``(centre - half_len + 1, centre + half_len)`` on both axes, the eyes' ``half_len`` multiplied
by ``eye_enlarge_ratio`` (GFP-GAN's recipe: 1.4), and mirrored with the face when it is flipped
(the two eyes swap names).
"""
import functools
import os
from types import MappingProxyType

import numpy as np
import torch

from dlst_plugin.errors import ConfigError

PARTS = ('left_eye', 'right_eye', 'mouth')
# a 5-point eye box's half side, as a share of the distance between the eye centres: the eye fissure is
# about 0.46 of the interpupillary distance in adults (~29 of ~63 mm), which on the 512 px template gives
# a 58 px eye before enlarging, 81 px after GFP-GAN's 1.4 (GFP-GAN resizes eye crops to 80 px)
EYE_HALF_RATIO = 0.23
MIN_HALF_LEN_512 = 16  # GFP-GAN's floor on half_len, at 512 px


def boxes_from_points(points, size):
    """``{part: (cx, cy, half_len)}`` from five landmarks (eyes, nose, mouth corners; the template's order)
    of a ``size`` px face: the eye points are the eye centres, half the eye distance times
    :data:`EYE_HALF_RATIO` is an eye's half side; the mouth is centred between its corners and as wide
    as they are apart (what the 68-point box of GFP-GAN's file spans). ``half_len`` is at least
    16 px at 512 (GFP-GAN's floor), scaled with ``size``."""
    p = np.asarray(points, np.float64).reshape(5, 2)
    floor = MIN_HALF_LEN_512 * size / 512
    eye_half = max(EYE_HALF_RATIO * float(np.linalg.norm(p[1] - p[0])), floor)
    mouth = (p[3] + p[4]) / 2
    mouth_half = max(float(np.linalg.norm(p[4] - p[3])) / 2, floor)
    return {'left_eye': (p[0, 0], p[0, 1], eye_half), 'right_eye': (p[1, 0], p[1, 1], eye_half),
            'mouth': (mouth[0], mouth[1], mouth_half)}


@functools.lru_cache(maxsize=16)
def template_boxes(size):
    """The boxes of the FFHQ alignment template at ``size`` px, computed once per size (a dataset without a
    component file asks for them per sample): a read-only mapping, shared by every caller."""
    from dlst_plugin.faces.alignment import face_template  # dlst_plugin.faces stays out of the plugin's import
    return MappingProxyType(boxes_from_points(face_template(size), size))


def flip_boxes(boxes, width):
    """The boxes of the face mirrored left-right (``x -> width - x``, as GFP-GAN); the eyes swap names."""
    mirrored = {part: (width - cx, cy, half) for part, (cx, cy, half) in boxes.items()}
    return {'left_eye': mirrored['right_eye'], 'right_eye': mirrored['left_eye'], 'mouth': mirrored['mouth']}


def scale_boxes(boxes, factor):
    return {part: tuple(float(v) * factor for v in box) for part, box in boxes.items()}


def box_corners(box, enlarge=1.0):
    """``[x1, y1, x2, y2]`` of ``(cx, cy, half_len)``, GFP-GAN's way: ``centre - half + 1`` to ``centre + half``."""
    cx, cy, half = (float(v) for v in box)
    half *= enlarge
    return [cx - half + 1, cy - half + 1, cx + half, cy + half]


def component_locations(boxes, eye_enlarge_ratio=1.0):
    """The sample keys GFPGANModel reads: ``{'loc_left_eye': float32 tensor (4,), ...}``."""
    return {f'loc_{part}': torch.tensor(box_corners(boxes[part], eye_enlarge_ratio if 'eye' in part else 1.0),
                                        dtype=torch.float32) for part in PARTS}


def _numpy_scalar_globals():
    """What torch's safe unpickler must allow to read numpy float scalars (GFP-GAN's file stores np.float64)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed = [scalar, (scalar, 'numpy.core.multiarray.scalar'), (scalar, 'numpy._core.multiarray.scalar'), np.dtype]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [dtypes.Float64DType, dtypes.Float32DType]
    return allowed


def _entry_boxes(entry):
    boxes = {part: tuple(float(v) for v in entry[part]) for part in PARTS}
    if any(len(box) != 3 for box in boxes.values()):
        raise ValueError('not three numbers')
    return boxes


def read_component_file(path):
    """``{index: {part: (cx, cy, half_len)}}`` from a GFP-GAN component file (read with ``weights_only=True``);
    ConfigError naming the file and entry when it is not one."""
    from dlst_plugin.checkpoints.reading import read_checkpoint
    with torch.serialization.safe_globals(_numpy_scalar_globals()):
        raw = read_checkpoint(path)
    boxes = {}
    for key, entry in raw.items():
        try:
            boxes[int(key)] = _entry_boxes(entry)
        except (TypeError, KeyError, ValueError, IndexError):
            raise ConfigError(f'component_path {path}: entry {key!r} is not GFP-GAN\'s {{"left_eye": [cx, cy, '
                              'half_len], "right_eye": [...], "mouth": [...]} keyed by an 8-digit index') from None
    return boxes


class ComponentBoxes:
    """The ``loc_*`` keys of a dataset's samples, from its decoded options (``FaceSetOptions``):
    ``crop_components`` (no boxes when false), ``component_path`` (GFP-GAN's file; None: the alignment
    template) and ``eye_enlarge_ratio``."""

    def __init__(self, options, owner, use_file=True):
        self.enabled = options.crop_components
        self.eye_enlarge_ratio = options.eye_enlarge_ratio
        path = options.component_path if use_file else None
        self.path = path if self.enabled else None
        if self.path and not os.path.isfile(os.path.expanduser(str(self.path))):
            raise ConfigError(f'{owner}: component_path {path}: file not found (GFP-GAN\'s landmark file, e.g. '
                              'FFHQ_eye_mouth_landmarks_512.pth; ~ uses the alignment template\'s boxes)')
        self.by_index = read_component_file(path) if self.enabled and path else None
        self.owner = owner

    def check_covers(self, count, root):
        """ConfigError unless the component file has an entry for each of the ``count`` faces of ``root``."""
        missing = [i for i in range(count) if i not in self.by_index] if self.by_index is not None else []
        if missing:
            raise ConfigError(f'{self.owner}: component_path {self.path} has no entry for {len(missing)} of the '
                              f'{count} faces of {root} (first: {missing[0]:08d}); it must hold one per face, keyed '
                              'by the face\'s index in the data root (GFP-GAN\'s FFHQ file: FFHQ\'s order)')

    def describe(self):
        if not self.enabled:
            return 'no component boxes'
        return f'component boxes from {self.path}' if self.by_index is not None else 'component boxes of the template'

    def locations(self, index, stored_size, out_size, hflip):
        """The ``loc_*`` entries of sample ``index``, whose stored image is ``stored_size`` px wide and is returned
        at ``out_size`` px, flipped when ``hflip``; {} when boxes are off."""
        if not self.enabled:
            return {}
        if self.by_index is None:
            boxes = template_boxes(out_size)
        else:
            if index not in self.by_index:
                raise ConfigError(f'{self.owner}: component_path {self.path} has no entry {index:08d}')
            boxes = scale_boxes(self.by_index[index], out_size / stored_size)
        if hflip:
            boxes = flip_boxes(boxes, out_size)
        return component_locations(boxes, self.eye_enlarge_ratio)
