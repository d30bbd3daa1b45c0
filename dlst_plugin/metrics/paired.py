"""Full-reference metrics against ground truth (PSNR, SSIM through BasicSR; LPIPS when available).

The paper reports only FID and NIQE (its real test faces have no ground truth); with synthetic
pairs PSNR/SSIM are the usual sanity check. Computed on RGB like GFP-GAN's validation
(``test_y_channel: false``) unless ``channel='y'``; no border crop. An image equal to its ground truth has
an infinite PSNR, kept as such (:func:`paired_value`), so the mean is infinite as in BasicSR.
"""
import importlib.util
import math

from dlst_plugin.errors import ConfigError, MissingPackageError

PAIRED_CHANNELS = ('rgb', 'y')


def paired_value(key, value):
    """A PSNR/SSIM value as reported: the PSNR of an image equal to its ground truth stays ``inf`` (what BasicSR's
    ``calculate_psnr`` returns; pyiqa's ``psnr`` gives about 80 dB there, from its eps); any other value that is
    not finite is None (left out of the mean, with a warning)."""
    if key == 'psnr' and value == math.inf:
        return math.inf
    return value if value is not None and math.isfinite(value) else None


def psnr_extras(per_image):
    """What a PSNR entry of metrics.json adds beside its mean (inf as soon as one image is infinite, as BasicSR
    averages): ``identical_images``, how many images equal their ground truth, and ``finite_mean``, the mean
    PSNR of the others (None when there are none): the figure to compare with a tool that caps PSNR."""
    finite = [v for v in per_image.values() if v is not None and v != math.inf]
    return {'identical_images': sum(v == math.inf for v in per_image.values()),
            'finite_mean': sum(finite) / len(finite) if finite else None}


class PSNRSSIM:
    """PSNR and/or SSIM (``keys``) of a restored image against its ground truth (both BGR uint8, same size)."""

    def __init__(self, channel='rgb', keys=('psnr', 'ssim')):
        if channel not in PAIRED_CHANNELS:
            raise ConfigError(f'--paired-channel: channel must be one of {PAIRED_CHANNELS}, got {channel!r}')
        import basicsr
        self.keys = tuple(k for k in ('psnr', 'ssim') if k in keys)
        self.test_y_channel = channel == 'y'
        self.backend = {
            key: f'basicsr {basicsr.__version__} calculate_{key}(crop_border=0, test_y_channel={self.test_y_channel})'
            for key in self.keys}
        self.image_format = 'Y channel of YCbCr (MATLAB convention)' if self.test_y_channel else 'RGB, 3 channels'

    def __call__(self, restored, gt):
        from basicsr.metrics import calculate_psnr, calculate_ssim
        kwargs = dict(crop_border=0, input_order='HWC', test_y_channel=self.test_y_channel)
        measure = {'psnr': calculate_psnr, 'ssim': calculate_ssim}
        return {key: float(measure[key](restored, gt, **kwargs)) for key in self.keys}


def lpips_unavailable_reason():
    """Why LPIPS cannot be computed here, or None when the ``lpips`` package is importable."""
    if importlib.util.find_spec('lpips') is None:
        return ('the lpips package is not installed (and its AlexNet backbone would need torchvision weights '
                'in the torch hub cache); LPIPS is not computed')
    return None


class LPIPS:
    """LPIPS (AlexNet, v0.1) through the ``lpips`` package; its weights must already be on disk."""

    key = 'lpips'

    def __init__(self):
        reason = lpips_unavailable_reason()
        if reason:
            raise MissingPackageError(reason)
        import lpips
        import torch
        self._torch = torch
        self.net = lpips.LPIPS(net='alex', version='0.1', verbose=False).eval()
        self.backend = f'lpips {getattr(lpips, "__version__", "?")} net=alex version=0.1'

    def __call__(self, restored, gt):
        def to_tensor(img):
            rgb = self._torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1)[None].float()
            return rgb / 127.5 - 1
        with self._torch.no_grad():
            return float(self.net(to_tensor(restored), to_tensor(gt)).item())
