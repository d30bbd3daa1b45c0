"""NIQE (paper section 4, Table 2) from BasicSR's shipped pristine-model parameters, offline.

Two backends, both fed ``basicsr/metrics/niqe_pris_params.npz``:

* ``basicsr``: ``basicsr.metrics.calculate_niqe`` on the Y channel, no border crop.
* ``pyiqa``: pyiqa's NIQE when pyiqa is installed (extra ``metrics``); pyiqa would download its
  own ``.mat`` parameters, so they are written from BasicSR's ``.npz`` instead (nothing is downloaded).

BasicSR's NIQE fits its Gaussian to 96 px blocks and needs a 2x2 grid of them (it
fails inside ``calculate_weights_indices`` on 64 px images), so images whose short side is below
``NIQE_MIN_SIDE`` are upscaled bicubically to that short side first; the rule and the number of
images it touched are recorded next to the score.
"""
import importlib.util
import os
import tempfile

import cv2
import numpy as np

from dlst_plugin.errors import ConfigError, MissingPackageError

NIQE_MIN_SIDE = 192
NIQE_RESIZE_RULE = (f'none when the short side is >= {NIQE_MIN_SIDE} px; smaller images are upscaled '
                    f'(OpenCV INTER_CUBIC, aspect kept) to a short side of {NIQE_MIN_SIDE} px')
NIQE_BACKENDS = ('basicsr', 'pyiqa')


def basicsr_niqe_params_path():
    import basicsr.metrics.niqe as basicsr_niqe
    return os.path.join(os.path.dirname(basicsr_niqe.__file__), 'niqe_pris_params.npz')


def pyiqa_available():
    return importlib.util.find_spec('pyiqa') is not None


def upscale_for_niqe(img):
    """``(img, resized)``: ``img`` upscaled so its short side is at least ``NIQE_MIN_SIDE``."""
    h, w = img.shape[:2]
    if min(h, w) >= NIQE_MIN_SIDE:
        return img, False
    scale = NIQE_MIN_SIDE / min(h, w)
    size = (max(NIQE_MIN_SIDE, round(w * scale)), max(NIQE_MIN_SIDE, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), True


class BasicSRNIQE:
    """NIQE of one BGR uint8 image through ``basicsr.metrics.calculate_niqe``."""

    key = 'niqe'
    label = 'NIQE'

    def __init__(self):
        import basicsr
        self.backend = (f'basicsr {basicsr.__version__} calculate_niqe(crop_border=0, convert_to=y), '
                        f'params {basicsr_niqe_params_path()}')

    def __call__(self, img_bgr):
        from basicsr.metrics import calculate_niqe
        return float(calculate_niqe(img_bgr, crop_border=0, input_order='HWC', convert_to='y'))


def write_pyiqa_params(npz_path, mat_path):
    """Write BasicSR's NIQE parameters in the ``.mat`` layout pyiqa's NIQE reads."""
    from scipy.io import savemat
    params = np.load(npz_path)
    savemat(mat_path, {'mu_prisparam': params['mu_pris_param'], 'cov_prisparam': params['cov_pris_param'],
                       'gaussian_window': params['gaussian_window']})
    return mat_path


class PyiqaNIQE:
    """NIQE of one BGR uint8 image through pyiqa, with BasicSR's parameters (no download)."""

    key = 'niqe_pyiqa'
    label = 'NIQE (pyiqa)'

    def __init__(self):
        if not pyiqa_available():
            raise MissingPackageError('NIQE backend pyiqa was asked for but pyiqa is not installed '
                              "(pip install 'dlst-plugin[metrics]'); the basicsr backend needs nothing extra")
        import pyiqa
        import torch
        self._torch = torch
        self._tmp = tempfile.TemporaryDirectory(prefix='dlst_niqe_')
        npz = basicsr_niqe_params_path()
        mat = write_pyiqa_params(npz, os.path.join(self._tmp.name, 'niqe_modelparameters.mat'))
        self.metric = pyiqa.create_metric('niqe', device='cpu', as_loss=False, pretrained_model_path=mat)
        self.backend = f'pyiqa {getattr(pyiqa, "__version__", "?")} niqe, params written from {npz}'

    def __call__(self, img_bgr):
        rgb = np.ascontiguousarray(img_bgr[:, :, ::-1], dtype=np.float32) / 255.0
        tensor = self._torch.from_numpy(rgb).permute(2, 0, 1)[None]
        with self._torch.no_grad():
            return float(self.metric(tensor).item())


def build_niqe_backends(names):
    """NIQE scorers for ``names`` (subset of ``NIQE_BACKENDS``); ImportError names a missing backend."""
    unknown = set(names) - set(NIQE_BACKENDS)
    if unknown:
        raise ConfigError(f'unknown NIQE backend(s) {sorted(unknown)}; choose from {NIQE_BACKENDS}')
    return [{'basicsr': BasicSRNIQE, 'pyiqa': PyiqaNIQE}[name]() for name in names]
