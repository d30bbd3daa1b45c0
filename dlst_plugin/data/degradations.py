"""GFP-GAN's synthetic degradation as one pure, seedable function (docs/design.md#second-order-set).

``degrade(img_gt, rng, cfg)`` follows GFP-GAN's ``FFHQDegradationDataset`` step by step: hflip,
Gaussian blur (iso/aniso kernel), bilinear downsample, Gaussian noise, JPEG, bilinear resize
back, colour shift, gray, colour jitter (brightness/contrast/saturation/hue in random order),
rounding to 8 bit. ``FaceDegradation``'s defaults are the dataset block of GFP-GAN's
``options/train_gfpgan_v1.yml``; option names are GFP-GAN's. All randomness comes from the
``numpy.random.Generator`` passed in: first every parameter is drawn (``FaceDegradation.sample``),
then applied (``apply_degradation``), so a ``DegradationParams`` record reproduces a sample.

Differences from GFP-GAN, none of which changes the distribution: the JPEG quality is the
integer part of the drawn value (OpenCV 4.12 and 5 reject the float quality BasicSR passes,
docs/design.md#toolchain), the blur drops kernel mass below ``image_ops.KERNEL_TAIL``, and the colour
jitter runs in NumPy/OpenCV instead of torchvision (same formulas).
"""
import dataclasses
import math
import numbers
from typing import Optional, Tuple

import numpy as np

from dlst_plugin.data import image_ops
from dlst_plugin.options.schema import Block, Range, option

KERNEL_TYPES = ('iso', 'aniso')
_RANGES = ('blur_sigma', 'rotation_range', 'downsample_range', 'noise_range', 'jpeg_range', 'brightness', 'contrast',
           'saturation', 'hue')
_PROBS = ('color_jitter_prob', 'color_jitter_pt_prob', 'gray_prob')
# lowest allowed value of each range (inclusive); hue and rotation are unbounded below
_RANGE_FLOORS = {'blur_sigma': 0.0, 'downsample_range': 0.0, 'noise_range': 0.0, 'jpeg_range': 0.0,
                 'brightness': 0.0, 'contrast': 0.0, 'saturation': 0.0}
_STRICT_FLOORS = ('blur_sigma', 'downsample_range')  # these must be > 0


PAIR = 'a [min, max] pair'


@dataclasses.dataclass(frozen=True)
class FaceDegradation(Block):
    """Parameters of the recipe. ``None`` (``~`` in an option file) for a range or probability switches that
    stage off.

    Ranges are ``(min, max)`` and drawn uniformly; ``noise_range`` and ``color_jitter_shift``
    are in 8-bit units (GFP-GAN's convention); ``hue`` is a fraction of a turn.
    """
    blur_kernel_size: int = option(41, Range(1), 'side of the blur kernel (odd)')
    kernel_list: Tuple[str, ...] = option(('iso', 'aniso'), doc='blur kernel types drawn from: iso, aniso')
    kernel_prob: Tuple[float, ...] = option((0.5, 0.5), doc='weight of each kernel_list entry')
    blur_sigma: Tuple[float, float] = option((0.1, 10.0), doc=f'blur sigma, {PAIR} (> 0)')
    rotation_range: Tuple[float, float] = option((-math.pi, math.pi), doc='anisotropic kernel angle, radians')
    downsample_range: Tuple[float, float] = option((0.8, 8.0), doc=f'downsampling factor, {PAIR} (> 0)')
    noise_range: Optional[Tuple[float, float]] = option((0.0, 20.0), doc='Gaussian noise sigma, 8-bit units; ~: off')
    jpeg_range: Optional[Tuple[float, float]] = option((60.0, 100.0), doc='JPEG quality (<= 100); ~: off')
    color_jitter_prob: Optional[float] = option(0.3, Range(0, 1), 'probability of a colour shift; ~: off')
    color_jitter_shift: float = option(20.0, Range(0), 'largest colour shift, 8-bit units')
    color_jitter_pt_prob: Optional[float] = option(0.3, Range(0, 1), 'probability of a colour jitter; ~: off')
    brightness: Optional[Tuple[float, float]] = option((0.5, 1.5), doc='colour jitter brightness factor; ~: off')
    contrast: Optional[Tuple[float, float]] = option((0.5, 1.5), doc='colour jitter contrast factor; ~: off')
    saturation: Optional[Tuple[float, float]] = option((0.0, 1.5), doc='colour jitter saturation factor; ~: off')
    hue: Optional[Tuple[float, float]] = option((-0.1, 0.1), doc='colour jitter hue shift, fraction of a turn; ~: off')
    gray_prob: Optional[float] = option(0.01, Range(0, 1), 'probability of a gray input; ~: off')
    gt_gray: bool = option(False, doc='the target of a gray input is gray too')
    use_hflip: bool = option(True, doc='flip horizontally with probability 0.5')

    def __post_init__(self):
        for field in dataclasses.fields(self):  # YAML gives lists; keep the record hashable
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
        _validate(self)

    @classmethod
    def from_opt(cls, opt, strict=True):
        """Build from an option dict with GFP-GAN's key names; missing keys keep the defaults, ``~`` switches a
        stage off. ``strict``: an unknown key is an error naming it (OptionsError, a ValueError); otherwise
        unknown keys are ignored (for a dataset block that also holds other options)."""
        mapping = opt if strict else {k: v for k, v in opt.items() if k in cls.keys()}
        return cls.decode(mapping, 'degradation')

    def sample(self, rng):
        """Draw every random choice of one degradation from ``rng`` (a numpy Generator)."""
        probs = np.asarray(self.kernel_prob, dtype=np.float64)
        kernel_type = self.kernel_list[rng.choice(len(self.kernel_list), p=probs / probs.sum())]
        hflip = bool(self.use_hflip and rng.random() < 0.5)
        sigma_x = rng.uniform(*self.blur_sigma)
        sigma_y = theta = None
        if kernel_type == 'aniso':
            sigma_y = rng.uniform(*self.blur_sigma)
            theta = rng.uniform(*self.rotation_range)
        scale = rng.uniform(*self.downsample_range)
        noise_sigma = noise_seed = None
        if self.noise_range is not None:
            noise_sigma = rng.uniform(*self.noise_range)
            noise_seed = int(rng.integers(2**63))
        jpeg_quality = None if self.jpeg_range is None else int(rng.uniform(*self.jpeg_range))
        colour_shift = None
        if self.color_jitter_prob is not None and rng.random() < self.color_jitter_prob:
            shift = self.color_jitter_shift / 255.0
            colour_shift = tuple(float(v) for v in rng.uniform(-shift, shift, 3))
        gray = bool(self.gray_prob and rng.random() < self.gray_prob)
        jitter_order = jitter_factors = None
        if self.color_jitter_pt_prob is not None and rng.random() < self.color_jitter_pt_prob:
            jitter_order = tuple(int(i) for i in rng.permutation(4))
            ranges = (self.brightness, self.contrast, self.saturation, self.hue)
            jitter_factors = tuple(None if r is None else float(rng.uniform(*r)) for r in ranges)
        return DegradationParams(
            hflip=hflip, kernel_size=self.blur_kernel_size, kernel_type=kernel_type, sigma_x=float(sigma_x),
            sigma_y=None if sigma_y is None else float(sigma_y), theta=None if theta is None else float(theta),
            scale=float(scale), noise_sigma=None if noise_sigma is None else float(noise_sigma), noise_seed=noise_seed,
            jpeg_quality=jpeg_quality, colour_shift=colour_shift, gray=gray, gt_gray=bool(self.gt_gray),
            jitter_order=jitter_order, jitter_factors=jitter_factors)


@dataclasses.dataclass(frozen=True)
class DegradationParams:
    """Every random choice of one degradation; ``None`` means the stage did not run."""
    hflip: bool
    kernel_size: int
    kernel_type: str
    sigma_x: float
    sigma_y: Optional[float]  # None for an isotropic kernel
    theta: Optional[float]
    scale: float
    noise_sigma: Optional[float]  # 8-bit units
    noise_seed: Optional[int]
    jpeg_quality: Optional[int]
    colour_shift: Optional[Tuple[float, float, float]]  # [0, 1] units, BGR
    gray: bool
    gt_gray: bool
    jitter_order: Optional[Tuple[int, ...]]  # indices into brightness, contrast, saturation, hue
    jitter_factors: Optional[Tuple[Optional[float], ...]]

    def as_dict(self):
        return dataclasses.asdict(self)


def apply_degradation(img_gt, params):
    """Apply one drawn degradation; returns ``(img_lq, img_gt)`` (gt flipped/grayed as drawn)."""
    img_gt = _check_image(img_gt)
    squeeze = img_gt.ndim == 3 and img_gt.shape[2] == 1
    if squeeze:  # OpenCV drops a single channel axis; work on HxW and put it back at the end
        img_gt = img_gt[:, :, 0]
    if params.hflip:
        img_gt = np.ascontiguousarray(img_gt[:, ::-1])
    h, w = img_gt.shape[:2]
    lq = image_ops.gaussian_blur(img_gt, params.kernel_size, params.sigma_x, params.sigma_y, params.theta or 0.0)
    lq = image_ops.resize_by(lq, params.scale)
    if params.noise_sigma is not None:
        lq = image_ops.add_gaussian_noise(lq, params.noise_sigma, params.noise_seed)
    if params.jpeg_quality is not None:
        lq = image_ops.jpeg_roundtrip(lq, params.jpeg_quality)
    lq = image_ops.resize_to(lq, w, h)
    if params.colour_shift is not None:
        lq = image_ops.shift_colour(lq, params.colour_shift)
    if params.gray:
        lq = image_ops.to_gray(lq)
        if params.gt_gray:
            img_gt = image_ops.to_gray(img_gt)
    if params.jitter_order is not None:
        lq = image_ops.jitter_colour(lq, params.jitter_order, params.jitter_factors)
    lq = image_ops.quantize(lq)
    if squeeze:
        lq, img_gt = lq[:, :, None], img_gt[:, :, None]
    return lq, img_gt


def degrade(img_gt, rng, cfg=None, return_params=False):
    """GFP-GAN's degradation of one float32 BGR image in [0, 1] (HxW, HxWx1 or HxWx3).

    Returns ``(img_lq, img_gt)``, both float32 and the input's shape; ``img_gt`` is the input,
    flipped and/or grayed when the recipe drew that. ``return_params`` adds the
    ``DegradationParams`` drawn. ``rng``: ``numpy.random.Generator``; the global RNG is never used.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f'rng must be a numpy.random.Generator, got {type(rng).__name__}')
    params = (cfg or DEFAULT_DEGRADATION).sample(rng)
    lq, gt = apply_degradation(img_gt, params)
    return (lq, gt, params) if return_params else (lq, gt)


def _check_image(img):
    img = np.asarray(img)
    if img.dtype != np.float32:
        raise TypeError(f'degrade expects a float32 image in [0, 1], got dtype {img.dtype}')
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
        raise ValueError(f'degrade expects an HxW, HxWx1 or HxWx3 image, got shape {img.shape}')
    return img


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _validate(cfg):
    size = cfg.blur_kernel_size
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1 or size % 2 == 0:
        raise ValueError(f'blur_kernel_size must be a positive odd integer, got {size!r}')
    bad = [k for k in cfg.kernel_list if k not in KERNEL_TYPES]
    if not cfg.kernel_list or bad:
        raise ValueError(f'kernel_list: unsupported kernel type(s) {bad or "(empty)"}; supported: {KERNEL_TYPES}')
    if len(cfg.kernel_prob) != len(cfg.kernel_list) or not all(_is_number(p) and p >= 0 for p in cfg.kernel_prob) \
            or sum(cfg.kernel_prob) <= 0:
        raise ValueError(f'kernel_prob must hold one non-negative weight per kernel_list entry, '
                         f'got {cfg.kernel_prob!r}')
    for key in _RANGES:
        value = getattr(cfg, key)
        if value is None and key in ('noise_range', 'jpeg_range', 'brightness', 'contrast', 'saturation', 'hue'):
            continue
        if not isinstance(value, tuple) or len(value) != 2 or not all(_is_number(v) for v in value):
            raise ValueError(f'{key} must be a [min, max] pair of numbers, got {value!r}')
        lo, hi = value
        if lo > hi:
            raise ValueError(f'{key}: min {lo} is greater than max {hi}')
        floor = _RANGE_FLOORS.get(key)
        if floor is not None and (lo < floor or (key in _STRICT_FLOORS and lo <= floor)):
            raise ValueError(f'{key}: min {lo} is out of range (must be {">" if key in _STRICT_FLOORS else ">="} 0)')
    if cfg.jpeg_range is not None and cfg.jpeg_range[1] > 100:
        raise ValueError(f'jpeg_range: max {cfg.jpeg_range[1]} is above 100')
    for key in _PROBS:
        value = getattr(cfg, key)
        if value is not None and (not _is_number(value) or not 0 <= value <= 1):
            raise ValueError(f'{key} must be a probability in [0, 1] or null, got {value!r}')
    if not _is_number(cfg.color_jitter_shift) or cfg.color_jitter_shift < 0:
        raise ValueError(f'color_jitter_shift must be a non-negative number (8-bit units), '
                         f'got {cfg.color_jitter_shift!r}')


DEFAULT_DEGRADATION = FaceDegradation()
