"""The image operations of GFP-GAN's degradation recipe (docs/design.md#second-order-set), without randomness.

Each function takes float32 images in [0, 1], HxW (gray) or HxWxC with C in {1, 3} (BGR), and
returns the same layout. ``dlst_plugin.data.degradations`` samples their parameters.

The blur gives cv2.filter2D's result with GFP-GAN's 41x41 kernel (BORDER_REFLECT_101) up to float
rounding and a kernel tail below ``KERNEL_TAIL``, but faster: the kernel is cut to the square that
holds all but ``KERNEL_TAIL`` of its mass, isotropic kernels run as two 1-D passes, large
anisotropic ones through an FFT (cv2.filter2D takes ~40 ms CPU at 512 px on one thread, the FFT ~19 ms).
"""
import math

import cv2
import numpy as np
import scipy.fft

# Kernel mass a blur may drop at the kernel's border: the output moves by at most this much
# (an 8-bit level is 1/255 ~ 3.9e-3).
KERNEL_TAIL = 1e-6
# Trimmed anisotropic kernels up to this size run through cv2.filter2D, larger ones through an FFT.
DIRECT_BLUR_MAX_SIZE = 11
# Channel weights of torchvision's rgb_to_grayscale (GFP-GAN's colour_jitter_pt), in BGR order.
_GRAY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.2989], dtype=np.float32)


def _axis(size):
    return np.arange(size, dtype=np.float64) - (size // 2)


def gaussian_kernel(size, sigma_x, sigma_y=None, theta=0.0):
    """Normalised ``size`` x ``size`` Gaussian kernel, as BasicSR's ``bivariate_Gaussian``.

    ``sigma_y=None`` gives the isotropic kernel. Otherwise the covariance is
    R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T, x along columns and y along rows.
    """
    ax = _axis(size)
    xx, yy = np.meshgrid(ax, ax)
    if sigma_y is None:
        quad = (xx * xx + yy * yy) / (sigma_x * sigma_x)
    else:
        cos, sin = math.cos(theta), math.sin(theta)
        rot = np.array([[cos, -sin], [sin, cos]])
        inv = np.linalg.inv(rot @ np.diag([sigma_x * sigma_x, sigma_y * sigma_y]) @ rot.T)
        quad = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy
    kernel = np.exp(-0.5 * quad)
    return kernel / kernel.sum()


def _trim_radius(outside_mass, tail):
    """Smallest radius whose centred square leaves at most ``tail`` of the mass outside."""
    return int(np.argmax(outside_mass <= tail))


def _trimmed_1d(size, sigma, tail):
    g = np.exp(-0.5 * (_axis(size) / sigma) ** 2)
    g /= g.sum()  # outer(g, g) is exactly the isotropic 2-D kernel
    c = size // 2
    inner = np.array([g[c - r:c + r + 1].sum() for r in range(c + 1)])
    r = _trim_radius(1.0 - inner * inner, tail)
    return g[c - r:c + r + 1]


def _trimmed_2d(kernel, tail):
    c = kernel.shape[0] // 2
    ax = np.abs(_axis(kernel.shape[0])).astype(np.int64)
    ring = np.maximum.outer(ax, ax)  # Chebyshev distance from the centre
    ring_mass = np.bincount(ring.ravel(), weights=kernel.ravel(), minlength=c + 1)
    outside = np.concatenate([np.cumsum(ring_mass[::-1])[::-1][1:], [0.0]])
    r = _trim_radius(outside, tail)
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


def _fft_filter(img, kernel):
    """cv2.filter2D(img, -1, kernel) (BORDER_REFLECT_101) through a real FFT; kernel odd-sized."""
    r = kernel.shape[0] // 2
    padded = cv2.copyMakeBorder(img, r, r, r, r, cv2.BORDER_REFLECT_101)
    if padded.ndim == 3:  # planar transforms are ~1.4x faster than strided ones
        padded = padded.transpose(2, 0, 1)
    shape = tuple(scipy.fft.next_fast_len(n, real=True) for n in padded.shape[-2:])
    spectrum = scipy.fft.rfft2(padded, s=shape, workers=1)
    # filter2D correlates; a Gaussian kernel is point-symmetric, so correlation == convolution
    spectrum *= scipy.fft.rfft2(kernel[::-1, ::-1].astype(np.float32), s=shape, workers=1)
    out = scipy.fft.irfft2(spectrum, s=shape, workers=1)
    # circular wrap-around only touches the first 2r rows/columns, which are padding
    h, w = img.shape[:2]
    out = out[..., 2 * r:2 * r + h, 2 * r:2 * r + w]
    return np.ascontiguousarray(out.transpose(1, 2, 0) if out.ndim == 3 else out, dtype=np.float32)


def trimmed_kernel(size, sigma_x, sigma_y=None, theta=0.0, tail=KERNEL_TAIL):
    """The kernel :func:`gaussian_blur` applies, its outer rings holding at most ``tail`` of the mass cut off:
    isotropic (``sigma_y`` None), the 1-D vector run along both axes; else the 2-D kernel."""
    if sigma_y is None:
        return _trimmed_1d(size, sigma_x, tail)
    return _trimmed_2d(gaussian_kernel(size, sigma_x, sigma_y, theta), tail)


def gaussian_blur(img, size, sigma_x, sigma_y=None, theta=0.0, tail=KERNEL_TAIL):
    """Blur with ``gaussian_kernel(size, sigma_x, sigma_y, theta)`` as cv2.filter2D would."""
    kernel = trimmed_kernel(size, sigma_x, sigma_y, theta, tail)
    if sigma_y is None:
        g = kernel.astype(np.float32)
        return cv2.sepFilter2D(img, -1, g, g, borderType=cv2.BORDER_REFLECT_101)
    if kernel.shape[0] <= DIRECT_BLUR_MAX_SIZE:
        return cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return _fft_filter(img, kernel)


def shrunk_size(height, width, scale):
    """(h, w) after shrinking by ``scale``: GFP-GAN's ``int(side // scale)``, at least 1."""
    return max(1, int(height // scale)), max(1, int(width // scale))


def resize_by(img, scale):
    """Shrink by ``scale`` with bilinear interpolation to :func:`shrunk_size`."""
    h, w = shrunk_size(*img.shape[:2], scale)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def add_gaussian_noise(img, sigma, seed):
    """Add N(0, (sigma/255)^2) noise per pixel and channel, drawn from ``seed``, and clip to [0, 1]."""
    noise = np.random.default_rng(seed).standard_normal(img.shape, dtype=np.float32)
    noise *= np.float32(sigma / 255.0)
    noise += img
    return np.clip(noise, 0.0, 1.0, out=noise)


def jpeg_roundtrip(img, quality):
    """Encode as JPEG with integer ``quality`` and decode (cv2 rounds to 8 bit first, as here)."""
    img8 = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    ok, buf = cv2.imencode('.jpg', img8, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError(f'cv2.imencode failed to write a JPEG of shape {img8.shape}')
    flag = cv2.IMREAD_GRAYSCALE if img8.ndim == 2 else cv2.IMREAD_COLOR
    out = cv2.imdecode(buf, flag).astype(np.float32)
    out /= 255.0
    return out


def resize_to(img, width, height):
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def shift_colour(img, shift):
    """Add a constant per channel (one value per channel; a gray image takes the first) and clip."""
    channels = 1 if img.ndim == 2 else img.shape[2]
    values = np.asarray(shift[:channels], dtype=np.float32)
    return np.clip(img + (values[0] if img.ndim == 2 else values), 0.0, 1.0)


def to_gray(img):
    """BGR -> gray with cv2's weights, repeated over 3 channels (GFP-GAN's gray stage)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return img
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None], 3, axis=2)


def _is_colour(img):
    return img.ndim == 3 and img.shape[2] == 3


def _luma(img):
    return img @ _GRAY_WEIGHTS_BGR if _is_colour(img) else img


def adjust_brightness(img, factor):
    return np.clip(img * np.float32(factor), 0.0, 1.0)


def adjust_contrast(img, factor):
    mean = np.float32(_luma(img).mean())
    return np.clip(img * np.float32(factor) + (1 - np.float32(factor)) * mean, 0.0, 1.0)


def adjust_saturation(img, factor):
    if not _is_colour(img):
        return img
    gray = _luma(img)[:, :, None]
    return np.clip(img * np.float32(factor) + (1 - np.float32(factor)) * gray, 0.0, 1.0)


def adjust_hue(img, factor):
    """Rotate the hue by ``factor`` of a turn, as torchvision's adjust_hue (HSV hexcone)."""
    if not _is_colour(img):
        return img
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)  # float input: H in [0, 360)
    hue = hsv[:, :, 0]
    hue += np.float32(factor * 360.0)
    np.mod(hue, np.float32(360.0), out=hue)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def jitter_colour(img, order, factors):
    """GFP-GAN's ``color_jitter_pt``: brightness, contrast, saturation, hue (indices 0-3) in ``order``."""
    for op in order:
        if factors[op] is not None:  # a range switched off (null) leaves that adjustment out
            img = JITTER_OPS[op](img, factors[op])
    return img


def quantize(img):
    """Round to 8-bit levels and clip, as GFP-GAN does to every LQ image."""
    out = np.rint(img * np.float32(255.0))
    np.clip(out, 0.0, 255.0, out=out)
    out /= np.float32(255.0)
    return out
