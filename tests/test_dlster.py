"""DLSTer, the GFPGANer drop-in: a script written the way Real-ESRGAN's ``--face_enhance`` calls GFPGANer runs
with the class swapped, and ``enhance``'s arguments and results behave as GFP-GAN's."""
import textwrap

import cv2
import numpy as np
import pytest
from helpers import SAMPLE_FACES, run
from tiny_restorers import TINY_GLEAN, TINY_ST, save_training_checkpoint

from dlst_plugin import DLSTer
from dlst_plugin.loading.networks import RestoreSetupError

PHOTOS = ('astronaut.png', 'camera.png', 'grace_hopper.jpg')
WITH_FACES = ('astronaut.png', 'grace_hopper.jpg')

# How Real-ESRGAN's inference script enhances faces (constructor arguments, the enhance call, the
# background upsampler's interface), with DLSTer in GFPGANer's place and a stand-in for RealESRGANer.
SCRIPT = textwrap.dedent('''
    import argparse
    import glob
    import os

    import cv2

    from dlst_plugin import DLSTer as GFPGANer


    class ResizeUpsampler:
        """RealESRGANer's interface: enhance(img, outscale=...) -> (image, image mode)."""

        def enhance(self, img, outscale=None):
            h, w = img.shape[:2]
            return cv2.resize(img, (int(w * outscale), int(h * outscale)), interpolation=cv2.INTER_CUBIC), 'RGB'


    parser = argparse.ArgumentParser()
    parser.add_argument('-i', '--input')
    parser.add_argument('-o', '--output')
    parser.add_argument('--model_path')
    parser.add_argument('-s', '--outscale', type=float, default=2)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    upsampler = ResizeUpsampler()
    face_enhancer = GFPGANer(model_path=args.model_path, upscale=args.outscale, arch='clean', channel_multiplier=2,
                             bg_upsampler=upsampler)
    for path in sorted(glob.glob(os.path.join(args.input, '*.[jp][pn]g'))):
        imgname, _ = os.path.splitext(os.path.basename(path))
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        _, _, output = face_enhancer.enhance(img, has_aligned=False, only_center_face=False, paste_back=True)
        cv2.imwrite(os.path.join(args.output, f'{imgname}_out.png'), output)
        print(imgname, output.shape)
''')


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return save_training_checkpoint(tmp_path_factory.mktemp('dlster') / 'net_g_latest.pth', TINY_ST)[0]


@pytest.fixture(scope='module')
def enhancer(model):
    return DLSTer(model_path=str(model), upscale=2, arch='clean', channel_multiplier=2, device='cpu')


def photo(name):
    return cv2.imread(str(SAMPLE_FACES / name), cv2.IMREAD_UNCHANGED)


def test_real_esrgan_style_script_runs_with_the_class_swapped(tmp_path, model):
    (tmp_path / 'inference.py').write_text(SCRIPT)
    proc = run(['python', tmp_path / 'inference.py', '-i', SAMPLE_FACES, '-o', tmp_path / 'results', '--model_path',
                model, '--outscale', 2], cwd=tmp_path)
    assert len(proc.stdout.strip().splitlines()) == len(PHOTOS)
    for name in PHOTOS:
        src = photo(name)
        h, w = src.shape[:2]
        out = cv2.imread(str(tmp_path / 'results' / f'{name.rsplit(".", 1)[0]}_out.png'), cv2.IMREAD_UNCHANGED)
        assert out.shape == (2 * h, 2 * w, 3) and out.dtype == np.uint8
        if name in WITH_FACES:
            background = cv2.resize(src, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)  # what the stand-in gives
            changed = np.any(out != background, axis=2)
            assert 0.01 < changed.mean() < 0.5  # the face was restored and pasted, the rest is the background


def test_enhance_returns_faces_and_photo_at_the_upscale(enhancer):
    img = photo('astronaut.png')
    cropped, restored, out = enhancer.enhance(img)
    assert len(cropped) == len(restored) == 1
    assert cropped[0].shape == restored[0].shape == (32, 32, 3) and restored[0].dtype == np.uint8
    assert out.shape == (1024, 1024, 3) and not np.array_equal(cropped[0], restored[0])


def test_weight_changes_nothing_as_in_gfpgan(enhancer):
    img = photo('grace_hopper.jpg')
    assert np.array_equal(enhancer.enhance(img, weight=0.0)[2], enhancer.enhance(img, weight=1.0)[2])


def test_paste_back_off_and_aligned_input_give_no_photo(enhancer):
    img = photo('grace_hopper.jpg')
    cropped, restored, out = enhancer.enhance(img, paste_back=False)
    assert out is None and len(restored) == 1
    face = cv2.resize(img[106:346, 147:387], (100, 100))
    cropped, restored, out = enhancer.enhance(face, has_aligned=True)
    assert out is None and cropped[0].shape == restored[0].shape == (32, 32, 3)


def test_only_center_face_keeps_one(enhancer):
    img = photo('astronaut.png')
    smaller = np.zeros_like(img)
    smaller[:384, :384] = cv2.resize(img, (384, 384), interpolation=cv2.INTER_AREA)
    two = np.hstack([smaller, img, smaller])
    assert len(enhancer.enhance(two, paste_back=False)[1]) >= 2
    assert len(enhancer.enhance(two, only_center_face=True, paste_back=False)[1]) == 1


def test_no_face_gives_the_background(enhancer):
    img = np.full((64, 80, 3), 128, np.uint8)
    cropped, restored, out = enhancer.enhance(img)
    assert cropped == [] and restored == [] and out.shape == (128, 160, 3)


def test_fractional_upscale_and_grey_input(model):
    enhancer = DLSTer(str(model), upscale=1.5, device='cpu')
    out = enhancer.enhance(photo('camera.png'))[2]
    assert out.shape == (768, 768, 3)


def test_glean_super_resolution_checkpoint(tmp_path):
    path, _ = save_training_checkpoint(tmp_path / 'glean.pth', TINY_GLEAN)
    enhancer = DLSTer(str(path), upscale=1, arch='GLEANStyleGAN2', device='cpu')
    cropped, restored, out = enhancer.enhance(photo('grace_hopper.jpg'))
    assert cropped[0].shape == restored[0].shape == (32, 32, 3) and out.shape == (600, 512, 3)


@pytest.mark.parametrize('kwargs, message', [
    ({'arch': 'GLEANStyleGAN2'}, "holds a SkipTransformer; pass arch='SkipTransformer'"),
    ({'upscale': 0}, 'must be a positive number'),
])
def test_bad_arguments_are_errors(model, kwargs, message):
    with pytest.raises(RestoreSetupError, match=message):
        DLSTer(str(model), device='cpu', **kwargs)


def test_urls_are_not_downloaded():
    with pytest.raises(RestoreSetupError, match='download it first'):
        DLSTer('https://example.org/GFPGANv1.4.pth')
