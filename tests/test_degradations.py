"""GFP-GAN's degradation recipe as a pure function (dlst_plugin.data.degradations, docs/design.md#second-order-set)."""
import math
import random

import cv2
import numpy as np
import pytest
import torch
from basicsr.data.degradations import bivariate_Gaussian
from torchvision.transforms import functional as TF

import dlst_plugin  # noqa: F401
from dlst_plugin.data import image_ops
from dlst_plugin.data.degradations import DegradationParams, FaceDegradation, apply_degradation, degrade

# every stage off: blur sigma 0.1 is a delta kernel, scale 1 keeps the size
ALL_OFF = dict(blur_sigma=[0.1, 0.1], kernel_list=['iso'], kernel_prob=[1], downsample_range=[1, 1],
               noise_range=None, jpeg_range=None, color_jitter_prob=None, color_jitter_pt_prob=None, gray_prob=None,
               use_hflip=False)


def only(**changes):
    return FaceDegradation.from_opt(dict(ALL_OFF, **changes))


def face(h=40, w=40, seed=0):
    """A float32 BGR image on 8-bit levels with smooth structure and texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.3 + 0.4 * xx, 0.5 + 0.3 * np.sin(6 * yy), 0.6 - 0.3 * xx * yy], axis=2)
    img = np.clip(base + rng.normal(0, 0.08, (h, w, 3)), 0, 1)
    return (np.round(img * 255) / 255).astype(np.float32)


def flat(value=0.5, size=48):
    return np.full((size, size, 3), np.float32(round(value * 255) / 255), dtype=np.float32)


def test_defaults_are_gfpgan_train_v1_options():
    cfg = FaceDegradation()
    assert (cfg.blur_kernel_size, cfg.kernel_list, cfg.kernel_prob, cfg.blur_sigma) == (41, ('iso', 'aniso'),
                                                                                         (0.5, 0.5), (0.1, 10.0))
    assert (cfg.downsample_range, cfg.noise_range, cfg.jpeg_range) == ((0.8, 8.0), (0.0, 20.0), (60.0, 100.0))
    assert (cfg.color_jitter_prob, cfg.color_jitter_shift, cfg.gray_prob) == (0.3, 20.0, 0.01)
    assert cfg.rotation_range == (-math.pi, math.pi) and cfg.use_hflip


@pytest.mark.parametrize('sigmas', [(3.0, None, 0.0), (8.0, 2.0, 0.7), (0.5, 9.0, -2.0)])
def test_kernel_equals_basicsr_bivariate_gaussian(sigmas):
    sx, sy, theta = sigmas
    ref = bivariate_Gaussian(41, sx, sy or sx, theta, isotropic=sy is None)
    np.testing.assert_allclose(image_ops.gaussian_kernel(41, sx, sy, theta), ref, atol=1e-12)


@pytest.mark.parametrize('shape', [(40, 36, 3), (16, 16, 3), (24, 20)])
@pytest.mark.parametrize('sigmas', [(9.0, None), (0.7, None), (1.0, 1.5), (9.0, 3.0)])  # sep, direct, FFT paths
def test_blur_equals_filter2d_with_full_kernel(shape, sigmas):
    img = np.random.default_rng(1).random(shape, dtype=np.float32)
    sx, sy = sigmas
    ref = cv2.filter2D(img, -1, bivariate_Gaussian(41, sx, sy or sx, 0.4, isotropic=sy is None))
    out = image_ops.gaussian_blur(img, 41, sx, sy, 0.4)
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=image_ops.KERNEL_TAIL + 1e-5)


def test_sampled_parameters_honour_default_ranges():
    cfg, rng = FaceDegradation(), np.random.default_rng(0)
    draws = [cfg.sample(rng) for _ in range(3000)]

    def values(name):
        return np.array([getattr(p, name) for p in draws if getattr(p, name) is not None], dtype=np.float64)

    for name, (lo, hi) in [('sigma_x', cfg.blur_sigma), ('sigma_y', cfg.blur_sigma), ('theta', cfg.rotation_range),
                           ('scale', cfg.downsample_range), ('noise_sigma', cfg.noise_range),
                           ('jpeg_quality', cfg.jpeg_range)]:
        v = values(name)
        span = hi - lo
        assert lo <= v.min() <= lo + 0.02 * span and hi - 0.03 * span <= v.max() <= hi, name  # inside, and covered
    assert all(float(q).is_integer() for q in values('jpeg_quality'))
    aniso = np.mean([p.kernel_type == 'aniso' for p in draws])
    assert 0.45 < aniso < 0.55 and all((p.sigma_y is None) == (p.kernel_type == 'iso') for p in draws)
    assert 0.45 < np.mean([p.hflip for p in draws]) < 0.55
    shifts = [p.colour_shift for p in draws if p.colour_shift is not None]
    assert 0.27 < len(shifts) / len(draws) < 0.33 and np.abs(shifts).max() <= 20 / 255
    assert 0.27 < np.mean([p.jitter_order is not None for p in draws]) < 0.33
    factors = np.array([p.jitter_factors for p in draws if p.jitter_factors is not None])
    for i, (lo, hi) in enumerate([cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue]):
        assert lo <= factors[:, i].min() and factors[:, i].max() <= hi
    assert 10 <= sum(p.gray for p in draws) <= 55  # gray_prob 0.01: binomial(3000, 0.01) ~ 30 +- 5.4


def test_sampled_parameters_honour_custom_ranges():
    cfg = FaceDegradation.from_opt({'blur_sigma': [2, 3], 'downsample_range': [1.5, 2], 'noise_range': [5, 6],
                                    'jpeg_range': [30, 40], 'kernel_list': ['aniso'], 'kernel_prob': [1],
                                    'rotation_range': [0, 0.1], 'use_hflip': False, 'color_jitter_prob': 1,
                                    'color_jitter_shift': 5, 'gray_prob': 1})
    rng = np.random.default_rng(3)
    for p in (cfg.sample(rng) for _ in range(300)):
        assert 2 <= p.sigma_x <= 3 and 2 <= p.sigma_y <= 3 and 0 <= p.theta <= 0.1 and 1.5 <= p.scale <= 2
        assert 5 <= p.noise_sigma <= 6 and 30 <= p.jpeg_quality <= 40 and not p.hflip and p.gray
        assert p.kernel_type == 'aniso' and max(abs(s) for s in p.colour_shift) <= 5 / 255


def test_same_seed_same_result_other_seed_other_result():
    img = face()
    a = degrade(img, np.random.default_rng(7))
    b = degrade(img, np.random.default_rng(7))
    c = degrade(img, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_params_reproduce_the_sample():
    img = face()
    lq, gt, params = degrade(img, np.random.default_rng(5), return_params=True)
    assert isinstance(params, DegradationParams)
    lq2, gt2 = apply_degradation(img, params)
    assert np.array_equal(lq, lq2) and np.array_equal(gt, gt2)


def test_global_random_state_untouched():
    np_state, py_state, torch_state = np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state()
    for seed in range(5):
        degrade(face(), np.random.default_rng(seed), FaceDegradation(color_jitter_pt_prob=1.0, gray_prob=1.0))
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize('shape', [(37, 29, 3), (29, 37), (33, 31, 1), (8, 8, 3)])
def test_output_keeps_shape_dtype_and_range(shape):
    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    cfg = FaceDegradation(gray_prob=0.5, color_jitter_pt_prob=0.5, color_jitter_prob=0.5)
    for seed in range(6):
        lq, gt = degrade(img, np.random.default_rng(seed), cfg)
        assert lq.shape == gt.shape == shape and lq.dtype == gt.dtype == np.float32
        assert 0 <= lq.min() and lq.max() <= 1
        assert np.allclose(lq * 255, np.round(lq * 255), atol=1e-3)  # 8-bit levels, as GFP-GAN


def test_all_stages_off_is_identity():
    img = face()
    lq, gt = degrade(img, np.random.default_rng(0), only())
    np.testing.assert_allclose(lq, img, atol=1e-6)
    assert np.array_equal(gt, img)


def test_blur_stage_smooths_like_filter2d():
    img = face()
    lq, _, p = degrade(img, np.random.default_rng(0), only(blur_sigma=[3, 3]), return_params=True)
    ref = cv2.filter2D(img, -1, bivariate_Gaussian(41, 3, 3, 0, isotropic=True))
    assert np.abs(lq - ref).max() <= 0.5 / 255 + 1e-5 and p.sigma_x == 3
    assert cv2.Laplacian(lq, cv2.CV_32F).var() < 0.1 * cv2.Laplacian(img, cv2.CV_32F).var()


def test_downsample_stage_shrinks_then_resizes_back():
    img = face()
    lq, _, p = degrade(img, np.random.default_rng(0), only(downsample_range=[4, 4]), return_params=True)
    small = cv2.resize(img, (10, 10), interpolation=cv2.INTER_LINEAR)
    ref = cv2.resize(small, (40, 40), interpolation=cv2.INTER_LINEAR)
    assert p.scale == 4 and lq.shape == img.shape
    assert np.abs(lq - ref).max() <= 0.5 / 255 + 1e-5 and np.abs(lq - img).mean() > 0.02


def test_noise_stage_adds_noise_of_the_drawn_sigma():
    img = flat(0.5, size=96)
    lq, gt, p = degrade(img, np.random.default_rng(0), only(noise_range=[20, 20]), return_params=True)
    assert p.noise_sigma == 20
    assert abs((lq - gt).std() * 255 - 20) < 1.0 and abs((lq - gt).mean()) < 1 / 255


def test_jpeg_stage_uses_the_drawn_integer_quality():
    img = face()
    lq, _, p = degrade(img, np.random.default_rng(0), only(jpeg_range=[10, 10]), return_params=True)
    ok, buf = cv2.imencode('.jpg', np.rint(img * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])
    ref = cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float32) / 255
    assert p.jpeg_quality == 10 and np.abs(lq - ref).max() < 1e-6 and np.abs(lq - img).mean() > 0.01


def test_colour_shift_stage_adds_the_drawn_shift():
    img = flat(0.5)
    lq, _, p = degrade(img, np.random.default_rng(0), only(color_jitter_prob=1, color_jitter_shift=20),
                       return_params=True)
    assert p.colour_shift is not None and max(abs(s) for s in p.colour_shift) <= 20 / 255
    np.testing.assert_allclose(lq.reshape(-1, 3).mean(0) - img[0, 0], p.colour_shift, atol=0.6 / 255)


@pytest.mark.parametrize('gt_gray', [False, True])
def test_gray_stage_grays_lq_and_gt_only_with_gt_gray(gt_gray):
    img = face()
    lq, gt = degrade(img, np.random.default_rng(0), only(gray_prob=1, gt_gray=gt_gray))
    assert np.array_equal(lq[..., 0], lq[..., 1]) and np.array_equal(lq[..., 1], lq[..., 2])
    if gt_gray:
        assert np.array_equal(gt[..., 0], gt[..., 2])
    else:
        assert np.array_equal(gt, img)


def test_hflip_flips_gt_and_lq():
    img = face()
    cfg = only(use_hflip=True)
    for seed in range(20):
        lq, gt, p = degrade(img, np.random.default_rng(seed), cfg, return_params=True)
        assert np.array_equal(gt, img[:, ::-1] if p.hflip else img)
        np.testing.assert_allclose(lq, gt, atol=1e-6)


@pytest.mark.parametrize('op, factor', [(0, 1.4), (1, 0.6), (2, 1.3), (3, 0.07), (3, -0.1)])
def test_colour_jitter_ops_match_torchvision(op, factor):
    img = face()
    tensor = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))
    ref_fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)[op]
    ref = ref_fn(tensor, factor).numpy().transpose(1, 2, 0)[..., ::-1]
    np.testing.assert_allclose(image_ops.JITTER_OPS[op](img, factor), ref, atol=2e-5)


def test_colour_jitter_stage_applies_drawn_factors_in_order():
    img = face()
    lq, _, p = degrade(img, np.random.default_rng(0), only(color_jitter_pt_prob=1), return_params=True)
    ref = img
    for op in p.jitter_order:
        ref = image_ops.JITTER_OPS[op](ref, p.jitter_factors[op])
    assert sorted(p.jitter_order) == [0, 1, 2, 3] and np.abs(lq - ref).max() <= 0.5 / 255 + 1e-6
    assert np.abs(lq - img).mean() > 1e-3


@pytest.mark.parametrize('opt, key', [
    ({'blur_sigmaa': [1, 2]}, 'blur_sigmaa'),
    ({'blur_sigma': [5, 1]}, 'blur_sigma'),
    ({'downsample_range': [8, 0.8]}, 'downsample_range'),
    ({'jpeg_range': [60, 120]}, 'jpeg_range'),
    ({'noise_range': [-1, 5]}, 'noise_range'),
    ({'blur_kernel_size': 40}, 'blur_kernel_size'),
    ({'kernel_list': ['iso', 'plateau'], 'kernel_prob': [0.5, 0.5]}, 'kernel_list'),
    ({'kernel_prob': [1.0]}, 'kernel_prob'),
    ({'gray_prob': 1.5}, 'gray_prob'),
    ({'hue': [0.1]}, 'hue'),
])
def test_from_opt_rejects_bad_options_naming_the_key(opt, key):
    with pytest.raises(ValueError, match=key):
        FaceDegradation.from_opt(opt)


def test_from_opt_reads_yaml_lists_and_nulls():
    cfg = FaceDegradation.from_opt({'blur_sigma': [1, 2], 'noise_range': None, 'other': 1}, strict=False)
    assert cfg.blur_sigma == (1, 2) and cfg.noise_range is None and hash(cfg)
    assert cfg.sample(np.random.default_rng(0)).noise_sigma is None


def test_degrade_rejects_global_rng_and_uint8():
    with pytest.raises(TypeError, match='Generator'):
        degrade(face(), np.random)
    with pytest.raises(TypeError, match='float32'):
        degrade((face() * 255).astype(np.uint8), np.random.default_rng(0))
