"""The ``metrics`` extra: pyiqa's NIQE, fed BasicSR's parameters offline, agrees with BasicSR's NIQE.

Both backends implement the same NIQE (Mittal et al.) with the same pristine-model parameters
(``basicsr/metrics/niqe_pris_params.npz``); they differ in the details: the MATLAB-style bicubic
downscaling (NumPy vs PyTorch), the borders of the local normalisation and the search of the AGGD shape
parameter. NIQE fits a 36-D Gaussian to only a few 96 px blocks (25 at 512 px, 4 at 192 px), so these
small differences move the score by a few percent. Measured on the images below (the three sample
photos clean, blurred, noisy, JPEG-compressed and halved): at most 6.1 % per image, 1.8 % on average,
and 0.3 % on the demo's restored faces (12.12 vs 12.08). Tolerances: 10 % per image and 4 % for the
mean of the set, with room for other CPUs and library versions, and far below the gaps NIQE is used to
tell apart (blur adds 60-160 % here).
"""
import json

import cv2
import numpy as np
import pytest
from helpers import REPO, SAMPLE_FACES, run

from dlst_plugin.metrics.niqe import BasicSRNIQE, PyiqaNIQE, upscale_for_niqe

PER_IMAGE_TOLERANCE = 0.10
MEAN_TOLERANCE = 0.04


def variants():
    """The sample photos, clean and degraded four ways (all at least 256 px)."""
    rng = np.random.default_rng(0)
    for path in sorted(SAMPLE_FACES.glob('*.*g')):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        jpeg = cv2.imdecode(cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 25])[1], cv2.IMREAD_COLOR)
        yield f'{path.stem}_clean', img
        yield f'{path.stem}_blur', cv2.GaussianBlur(img, (0, 0), 2)
        yield f'{path.stem}_noise', np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        yield f'{path.stem}_jpeg', jpeg
        yield f'{path.stem}_half', cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope='module')
def scores():
    basicsr, pyiqa = BasicSRNIQE(), PyiqaNIQE()
    return {name: (basicsr(upscale_for_niqe(img)[0]), pyiqa(upscale_for_niqe(img)[0])) for name, img in variants()}


def test_pyiqa_niqe_agrees_with_basicsr_niqe(scores):
    rel = {name: (p - b) / b for name, (b, p) in scores.items()}
    worst = max(rel, key=lambda n: abs(rel[n]))
    assert abs(rel[worst]) <= PER_IMAGE_TOLERANCE, (worst, scores[worst])
    assert abs(np.mean([p for _, p in scores.values()]) / np.mean([b for b, _ in scores.values()]) - 1) \
        <= MEAN_TOLERANCE
    assert np.mean([abs(r) for r in rel.values()]) <= MEAN_TOLERANCE


def test_both_backends_rank_blur_as_worse(scores):
    for stem in ('astronaut', 'camera', 'grace_hopper'):
        for backend in (0, 1):
            assert scores[f'{stem}_blur'][backend] > scores[f'{stem}_clean'][backend] * 1.5


@pytest.mark.slow  # the command, end to end
def test_dlst_evaluate_reports_both_backends_offline(tmp_path):
    folder = tmp_path / 'faces'
    folder.mkdir()
    for name, img in list(variants())[:5]:
        cv2.imwrite(str(folder / f'{name}.png'), img)
    run(['python', '-m', 'dlst_plugin.cli.evaluate', '--restored', f'faces={folder}', '--metrics', 'niqe',
         '--niqe-backend', 'both', '--out', tmp_path / 'eval'], cwd=REPO, timeout=600,
        HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1)
    metrics = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())['methods'][0]['metrics']
    assert 'pyiqa' in metrics['niqe_pyiqa']['backend'] and 'basicsr' in metrics['niqe']['backend']
    for stem, value in metrics['niqe']['per_image'].items():
        assert abs(metrics['niqe_pyiqa']['per_image'][stem] / value - 1) <= PER_IMAGE_TOLERANCE, stem
