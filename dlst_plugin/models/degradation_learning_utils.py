"""Helpers of the degradation-learning model: image statistics and sample grids.

The statistics say whether the green network is learning the real LQ style (paper 3.2.3):
its high-frequency energy and contrast should move from the clean (red) values towards the
real LQ values, while its mean colour stays at the red one (the L2 and pooled VGG terms' job).
"""

import numpy as np
import torch
from torch.nn import functional as F

LUMA = (0.299, 0.587, 0.114)  # RGB -> Y (BT.601)


def luminance(img):
    """(b, 3, h, w) RGB in [-1, 1] -> (b, 1, h, w) luminance in [0, 1]."""
    weights = img.new_tensor(LUMA).view(1, 3, 1, 1)
    return ((img + 1) / 2 * weights).sum(1, keepdim=True)


def high_frequency_energy(img):
    """Mean squared difference between the luminance and its 3x3 box blur, per image (b,).

    Blur lowers it, noise and JPEG ringing raise it; on [0, 1] luminance."""
    y = luminance(img.float())
    return (y - F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)).pow(2).mean((1, 2, 3))


def contrast(img):
    """Standard deviation of the luminance, per image (b,): haze and low dynamic range lower it."""
    return luminance(img.float()).std((1, 2, 3))


def mean_colour(img):
    """(b, 3) per-channel means, RGB in [0, 1]."""
    return ((img.float() + 1) / 2).mean((2, 3))


def image_statistics(images):
    """Scalar summary of a batch of RGB images in [-1, 1]: high-frequency energy and mean colour."""
    colour = mean_colour(images).mean(0)
    return {'hf_energy': high_frequency_energy(images).mean().item(), 'contrast': contrast(images).mean().item(),
            'mean_r': colour[0].item(),
            'mean_g': colour[1].item(), 'mean_b': colour[2].item()}


def mean_statistics(batches):
    """``image_statistics`` over an iterable of image batches, without holding them all."""
    total, count = {}, 0
    for images in batches:
        n = images.shape[0]
        count += n
        for key, value in image_statistics(images).items():
            total[key] = total.get(key, 0.0) + value * n
    return {key: value / count for key, value in total.items()} if count else {}


def pair_grid(clean, degraded, pairs_per_row=4, gap=2):
    """Sample grid like the paper's Fig. 2: each pair drawn as clean | degraded.

    clean, degraded: (n, 3, h, w) RGB in [-1, 1]. Returns a BGR uint8 image (for cv2/imwrite)."""
    n, _, h, w = clean.shape
    cols = min(pairs_per_row, n)
    rows = (n + cols - 1) // cols
    cell_w = 2 * w + gap
    grid = np.full((rows * (h + gap) + gap, cols * (cell_w + gap) + gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y0, x0 = gap + r * (h + gap), gap + c * (cell_w + gap)
        grid[y0:y0 + h, x0:x0 + w] = to_bgr_uint8(clean[i])
        grid[y0:y0 + h, x0 + w + gap:x0 + cell_w] = to_bgr_uint8(degraded[i])
    return grid


def to_bgr_uint8(img):
    """(3, h, w) or (b, 3, h, w) RGB in [-1, 1] -> (h, w, 3) or (b, h, w, 3) BGR uint8."""
    arr = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    arr = arr.movedim(-3, -1).numpy()
    return np.ascontiguousarray(arr[..., ::-1])
