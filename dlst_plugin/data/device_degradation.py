"""GFP-GAN's degradation applied to a batch on the training device (CPU or CUDA tensors alike).

The parameters are drawn on the CPU by the same code as the CPU path: ``FaceDegradation.sample``
draws a ``DegradationParams`` and ``image_ops``' kernel construction builds its trimmed Gaussian
kernel. ``pack`` turns one draw into fixed-shape CPU tensors (a DataLoader's default collate stacks
them), ``sample_packed`` draws and stacks a batch of them, and ``degrade_batch`` applies a batch on
the device of its images, in the order of ``apply_degradation``: hflip, blur (per-sample kernels:
BasicSR's ``filter2D`` up to ``image_ops.DIRECT_BLUR_MAX_SIZE``, an FFT above), bilinear downsample,
Gaussian noise, JPEG, bilinear resize back, colour shift, gray, colour jitter (brightness / contrast /
saturation / hue in the drawn order), rounding to 8 bit. Images are RGB ``(B, 3, H, W)`` in [0, 1];
samples whose downsampled size differs are resampled, noised and JPEG-coded in groups of one size.

The JPEG stage is built from BasicSR's ``DiffJPEG`` (colour conversion, block splitting, DCT and
inverse DCT) but codes as libjpeg does: its integer quantisation tables for the quality (DiffJPEG's
are transposed with respect to its DCT layout and not rounded, which alone costs several 8-bit
levels against cv2), its 8-bit rounding of the components, chroma averaging and edge padding, and
its triangular chroma upsampling. Against cv2's libjpeg-turbo it differs by DCT precision, a few
tenths of an 8-bit level on average; every other stage matches the CPU path to float rounding
(``tests/test_device_degradation.py`` measures both). Noise maps come from torch's generators, not
numpy's, unless given. A jitter factor whose range is switched off (``None``) skips that adjustment,
as GFP-GAN does.
"""
import copy

import numpy as np
import scipy.fft
import torch
from basicsr.utils.diffjpeg import DiffJPEG, c_table, y_table
from basicsr.utils.img_process_util import filter2D
from torch.nn import functional as F
from torch.utils.data import default_collate

from dlst_plugin.data import image_ops

JPEG_BLOCK = 16  # DiffJPEG codes 16x16 macroblocks (4:2:0 chroma)
PACKED_KEYS = ('size', 'kernel', 'down_size', 'noise_sigma', 'noise_seed', 'jpeg_quality', 'colour_shift', 'hflip',
               'gray', 'gt_gray', 'jitter', 'jitter_order', 'jitter_factors')
_GRAY_RGB = (0.299, 0.587, 0.114)  # cv2's BGR2GRAY weights (the gray stage), RGB order
_LUMA_RGB = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (colour jitter), RGB order
_NO_JITTER = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing
_JPEGERS = {}  # one DiffJPEG per device
# JPEG's standard luma and chroma tables, in libjpeg's orientation: DiffJPEG keeps them transposed with respect to
# its own DCT layout, and its quantisation divides by the transposed, non-integer-scaled tables (and by zero at
# quality 100), so the codec below quantises itself.
_BASE_TABLES = torch.stack([y_table.detach().t(), c_table.detach().t()]).cpu().clone().to(torch.int64)


def blur_kernel(params):
    """The CPU path's blur kernel of ``params``, trimmed as ``image_ops.gaussian_blur`` trims it, zero-padded
    back to ``kernel_size`` x ``kernel_size`` (float32)."""
    size = params.kernel_size
    kernel = image_ops.trimmed_kernel(size, params.sigma_x, params.sigma_y, params.theta or 0.0).astype(np.float32)
    if params.sigma_y is None:  # the CPU path runs it as two 1-D passes of this vector
        kernel = np.outer(kernel, kernel)
    out = np.zeros((size, size), dtype=np.float32)
    c, r = size // 2, kernel.shape[0] // 2
    out[c - r:c + r + 1, c - r:c + r + 1] = kernel
    return out


down_size = image_ops.shrunk_size  # (h, w) of the downsampled image, as the CPU path's resize_by


def _height_width(size):
    height, width = (int(v) for v in size) if isinstance(size, (tuple, list)) else (int(size), int(size))
    if height < 1 or width < 1:
        raise ValueError(f'size must be a positive side or (height, width), got {size!r}')
    return height, width


def pack(params, size):
    """One ``DegradationParams`` as a dict of fixed-shape CPU tensors, for an image of ``size`` (a side, or
    (height, width)). Switched-off stages: noise sigma -1 (seed 0), JPEG quality -1, colour shift 0,
    ``jitter`` False; the colour shift is in RGB order (the CPU params are BGR)."""
    height, width = _height_width(size)
    factors, order = _NO_JITTER, (0, 1, 2, 3)
    if params.jitter_order is not None:
        order = params.jitter_order
        factors = tuple(off if f is None else f for f, off in zip(params.jitter_factors, _NO_JITTER))
    shift = (0.0, 0.0, 0.0) if params.colour_shift is None else params.colour_shift[::-1]
    return {
        'size': torch.tensor((height, width), dtype=torch.int64),
        'kernel': torch.from_numpy(blur_kernel(params)),
        'down_size': torch.tensor(down_size(height, width, params.scale), dtype=torch.int64),
        'noise_sigma': torch.tensor(-1.0 if params.noise_sigma is None else params.noise_sigma, dtype=torch.float32),
        'noise_seed': torch.tensor(params.noise_seed or 0, dtype=torch.int64),
        'jpeg_quality': torch.tensor(-1 if params.jpeg_quality is None else params.jpeg_quality, dtype=torch.int64),
        'colour_shift': torch.tensor(shift, dtype=torch.float32),
        'hflip': torch.tensor(bool(params.hflip)),
        'gray': torch.tensor(bool(params.gray)),
        'gt_gray': torch.tensor(bool(params.gt_gray)),
        'jitter': torch.tensor(params.jitter_order is not None),
        'jitter_order': torch.tensor(order, dtype=torch.int64),
        'jitter_factors': torch.tensor(factors, dtype=torch.float32),
    }


def sample_packed(cfg, rngs, size):
    """Draw one degradation per numpy Generator of ``rngs`` with ``cfg`` (a ``FaceDegradation``) and stack them."""
    return default_collate([pack(cfg.sample(rng), size) for rng in rngs])


@torch.no_grad()
def degrade_batch(gt, packed, noise=None, generator=None):
    """Apply a batch of packed degradations to ``gt`` (B, 3, H, W), RGB in [0, 1], on its device.

    Returns ``(lq, gt)``, float32 on ``gt.device``: ``lq`` rounded to 8-bit levels, ``gt`` flipped and
    grayed as drawn. ``noise``: standard-normal maps at the downsampled sizes, a (B, 3, h, w) tensor or
    array, or a sequence of B (3, h_i, w_i) ones; else drawn from ``generator`` (a torch.Generator on
    ``gt.device``) or, when it is None, from a generator seeded with each sample's noise seed, so a
    sample's result does not depend on the rest of its batch.
    """
    host = _check(gt, packed)
    # the control flow reads the host copy; the device gets its values and index lists in two copies in all
    dev = _device_values(host, gt.device)
    groups = _size_groups(host['down_size'])
    jpeg_on = [[j for j, i in enumerate(members) if host['jpeg_quality'][i] >= 0] for _, members in groups]
    jitter = _jitter_members(host)
    index = _index_slices([m for _, m in groups] + jpeg_on + [m for _, _, m in jitter], gt.device)
    k = len(groups)
    group_index, jpeg_index, jitter_index = index[:k], index[k:2 * k], index[2 * k:]
    gt = gt.float()
    gt = torch.where(_per_sample(dev['hflip']), gt.flip(-1), gt).contiguous()
    lq = _blur(gt, host['kernel'])
    lq = _resample_noise_jpeg(lq, host, dev, zip(groups, group_index, jpeg_index), noise, generator)
    shift = dev['colour_shift'][:, :, None, None]
    lq = torch.where(_per_sample((shift != 0).any(1)), (lq + shift).clamp(0, 1), lq)
    if host['gray'].any():
        lq = torch.where(_per_sample(dev['gray']), _gray(lq), lq)
    if (host['gray'] & host['gt_gray']).any():
        gt = torch.where(_per_sample(dev['gray'] & dev['gt_gray']), _gray(gt), gt)
    lq = _jitter(lq, zip(jitter, jitter_index), dev['jitter_factors'])
    return quantize(lq), gt


def _device_values(host, device):
    """The per-sample values the device computes with (flags, shifts, jitter factors, noise levels, JPEG
    tables), moved in one copy: {name: view of one (B, K) float tensor}."""
    n = host['hflip'].shape[0]
    columns = {'hflip': host['hflip'][:, None], 'gray': host['gray'][:, None], 'gt_gray': host['gt_gray'][:, None],
               'colour_shift': host['colour_shift'], 'jitter_factors': host['jitter_factors'],
               'noise_sigma': host['noise_sigma'][:, None],
               'jpeg_tables': libjpeg_tables(host['jpeg_quality']).reshape(n, -1)}  # integers: exact in float32
    moved = torch.cat([c.float() for c in columns.values()], 1).to(device)
    out, start = {}, 0
    for name, column in columns.items():
        out[name] = moved[:, start:start + column.shape[1]]
        start += column.shape[1]
    for flag in ('hflip', 'gray', 'gt_gray'):
        out[flag] = out[flag][:, 0] > 0.5
    out['noise_sigma'] = out['noise_sigma'][:, 0]
    out['jpeg_tables'] = out['jpeg_tables'].reshape(n, 2, 8, 8)
    return out


def _index_slices(lists, device):
    """Each index list as a device tensor: slices of one tensor moved in one copy."""
    flat = torch.tensor([i for members in lists for i in members], dtype=torch.int64).to(device)
    out, start = [], 0
    for members in lists:
        out.append(flat[start:start + len(members)])
        start += len(members)
    return out


def quantize(img):
    """Round to 8-bit levels and clip (the CPU path's ``image_ops.quantize``)."""
    return torch.round(img * 255.0).clamp(0, 255) / 255.0


def _check(gt, packed):
    if not torch.is_tensor(gt) or gt.ndim != 4 or gt.shape[1] != 3 or not gt.is_floating_point():
        raise ValueError(f'degrade_batch expects a float (B, 3, H, W) tensor, got '
                         f'{tuple(gt.shape) if torch.is_tensor(gt) else type(gt).__name__}')
    missing = [key for key in PACKED_KEYS if key not in packed]
    if missing:
        raise ValueError(f'packed degradation lacks {", ".join(missing)} (make it with pack / sample_packed)')
    host = {key: torch.as_tensor(packed[key]).detach().cpu() for key in PACKED_KEYS}
    if host['kernel'].ndim != 3 or host['kernel'].shape[0] != gt.shape[0]:
        raise ValueError(f'packed degradation holds {host["kernel"].shape[0] if host["kernel"].ndim == 3 else "no"} '
                         f'batched kernels for a batch of {gt.shape[0]} images')
    sizes = {tuple(s) for s in host['size'].tolist()}
    if sizes != {tuple(gt.shape[-2:])}:
        raise ValueError(f'packed degradation was drawn for images of size(s) {sorted(sizes)}, '
                         f'got {tuple(gt.shape[-2:])}')
    return host


def _per_sample(flags):
    return flags.view(-1, 1, 1, 1)


def _blur(img, kernels):
    """Correlate each image with its kernel (reflect-101 border, as cv2.filter2D), cropped to the batch's
    support: BasicSR's filter2D for small kernels, an FFT for large ones (as ``image_ops.gaussian_blur``)."""
    nonzero = (kernels != 0).any(0)
    offsets = torch.nonzero(nonzero.any(0) | nonzero.any(1)).flatten() - kernels.shape[-1] // 2
    r = int(offsets.abs().max())
    c = kernels.shape[-1] // 2
    kernels = kernels[:, c - r:c + r + 1, c - r:c + r + 1].to(img.device)
    if 2 * r + 1 <= image_ops.DIRECT_BLUR_MAX_SIZE and r < min(img.shape[-2:]):
        return filter2D(img, kernels)
    height, width = img.shape[-2:]
    padded = img[:, :, _reflect101(height, r, img.device)][:, :, :, _reflect101(width, r, img.device)]
    shape = [scipy.fft.next_fast_len(n, real=True) for n in padded.shape[-2:]]  # no prime factor above 5
    # correlation is convolution with the mirrored kernel; the circular wrap-around only reaches the padding
    spectrum = torch.fft.rfft2(padded, s=shape) * torch.fft.rfft2(kernels.flip(-2, -1)[:, None], s=shape)
    out = torch.fft.irfft2(spectrum, s=shape)
    return out[..., 2 * r:2 * r + height, 2 * r:2 * r + width].contiguous()


def _reflect101(n, r, device):
    """Indices of a length-``n`` axis padded by ``r`` on each side, mirrored without repeating the edge."""
    index = torch.arange(-r, n + r, device=device)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


def _size_groups(down_sizes):
    """[((h, w), [sample indices])] in order of first appearance."""
    groups = {}
    for i, hw in enumerate(down_sizes.tolist()):
        groups.setdefault(tuple(hw), []).append(i)
    return list(groups.items())


def _resample_noise_jpeg(lq, host, dev, groups, noise, generator):
    """Downsample, add noise, JPEG-code and resize back, one group of equal downsampled size at a time;
    ``groups``: ((size, members), device index of the members, device positions of its JPEG-coded ones)."""
    height, width = lq.shape[-2:]
    out = torch.empty_like(lq)
    for (size, members), index, jpeg_on in groups:
        x = _add_noise(_resize(lq[index], size), members, index, host, dev, noise, generator)
        out[index] = _resize(_jpeg(x, jpeg_on, dev['jpeg_tables'][index]), (height, width))
    return out


def _resize(img, size):
    """cv2.resize(..., INTER_LINEAR) for float images: bilinear, half-pixel centres, no antialiasing."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=size, mode='bilinear', align_corners=False)


def _add_noise(x, members, index, host, dev, noise, generator):
    if not (host['noise_sigma'][members] >= 0).any():
        return x
    maps = _noise_maps(x, members, host['noise_seed'][members].tolist(), noise, generator)
    sigma = dev['noise_sigma'][index]
    scale = (sigma.clamp(min=0) / 255.0)[:, None, None, None]
    return torch.where(_per_sample(sigma >= 0), (x + maps * scale).clamp(0, 1), x)


def _noise_maps(x, members, seeds, noise, generator):
    if noise is not None:
        if torch.is_tensor(noise) or isinstance(noise, np.ndarray):
            maps = torch.as_tensor(noise)[members]
        else:
            maps = torch.stack([torch.as_tensor(noise[i]) for i in members])
        if maps.shape != x.shape:
            raise ValueError(f'noise maps of shape {tuple(maps.shape[1:])} given for images downsampled to '
                             f'{tuple(x.shape[1:])}')
        return maps.to(device=x.device, dtype=x.dtype)
    if generator is not None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.stack([torch.randn(x.shape[1:], generator=torch.Generator(x.device).manual_seed(seed),
                                    device=x.device, dtype=x.dtype) for seed in seeds])


def _jpeger(device):
    """A DiffJPEG on ``device``. Its quantisation tables are module-level Parameters shared by every
    instance, so each device's copy gets its own (moving one would move all)."""
    key = str(device)
    if key not in _JPEGERS:
        _JPEGERS[key] = copy.deepcopy(DiffJPEG(differentiable=False)).requires_grad_(False).to(device)
    return _JPEGERS[key]


def libjpeg_tables(quality):
    """(n, 2, 8, 8) luma and chroma quantisation tables of libjpeg's ``jpeg_set_quality`` (baseline) for integer
    qualities ``quality`` (n,), in the (vertical, horizontal) frequency layout of DiffJPEG's DCT."""
    quality = quality.to(torch.int64).clamp(1, 100)
    scale = torch.where(quality < 50, 5000 // quality, 200 - 2 * quality)[:, None, None, None]
    return ((_BASE_TABLES[None] * scale + 50) // 100).clamp(1, 255).float()


def _jpeg(x, on, tables):
    """JPEG round trip of the samples at positions ``on`` (a device index) with their ``tables`` (n, 2, 8, 8),
    on 8-bit levels as the CPU path codes."""
    if not len(on):
        return x
    everyone = len(on) == len(x)
    sub = x if everyone else x[on]
    height, width = sub.shape[-2:]
    sub = quantize(sub.clamp(0, 1))
    pad_h, pad_w = (-height) % JPEG_BLOCK, (-width) % JPEG_BLOCK
    if pad_h or pad_w:  # edge-extend the partial blocks, as libjpeg does (DiffJPEG would pad zeros)
        sub = F.pad(sub, (0, pad_w, 0, pad_h), mode='replicate')
    coded = quantize(_jpeg_code(sub, tables if everyone else tables[on], height, width))
    if everyone:
        return coded
    out = x.clone()
    out[on] = coded
    return out


def _jpeg_code(x, tables, height, width):
    """Baseline 4:2:0 JPEG encode + decode of RGB ``x`` (n, 3, H, W), H and W multiples of 16 holding a
    ``height`` x ``width`` image, as libjpeg codes it: DiffJPEG's colour conversion, block splitting and DCTs;
    libjpeg's tables (n, 2, 8, 8), its 8-bit rounding, chroma padding and triangular chroma upsampling."""
    codec = _jpeger(x.device)
    encode, decode = codec.compress, codec.decompress
    ycc = encode.l1[0](x * 255).round()  # (n, H, W, 3) Y, Cb, Cr on 8-bit levels
    chroma_h, chroma_w = (height + 1) // 2, (width + 1) // 2
    # libjpeg extends the image's right edge before the chroma is averaged and the averaged chroma's bottom edge
    rows = torch.arange(x.shape[2] // 2, device=x.device).clamp(max=chroma_h - 1)
    planes = [ycc[..., 0]] + [_downsample(ycc[..., c])[:, rows] for c in (1, 2)]
    for i, table in enumerate((tables[:, 0], tables[:, 1], tables[:, 1])):
        coefficients = encode.l2(planes[i])  # (n, blocks, 8, 8)
        coefficients = _round_half_away(coefficients / table[:, None]) * table[:, None]
        pixels = _round_half_away(decode.idct(coefficients)).clamp(0, 255)
        planes[i] = decode.merging(pixels, planes[i].shape[1], planes[i].shape[2])
    # the decoder upsamples the chroma of the image, not of its padded blocks: its edge is the image's
    upsample = _fancy_upsample if chroma_w > 2 else _nearest_upsample
    planes = [planes[0][:, :height, :width]] + [
        upsample(p[:, :chroma_h, :chroma_w])[:, :height, :width] for p in planes[1:]]
    return decode.colors(torch.stack(planes, 3)).clamp(0, 255) / 255


def _round_half_away(x):
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _downsample(plane):
    """libjpeg's h2v2 chroma averaging of a (n, H, W) plane: (sum of 2x2 + 1 or 2, alternating by column) / 4."""
    n, height, width = plane.shape
    total = plane.view(n, height // 2, 2, width // 2, 2).sum((2, 4))
    bias = torch.arange(width // 2, device=plane.device).remainder(2) + 1.0
    return torch.floor((total + bias) / 4)


def _fancy_upsample(plane):
    """Double a (n, h, w) chroma plane as libjpeg's h2v2 fancy upsampling: weights 3/4 (nearer) and 1/4, vertical
    then horizontal, sums rounded with a bias of 8 (even columns) or 7 (odd columns) sixteenths."""
    padded = F.pad(plane[:, None], (1, 1, 1, 1), mode='replicate')[:, 0]
    centre = 3 * padded[:, 1:-1]
    rows = torch.stack([centre + padded[:, :-2], centre + padded[:, 2:]], 2).flatten(1, 2)
    centre = 3 * rows[..., 1:-1]
    even, odd = torch.floor((centre + rows[..., :-2] + 8) / 16), torch.floor((centre + rows[..., 2:] + 7) / 16)
    return torch.stack([even, odd], 3).flatten(2, 3)


def _nearest_upsample(plane):
    """libjpeg's plain h2v2 upsampling (chroma 2 samples wide or less)."""
    return plane.repeat_interleave(2, 1).repeat_interleave(2, 2)


_CONSTANTS = {}  # (values, device, dtype) -> a (1, 3, 1, 1) tensor, made once


def _constant(values, like):
    key = (values, str(like.device), like.dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype).view(1, 3, 1, 1).to(like.device)
    return _CONSTANTS[key]


def _weighted_sum(img, weights):
    return (img * _constant(weights, img)).sum(1, keepdim=True)


def to_gray(img):
    """(B, 3, H, W) RGB -> the same shape, every channel the luma of the CPU path's gray conversion."""
    return _gray(img)


def _gray(img):
    return _weighted_sum(img, _GRAY_RGB).expand_as(img)


def _blend(img, other, factor):
    factor = factor.view(-1, 1, 1, 1)
    return (img * factor + (1 - factor) * other).clamp(0, 1)


def _brightness(img, factor):
    return (img * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def _contrast(img, factor):
    return _blend(img, _weighted_sum(img, _LUMA_RGB).mean((1, 2, 3), keepdim=True), factor)


def _saturation(img, factor):
    return _blend(img, _weighted_sum(img, _LUMA_RGB), factor)


def _hue(img, factor):
    """Rotate the hue by ``factor`` of a turn in the HSV hexcone (torchvision's adjust_hue)."""
    r, g, b = img.unbind(1)
    value, low = img.amax(1), img.amin(1)
    chroma = value - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, ((g - b) / safe).remainder(6),
                      torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = (hue + 6 * factor.view(-1, 1, 1)).remainder(6)
    # HSV -> RGB: channel n (R 5, G 3, B 1) is V - C * clamp(min(k, 4 - k), 0, 1), k = (n + H) mod 6
    k = (hue[:, None] + _constant((5.0, 3.0, 1.0), img)).remainder(6)
    return value[:, None] - chroma[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


_JITTER_OPS = (_brightness, _contrast, _saturation, _hue)


def _jitter_members(host):
    """[(step, op, members)]: GFP-GAN's colour jitter runs 4 steps; at each, a sample runs the op its order names."""
    on, order = host['jitter'].tolist(), host['jitter_order'].tolist()
    steps = [(step, op, [i for i in range(len(on)) if on[i] and order[i][step] == op])
             for step in range(4) for op in range(len(_JITTER_OPS))]
    return [entry for entry in steps if entry[2]]


def _jitter(lq, steps, factors):
    """Run the jitter ``steps`` ((step, op, members), device index of the members) in order."""
    out = None
    for (_, op, _), index in steps:
        out = lq.clone() if out is None else out
        out[index] = _JITTER_OPS[op](out[index], factors[index, op])
    return lq if out is None else out
