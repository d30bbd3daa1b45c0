"""dlst-restore and dlst_plugin.inference.face_restorer: sample photos with a tiny random Skip-Transformer,
paste-back locality and feather scaling, and every bad-input case of the issue."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers import REPO, SAMPLE_FACES, call_main, run

from dlst_plugin.inference import face_restorer as restoration
from dlst_plugin.inference.face_restorer import FaceRestorer, face_region, paste_back, to_bgr8
from dlst_plugin.loading import networks
from dlst_plugin.loading.networks import RestoreError, resolve_device

TINY_NETWORK = {'type': 'SkipTransformer', 'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2,
                'channel_multiplier': 1, 'narrow': 0.03125, 'attention': True}
PHOTOS = ('astronaut.png', 'grace_hopper.jpg')


def write_tiny_model(folder, network=TINY_NETWORK, seed=0):
    """(checkpoint, option file) of a randomly initialised tiny restorer."""
    from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
    torch.manual_seed(seed)
    net = SkipTransformer(**{k: v for k, v in network.items() if k != 'type'})
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, opt = folder / 'net_g_tiny.pth', folder / 'tiny_restore.yml'
    torch.save({'params_ema': net.state_dict()}, ckpt)
    opt.write_text(yaml.safe_dump({'name': 'tiny_restore', 'network_g': dict(network)}))
    return ckpt, opt


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp('tiny_model'))


@pytest.fixture(scope='module')
def restorer(tiny_model):
    ckpt, opt = tiny_model
    return FaceRestorer.from_files(str(ckpt), opt=str(opt), device='cpu')


def restore_cli(inputs, out, tiny_model, *extra, check=False, **env):
    ckpt, opt = tiny_model
    return run(['python', '-m', 'dlst_plugin.cli.restore', '-i', *map(str, inputs), '-o', out, '--model', ckpt,
                '--opt', opt, *extra], cwd=out.parent, check=check, **env)


@pytest.mark.slow
def test_cli_restores_sample_photos(tmp_path, tiny_model):
    out = tmp_path / 'out'
    proc = restore_cli([SAMPLE_FACES / p for p in PHOTOS], out, tiny_model, '--compare', check=True)
    assert '2 ok, 0 failed' in proc.stdout
    for photo in PHOTOS:
        src = cv2.imread(str(SAMPLE_FACES / photo))
        name = photo.rsplit('.', 1)[0]
        assert cv2.imread(str(out / 'restored_imgs' / f'{name}.png')).shape == src.shape
        assert cv2.imread(str(out / 'restored_faces' / f'{name}_00.png')).shape == (32, 32, 3)
        assert cv2.imread(str(out / 'cmp' / f'{name}.png')).shape == (src.shape[0], 2 * src.shape[1], 3)


@pytest.mark.parametrize('photo', PHOTOS)
def test_paste_back_changes_only_face_regions(restorer, photo):
    img = cv2.imread(str(SAMPLE_FACES / photo))
    result = restorer.restore_image(img)
    assert len(result.faces) == 1
    changed = np.any(result.image != img, axis=2)
    x1, y1, x2, y2 = np.round(result.boxes[0]).astype(int)
    assert changed[y1:y2, x1:x2].mean() > 0.5  # the face itself was replaced
    x0, y0, x1, y1 = face_region(result.affines[0], restorer.face_size, img.shape)
    changed[y0:y1, x0:x1] = False
    assert not changed.any()  # nothing outside the face's aligned square


def _ramp_width(scale):
    """Pixels of partial blend along the middle row when a 64 px white face is pasted ``scale`` x larger."""
    img = np.zeros((300, 300, 3), np.uint8)
    affine = np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]])  # photo px -> aligned face px
    paste_back(img, np.full((64, 64, 3), 255, np.uint8), affine)
    row = img[int(32 * scale), :, 0]
    return int(((row > 5) & (row < 250)).sum())


def test_paste_back_feather_scales_with_face_size():
    small, large = _ramp_width(1), _ramp_width(4)
    assert small > 0
    assert 3 <= large / small <= 5


def test_face_selection_all_versus_largest(restorer, monkeypatch):
    img = cv2.imread(str(SAMPLE_FACES / 'astronaut.png'))
    smaller = np.zeros_like(img)
    smaller[:384, :384] = cv2.resize(img, (384, 384), interpolation=cv2.INTER_AREA)
    two_faces = np.hstack([img, smaller])
    assert len(restorer.restore_image(two_faces).faces) == 2
    monkeypatch.setattr(restorer, 'select', 'largest')
    largest = restorer.restore_image(two_faces)
    assert len(largest.faces) == 1 and largest.boxes[0][0] < img.shape[1]  # the full-size face, on the left


def test_bfloat16_on_cpu_restores(tiny_model):
    ckpt, opt = tiny_model
    restorer = FaceRestorer.from_files(str(ckpt), opt=str(opt), device='cpu', dtype='bfloat16')
    restorer.batch_size = 2
    faces = restorer.restore_faces([np.full((32, 32, 3), 128, np.uint8)] * 3)  # two batches: 2 + 1
    assert len(faces) == 3 and faces[2].shape == (32, 32, 3) and faces[2].dtype == np.uint8


def test_float16_on_cpu_is_refused():
    with pytest.raises(RestoreError, match='float16 runs on CUDA only'):
        resolve_device('cpu', 'float16')


def test_huge_image_is_refused(monkeypatch):
    monkeypatch.setattr(restoration, 'MAX_IMAGE_PIXELS', 100 * 100)
    with pytest.raises(RestoreError, match='megapixels'):
        to_bgr8(np.zeros((101, 100, 3), np.uint8))


def test_large_photo_keeps_full_resolution(restorer):
    img = cv2.resize(cv2.imread(str(SAMPLE_FACES / 'astronaut.png')), (1800, 1800), interpolation=cv2.INTER_CUBIC)
    result = restorer.restore_image(img)  # detected on a downscaled copy, pasted at full resolution
    assert result.image.shape == img.shape and len(result.faces) == 1


# -- bad inputs: one in-process run of the command over a folder of odd files ----------------------

def run_main(argv):
    """(exit code, stdout, stderr) of dlst-restore's main, in this process."""
    from dlst_plugin.cli.restore import main
    return call_main(main, argv)


@pytest.fixture(scope='module')
def odd_inputs_run(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp('odd_inputs')
    photo = cv2.imread(str(SAMPLE_FACES / 'astronaut.png'))
    alpha = np.tile(np.linspace(0, 255, photo.shape[1], dtype=np.uint8), (photo.shape[0], 1))
    cv2.imwrite(str(folder / 'gray.png'), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / 'rgba.png'), np.dstack([photo, alpha]))
    cv2.imwrite(str(folder / 'deep.png'), photo.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'noface.png'), np.full((64, 64, 3), 128, np.uint8))
    cv2.imwrite(str(folder / 'tiny.png'), np.full((8, 8, 3), 128, np.uint8))
    (folder / 'notimage.png').write_text('not pixels')
    (folder / 'empty.png').write_bytes(b'')
    out = folder.parent / (folder.name + '_out')
    ckpt, opt = tiny_model
    code, stdout, stderr = run_main(['-i', folder, folder / 'missing.jpg', '-o', out, '--model', ckpt, '--opt', opt])
    return {'code': code, 'stdout': stdout, 'stderr': stderr, 'out': out, 'alpha': alpha}


def test_bad_inputs_give_summary_and_exit_1(odd_inputs_run):
    assert odd_inputs_run['code'] == 1
    assert '3 ok, 5 failed' in odd_inputs_run['stdout']


@pytest.mark.parametrize('name, reason', [('noface.png', 'no face found'), ('tiny.png', 'too small'),
                                          ('notimage.png', 'not an image'), ('empty.png', 'empty file'),
                                          ('missing.jpg', 'no such file')])
def test_bad_input_is_reported_by_name(odd_inputs_run, name, reason):
    lines = [line for line in odd_inputs_run['stdout'].splitlines() if 'failed: ' in line and name in line]
    assert len(lines) == 1 and reason in lines[0]
    assert not (odd_inputs_run['out'] / 'restored_imgs' / name.replace('.jpg', '.png')).exists()


def test_rgba_input_keeps_its_alpha(odd_inputs_run):
    out = cv2.imread(str(odd_inputs_run['out'] / 'restored_imgs' / 'rgba.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape[2] == 4 and np.array_equal(out[:, :, 3], odd_inputs_run['alpha'])


def test_16bit_input_is_written_as_8bit_with_a_note(odd_inputs_run):
    out = cv2.imread(str(odd_inputs_run['out'] / 'restored_imgs' / 'deep.png'), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    assert 'deep.png: 16-bit image scaled to 8 bits' in odd_inputs_run['stderr']


def test_grayscale_input_is_written_grayscale(odd_inputs_run):
    out = cv2.imread(str(odd_inputs_run['out'] / 'restored_imgs' / 'gray.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape == (512, 512)
    assert cv2.imread(str(odd_inputs_run['out'] / 'restored_faces' / 'gray_00.png')).shape == (32, 32, 3)


# -- options ----------------------------------------------------------------------------------------

def test_aligned_input_is_restored_without_detection(tmp_path, tiny_model):
    face = cv2.resize(cv2.imread(str(SAMPLE_FACES / 'astronaut.png'))[48:188, 152:292], (64, 64))
    cv2.imwrite(str(tmp_path / 'face.png'), face)
    ckpt, opt = tiny_model
    code, stdout, _ = run_main(['-i', tmp_path / 'face.png', '-o', tmp_path / 'out', '--model', ckpt, '--opt', opt,
                                '--aligned'])
    assert code == 0 and '1 ok, 0 failed' in stdout
    assert cv2.imread(str(tmp_path / 'out' / 'restored_imgs' / 'face.png')).shape == (64, 64, 3)
    assert cv2.imread(str(tmp_path / 'out' / 'restored_faces' / 'face_00.png')).shape == (32, 32, 3)


def test_checkpoint_is_found_in_weights_dir_env(tmp_path, tiny_model, monkeypatch):
    ckpt, opt = tiny_model
    monkeypatch.setenv('DLST_WEIGHTS_DIR', str(ckpt.parent))
    code, stdout, _ = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model', ckpt.name,
                                '--opt', opt])
    assert code == 0 and '1 ok, 0 failed' in stdout


def test_missing_checkpoint_is_an_error_naming_it(tmp_path, tiny_model):
    code, _, stderr = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model',
                                tmp_path / 'nope.pth', '--opt', tiny_model[1]])
    assert code == 2 and 'error: --model' in stderr and 'nope.pth' in stderr and 'not found' in stderr


def test_checkpoint_not_matching_options_is_an_error(tmp_path, tiny_model):
    other = write_tiny_model(tmp_path / 'other', {**TINY_NETWORK, 'attention': False})[1]
    code, _, stderr = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model',
                                tiny_model[0], '--opt', other])
    assert code == 2 and 'does not fit network_g SkipTransformer' in stderr


@pytest.mark.parametrize('content', [b'these are notes, not weights\n', 'truncated'], ids=['text', 'truncated'])
def test_unreadable_model_file_is_one_error_line(tmp_path, tiny_model, content):
    if content == 'truncated':
        content = tiny_model[0].read_bytes()[:4000]
    (tmp_path / 'bad.pth').write_bytes(content)
    code, _, stderr = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model',
                                tmp_path / 'bad.pth', '--opt', tiny_model[1]])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith('error: --model') and 'bad.pth' in stderr and 'expected a restorer checkpoint' in stderr


def test_noise_strip_is_no_face_not_a_success(tmp_path, tiny_model):
    """A 20 x 20000 noise strip once came out as '1 ok, 1 faces restored' (YuNet gave inf/nan boxes, score 1)."""
    noise = np.random.default_rng(0).integers(0, 256, (20, 20000, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'strip.png'), noise)
    code, stdout, _ = run_main(['-i', tmp_path / 'strip.png', '-o', tmp_path / 'out', '--model', tiny_model[0],
                                '--opt', tiny_model[1]])
    assert code == 1 and '0 ok, 1 failed; 0 faces restored' in stdout
    assert 'strip.png: no face found' in stdout
    assert not (tmp_path / 'out' / 'restored_imgs' / 'strip.png').exists()


def test_default_network_options_ship_with_the_package():
    import dlst_plugin
    assert networks.DEFAULT_OPT.is_file() and networks.DEFAULT_OPT.parent.parent == \
        Path(dlst_plugin.__file__).resolve().parent  # in the package, not in the checkout
    shipped = yaml.safe_load((REPO / 'options' / 'test_dlst.yml').read_text())['network_g']
    assert networks.read_network_options() == shipped  # the paper's 512 px ST, as options/test_dlst.yml


@pytest.mark.slow
def test_restore_without_opt_after_install(tmp_path):
    """The package alone (as pip installs it: no options/ folder beside it), run from an unrelated folder."""
    import shutil

    from basicsr.archs import build_network
    shutil.copytree(REPO / 'dlst_plugin', tmp_path / 'site' / 'dlst_plugin',
                    ignore=shutil.ignore_patterns('__pycache__'))
    torch.manual_seed(0)
    net = build_network(dict(networks.read_network_options()))  # the default: 512 px, 85 M parameters
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'net_g_512.pth')
    del net
    face = cv2.resize(cv2.imread(str(SAMPLE_FACES / 'astronaut.png'))[48:188, 152:292], (64, 64))
    cv2.imwrite(str(tmp_path / 'face.png'), face)
    (tmp_path / 'cwd').mkdir()
    proc = run(['python', '-m', 'dlst_plugin.cli.restore', '-i', tmp_path / 'face.png', '-o', 'out', '--model',
                tmp_path / 'net_g_512.pth', '--aligned', '--no-faces'], cwd=tmp_path / 'cwd',
               PYTHONPATH=tmp_path / 'site')
    assert '1 ok, 0 failed' in proc.stdout
    assert cv2.imread(str(tmp_path / 'cwd' / 'out' / 'restored_imgs' / 'face.png')).shape == (64, 64, 3)


# -- checkpoints that describe their network; safetensors; upscaled paste-back -----------------------

def test_restore_without_opt_reads_the_checkpoint_metadata(tmp_path):
    from tiny_restorers import TINY_ST, save_training_checkpoint
    ckpt, _ = save_training_checkpoint(tmp_path / 'net_g_latest.pth', {**TINY_ST, 'patch_sizes': {8: 2}})
    code, stdout, stderr = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model', ckpt])
    assert code == 0 and '1 ok, 0 failed' in stdout and 'patch size' not in stderr
    assert cv2.imread(str(tmp_path / 'out' / 'restored_faces' / 'astronaut_00.png')).shape == (32, 32, 3)


def test_restore_without_opt_infers_a_checkpoint_without_metadata(tmp_path, tiny_model):
    code, stdout, _ = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model',
                                tiny_model[0]])  # {'params_ema': ...} only, as older files
    assert code == 0 and '1 ok, 0 failed' in stdout


def test_safetensors_next_to_pth_is_preferred(tmp_path, tiny_model):
    from dlst_plugin.checkpoints.reading import write_safetensors
    write_safetensors(torch.load(tiny_model[0])['params_ema'], tmp_path / 'net_g.safetensors')
    (tmp_path / 'net_g.pth').write_text('a stale copy, not weights\n')  # would fail if it were read
    code, stdout, stderr = run_main(['-i', SAMPLE_FACES / 'astronaut.png', '-o', tmp_path / 'out', '--model',
                                     tmp_path / 'net_g.pth'])
    assert code == 0 and '1 ok, 0 failed' in stdout
    assert f'using {tmp_path / "net_g.safetensors"}' in stderr
    from dlst_plugin.cli.restore import build_parser
    assert 'X.safetensors lies next to a given X.pth' in ' '.join(build_parser().format_help().split())


def test_upscaled_paste_back_keeps_alpha_and_the_face_place(restorer):
    img = cv2.imread(str(SAMPLE_FACES / 'grace_hopper.jpg'))
    rgba = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])
    once, twice = restorer.restore_image(img), restorer.restore_image(rgba, upscale=2)
    assert twice.image.shape == (1200, 1024, 4) and (twice.image[:, :, 3] == 200).all()
    enlarged = cv2.resize(once.image, (1024, 1200), interpolation=cv2.INTER_LANCZOS4)
    x1, y1, x2, y2 = (np.asarray(once.boxes[0]) * 2).astype(int)
    assert np.abs(enlarged[y1:y2, x1:x2].astype(int) - twice.image[y1:y2, x1:x2, :3]).mean() < 3


def test_center_face_selection(restorer, monkeypatch):
    img = cv2.imread(str(SAMPLE_FACES / 'astronaut.png'))
    smaller = np.zeros_like(img)
    smaller[:384, :384] = cv2.resize(img, (384, 384), interpolation=cv2.INTER_AREA)
    three = np.hstack([smaller, img, smaller])
    monkeypatch.setattr(restorer, 'select', 'all')
    assert len(restorer.restore_image(three).faces) == 3
    monkeypatch.setattr(restorer, 'select', 'center')
    result = restorer.restore_image(three)
    assert len(result.faces) == 1 and img.shape[1] < result.boxes[0][0] < 2 * img.shape[1]  # the middle one
