"""FID (paper section 4, Tables 1-4) with BasicSR's FID Inception, weights read from disk only.

``basicsr.archs.inception.InceptionV3`` downloads ``pt_inception-2015-12-05-6726825d.pth`` unless
the file sits at a cwd-relative path; here its loader is handed a state dict we read ourselves
(``checkpoints.read_checkpoint``: ``weights_only=True``, one clear error for a bad file) from
``--inception-weights``, the weights folder (``--weights-dir``, ``$DLST_WEIGHTS_DIR``, ``./weights``),
BasicSR's ``experiments/pretrained_models/`` or torch hub's cache.
A random Inception (tests only) is built only when asked for with a seed; it is never a fallback.

The Frechet distance is computed through symmetric eigendecompositions: the same value as
``basicsr.metrics.fid.calculate_fid`` (checked in tests/test_evaluate.py), several times faster
at 2048 dimensions, and well behaved on the rank-deficient covariances of small test sets.
"""
import os.path as osp
import warnings
from contextlib import contextmanager
from unittest import mock

import numpy as np
import torch
from torch.nn import functional as F

from dlst_plugin.checkpoints.files import WEIGHTS_ENV, resolve_weights_dir
from dlst_plugin.checkpoints.reading import read_checkpoint
from dlst_plugin.errors import MissingFileError
from dlst_plugin.fileio.atomic import atomic_path
from dlst_plugin.metrics.images import EvaluationError, EvaluationSetupError

FID_WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
FID_WEIGHTS_URL = f'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}'
FID_DIMS = {64: 0, 192: 1, 768: 2, 2048: 3}  # feature size -> InceptionV3 output block
FID_INPUT_SIZE = 299
_NO_SUCH_FILE = '/nonexistent/dlst-plugin/fid-weights-are-handed-over-in-memory.pth'
FID_RESIZE_RULE = (f'RGB in [-1, 1] resized to {FID_INPUT_SIZE}x{FID_INPUT_SIZE} bilinear (align_corners=False), '
                   'as BasicSR InceptionV3(resize_input=True); spatial features average-pooled')


class InceptionWeightsMissing(MissingFileError, EvaluationError):
    """The FID Inception state dict is nowhere to be found (exit code 2)."""


def find_inception_weights(weights_path=None, weights_dir_=None):
    """Path of ``FID_WEIGHTS_FILE``, or InceptionWeightsMissing saying where to put it."""
    if weights_path:
        candidates = [osp.expanduser(weights_path)]
    else:
        folder = resolve_weights_dir(weights_dir_)
        candidates = [osp.join(folder, FID_WEIGHTS_FILE),
                      osp.join('experiments', 'pretrained_models', FID_WEIGHTS_FILE),  # where BasicSR looks
                      osp.join(torch.hub.get_dir(), 'checkpoints', FID_WEIGHTS_FILE)]
    for path in candidates:
        if osp.isfile(path):
            return path
    raise InceptionWeightsMissing(
        f'FID Inception weights {FID_WEIGHTS_FILE} not found (looked at: {", ".join(candidates)}). Download it from '
        f'{FID_WEIGHTS_URL} and put it in {resolve_weights_dir(weights_dir_)}/ (--weights-dir or '
        f'${WEIGHTS_ENV} choose another folder), or pass --inception-weights FILE. Nothing is downloaded.')


def _random_inception_state_dict(seed):
    """State dict with the FID Inception's keys and shapes (torchvision's 1008-class Inception v3), random values."""
    from torchvision.models import inception_v3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True).state_dict()


@contextmanager
def _basicsr_inception_loading(state_dict):
    """Make BasicSR's ``fid_inception_v3`` load ``state_dict`` instead of reading or downloading a file."""
    import basicsr.archs.inception as basicsr_inception
    with mock.patch.object(basicsr_inception, 'LOCAL_FID_WEIGHTS', _NO_SUCH_FILE), \
            mock.patch.object(basicsr_inception, 'load_url', lambda *args, **kwargs: state_dict), \
            warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # torchvision's deprecated ``pretrained`` argument
        yield basicsr_inception


class FIDInception:
    """BasicSR's FID InceptionV3 turning BGR uint8 images into ``dims``-sized feature vectors."""

    def __init__(self, weights_path=None, weights_dir_=None, dims=2048, random_init_seed=None, batch_size=16,
                 device='cpu'):
        if dims not in FID_DIMS:
            raise ValueError(f'FID dims must be one of {sorted(FID_DIMS)}, got {dims}')
        if random_init_seed is None:
            path = find_inception_weights(weights_path, weights_dir_)
            state_dict = read_checkpoint(path, '--inception-weights' if weights_path else None,
                                         f'the FID Inception weights {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL})')
            self.weights = FID_WEIGHTS_FILE if osp.basename(path) == FID_WEIGHTS_FILE else osp.basename(path)
        else:
            state_dict = _random_inception_state_dict(random_init_seed)
            self.weights = f'RANDOM INIT (seed {random_init_seed}, tests only)'
        with _basicsr_inception_loading(state_dict) as basicsr_inception:
            self.net = basicsr_inception.InceptionV3([FID_DIMS[dims]], resize_input=False, normalize_input=False)
        self.net.eval().to(device)
        self.dims, self.batch_size, self.device = dims, batch_size, device
        self.backend = f'basicsr InceptionV3 (FID variant, output block {FID_DIMS[dims]}, {dims} dims), ' \
                       f'weights {self.weights}'
        self._pending, self._features = [], []

    def add(self, img_bgr):
        """Queue one image; features are computed a batch at a time."""
        rgb = torch.from_numpy(np.ascontiguousarray(img_bgr[:, :, ::-1])).permute(2, 0, 1)[None].float() / 255.0
        rgb = F.interpolate(rgb, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode='bilinear', align_corners=False)
        self._pending.append(rgb * 2 - 1)
        if len(self._pending) >= self.batch_size:
            self._flush()

    @torch.no_grad()
    def _flush(self):
        if self._pending:
            feature = self.net(torch.cat(self._pending).to(self.device))[0]
            feature = F.adaptive_avg_pool2d(feature, 1).flatten(1)
            self._features.append(feature.double().cpu().numpy())
            self._pending = []

    def take_features(self):
        """(N, dims) float64 features of every image added since the last call."""
        self._flush()
        features = np.concatenate(self._features) if self._features else np.zeros((0, self.dims))
        self._features = []
        return features


def feature_statistics(features):
    """``(mu, sigma)`` of (N, D) features, N >= 2."""
    if len(features) < 2:
        raise EvaluationError(f'FID needs at least 2 images, got {len(features)}')
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with Tr((S1 S2)^(1/2)) = sum sqrt eig(R S2 R), R = S1^(1/2)."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    # a distance: rounding can take identical statistics a hair below zero
    return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt))


def save_statistics(path, mu, sigma, num_images, inception_weights, source):
    """Write ``mu``/``sigma`` and how they were made to ``path`` (.npz)."""
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:  # a file object: numpy adds no second .npz
        np.savez(f, mu=mu, sigma=sigma, num_images=num_images, inception_weights=inception_weights,
                 resize=FID_RESIZE_RULE, source=str(source))


def load_statistics(path, inception):
    """``(mu, sigma, info)`` from an .npz (``mu``, ``sigma``) or a BasicSR .pth (``mean``, ``cov``).

    Statistics made with other dims or other Inception weights than ``inception`` are refused.
    """
    expected = 'FID statistics: mu/sigma in .npz (dlst-evaluate --save-stats) or mean/cov in a BasicSR .pth'
    if not osp.isfile(path):
        raise EvaluationSetupError(f'--reference-stats {path}: no such file; expected {expected}')
    try:
        if str(path).endswith('.npz'):
            data = dict(np.load(path, allow_pickle=False))
            mu, sigma = data['mu'], data['sigma']
        else:
            data = read_checkpoint(path, '--reference-stats', expected)
            mu, sigma = np.asarray(data['mean']), np.asarray(data['cov'])
    except KeyError as err:
        raise EvaluationSetupError(f'--reference-stats {path} lacks key {err}; expected {expected}') from None
    except EvaluationError:
        raise
    except Exception as err:  # corrupt or foreign file
        raise EvaluationSetupError(f'--reference-stats {path}: cannot read it ({err}); expected {expected}') \
            from None
    if mu.shape != (inception.dims,) or sigma.shape != (inception.dims, inception.dims):
        raise EvaluationSetupError(f'--reference-stats {path} holds {mu.shape[0]}-dim statistics but FID uses '
                                   f'{inception.dims} dims (--fid-dims)')
    weights = str(data['inception_weights']) if 'inception_weights' in data else None
    if weights is not None and weights != inception.weights:
        raise EvaluationSetupError(f'--reference-stats {path} was made with Inception weights "{weights}", '
                                   f'this run uses "{inception.weights}"')
    info = {'file': str(path), 'num_images': int(data['num_images']) if 'num_images' in data else None,
            'inception_weights': weights, 'resize': str(data['resize']) if 'resize' in data else 'unknown'}
    return mu, sigma, info
