"""dlst-evaluate (paper section 4, Table 2): NIQE ordering, FID with a random Inception, reports, errors."""
import importlib.util
import json
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from helpers import face_crops, run

from dlst_plugin.cli import evaluate
from dlst_plugin.metrics import fid, niqe
from dlst_plugin.metrics.evaluation import thumbnail_grid
from dlst_plugin.metrics.images import EvaluationError
from dlst_plugin.metrics.paired import lpips_unavailable_reason


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    """clean/ (4 faces, 256 px: NIQE needs >= 192 px), blurred/ copies, lq/ 64 px inputs."""
    root = tmp_path_factory.mktemp('evaluate')
    clean = face_crops(root / 'clean', size=256, count=4, seed=3)
    for name in ('blurred', 'lq'):
        (root / name).mkdir()
    for path in clean:
        img = cv2.imread(str(path))
        cv2.imwrite(str(root / 'blurred' / path.name), cv2.GaussianBlur(img, (0, 0), 3))
        cv2.imwrite(str(root / 'lq' / path.name), cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA))
    return root


def read(folder):
    return [cv2.imread(str(p)) for p in sorted(folder.glob('*.png'))]


def test_niqe_scores_clean_faces_better_than_blurred_copies(folders):
    score = niqe.BasicSRNIQE()
    for clean, blurred in zip(read(folders / 'clean'), read(folders / 'blurred')):
        assert score(clean) < score(blurred)


def test_small_images_are_upscaled_for_niqe_to_the_minimum_side():
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    big, resized = niqe.upscale_for_niqe(img)
    assert resized and big.shape == (niqe.NIQE_MIN_SIDE, niqe.NIQE_MIN_SIDE * 3 // 2, 3)
    assert np.isfinite(niqe.BasicSRNIQE()(big))
    same, resized = niqe.upscale_for_niqe(big)
    assert not resized and same is big


def test_pyiqa_backend_asked_for_but_missing_names_pyiqa(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *args: None if name == 'pyiqa' else real_find_spec(name, *args))
    with pytest.raises(ImportError, match='pyiqa is not installed'):
        niqe.build_niqe_backends(['pyiqa'])


def test_pyiqa_parameters_are_basicsr_parameters_as_mat(tmp_path):
    from scipy.io import loadmat
    npz = niqe.basicsr_niqe_params_path()
    mat = loadmat(niqe.write_pyiqa_params(npz, str(tmp_path / 'niqe.mat')))
    params = np.load(npz)
    assert np.array_equal(mat['mu_prisparam'], params['mu_pris_param'])
    assert np.array_equal(mat['cov_prisparam'], params['cov_pris_param'])


def test_frechet_distance_equals_basicsr_calculate_fid():
    from basicsr.metrics.fid import calculate_fid
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 16)), rng.normal(0.3, 1.5, size=(30, 16))
    stats_a, stats_b = fid.feature_statistics(a), fid.feature_statistics(b)
    assert fid.frechet_distance(*stats_a, *stats_b) == pytest.approx(calculate_fid(*stats_a, *stats_b), rel=1e-6)


def test_fid_of_a_folder_with_itself_is_zero_and_with_another_positive(folders):
    inception = fid.FIDInception(dims=64, random_init_seed=0, batch_size=4)
    stats = {}
    for name in ('clean', 'blurred'):
        for img in read(folders / name):
            inception.add(img)
        stats[name] = fid.feature_statistics(inception.take_features())
    other = fid.frechet_distance(*stats['clean'], *stats['blurred'])
    assert other > 0
    assert fid.frechet_distance(*stats['clean'], *stats['clean']) <= 1e-3 * other


def test_missing_inception_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with pytest.raises(fid.InceptionWeightsMissing, match=fid.FID_WEIGHTS_FILE):
        fid.FIDInception(weights_dir_=str(tmp_path / 'weights'))


def test_inception_weights_load_from_the_weights_dir(tmp_path):
    state_dict = fid._random_inception_state_dict(seed=1)
    (tmp_path / 'w').mkdir()
    torch.save(state_dict, tmp_path / 'w' / fid.FID_WEIGHTS_FILE)
    inception = fid.FIDInception(weights_dir_=str(tmp_path / 'w'), dims=64)
    assert inception.weights == fid.FID_WEIGHTS_FILE
    key = 'blocks.0.0.conv.weight'
    assert torch.equal(inception.net.state_dict()[key], state_dict['Conv2d_1a_3x3.conv.weight'])


def test_saved_statistics_load_back_and_foreign_ones_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = fid.feature_statistics(rng.normal(size=(5, 64)))
    path = str(tmp_path / 'ref.npz')
    fid.save_statistics(path, mu, sigma, 5, 'weights-A', 'somewhere')
    mu2, sigma2, info = fid.load_statistics(path, SimpleNamespace(dims=64, weights='weights-A'))
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2) and info['num_images'] == 5
    with pytest.raises(EvaluationError, match='weights-A'):
        fid.load_statistics(path, SimpleNamespace(dims=64, weights='weights-B'))
    with pytest.raises(EvaluationError, match='--fid-dims'):
        fid.load_statistics(path, SimpleNamespace(dims=2048, weights='weights-A'))


def test_restored_names_come_from_name_or_folder(tmp_path, capsys):
    assert evaluate.parse_restored(['out/gfpgan/', 'DL-ST=res']) == [('gfpgan', evaluate.Path('out/gfpgan/')),
                                                                     ('DL-ST', evaluate.Path('res'))]
    for folder in ('a/x', 'b/x'):
        (tmp_path / folder).mkdir(parents=True)
    # two folders of one name: the command refuses them (exit 2) before anything is scored or written
    assert evaluate.main(['--restored', str(tmp_path / 'a/x'), '--restored', str(tmp_path / 'b/x'),
                          '--out', str(tmp_path / 'out')]) == 2
    assert "two methods are named 'x'" in capsys.readouterr().err and not (tmp_path / 'out').exists()


def test_missing_restored_folder_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(['--restored', str(tmp_path / 'nope'), '--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'nope' in err and 'does not exist' in err
    assert not (tmp_path / 'out').exists()


def test_cli_without_inception_weights_fails_with_the_file_name(folders, tmp_path):
    proc = run(['python', '-m', 'dlst_plugin.cli.evaluate', '--restored', folders / 'blurred',
                '--reference', folders / 'clean', '--metrics', 'fid', '--weights-dir', tmp_path / 'empty',
                '--out', tmp_path / 'out'], cwd=tmp_path, check=False, TORCH_HOME=tmp_path / 'torch_home')
    assert proc.returncode != 0
    assert fid.FID_WEIGHTS_FILE in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_cli_table_json_and_html_for_two_methods(folders, tmp_path):
    (tmp_path / 'blurred').mkdir()
    for path in (folders / 'blurred').glob('*.png'):
        shutil.copy(path, tmp_path / 'blurred' / path.name)
    (tmp_path / 'blurred' / 'notes.txt').write_text('not an image')
    gt = tmp_path / 'gt'
    shutil.copytree(folders / 'clean', gt)
    dropped = sorted(gt.glob('*.png'))[0]
    dropped.unlink()
    out = tmp_path / 'report'
    proc = run(['python', '-m', 'dlst_plugin.cli.evaluate', '--restored', f'clean={folders / "clean"}',
                '--restored', tmp_path / 'blurred', '--input', folders / 'lq', '--gt', gt,
                '--reference', folders / 'clean', '--save-stats', tmp_path / 'ref.npz',
                '--inception-random-init', '0', '--fid-dims', '64', '--out', out], cwd=tmp_path)
    assert 'NIQE' in proc.stdout and 'FID' in proc.stdout and 'blurred' in proc.stdout
    payload = json.loads((out / 'metrics.json').read_text())
    clean, blurred = payload['methods']
    assert (clean['name'], blurred['name']) == ('clean', 'blurred')
    assert clean['metrics']['niqe']['value'] < blurred['metrics']['niqe']['value']
    assert clean['metrics']['fid']['value'] < blurred['metrics']['fid']['value']
    for method in payload['methods']:
        assert set(method['metrics']) == {'niqe', 'fid', 'psnr', 'ssim'} | ({'niqe_pyiqa'} if niqe.pyiqa_available()
                                                                          else set())  # auto: pyiqa when installed
        for entry in method['metrics'].values():
            assert entry['backend'] and entry['image_format'] and entry['resize']
    assert blurred['missing_gt'] == [dropped.stem] and blurred['metrics']['psnr']['num_images'] == 3
    assert [s['file'] for s in blurred['skipped']] == [str(tmp_path / 'blurred' / 'notes.txt')]
    assert ('lpips' in payload['unavailable']) == (lpips_unavailable_reason() is not None)
    assert 'RANDOM INIT' in clean['metrics']['fid']['backend']
    assert set(np.load(tmp_path / 'ref.npz')) >= {'mu', 'sigma', 'inception_weights'}
    page = (out / 'report.html').read_text()
    assert '<table class="metrics">' in page and '<th>input</th>' in page
    assert page.count('<img src="data:image/jpeg;base64,') == 4 * 4 - 1  # input, 2 methods, gt (one dropped)


def test_thumbnail_grid_without_inputs_shows_every_method(folders):
    args = SimpleNamespace(input=None, thumbnails=2)
    methods = [('clean', folders / 'clean'), ('blurred', folders / 'blurred')]
    images = {name: {p.stem: p for p in sorted(folder.glob('*.png'))} for name, folder in methods}
    columns, rows = thumbnail_grid(args, methods, images, gt_images=None)
    assert columns == ['clean', 'blurred'] and len(rows) == 2
    assert all(uri.startswith('data:image/jpeg;base64,') for _, uris in rows for uri in uris)


def test_gt_matching_no_restored_image_is_an_error_not_dashes(folders, tmp_path, capsys):
    gt = tmp_path / 'gt'
    gt.mkdir()
    for i, path in enumerate(sorted((folders / 'clean').glob('*.png'))):
        shutil.copy(path, gt / f'other_{i}.png')  # same faces, other names
    code = evaluate.main(['--restored', str(folders / 'blurred'), '--gt', str(gt), '--metrics', 'psnr,ssim',
                          '-o', str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert code == 1 and 'share no file stem' in err and str(gt) in err and 'other_0' in err
    assert not (tmp_path / 'out').exists()


def test_text_file_as_inception_weights_is_one_error_line(folders, tmp_path, capsys):
    (tmp_path / 'notes.pth').write_text('not weights\n')
    code = evaluate.main(['--restored', str(folders / 'blurred'), '--reference', str(folders / 'clean'),
                          '--metrics', 'fid', '--inception-weights', str(tmp_path / 'notes.pth'),
                          '-o', str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith('error: --inception-weights') and 'notes.pth' in err and fid.FID_WEIGHTS_FILE in err


def test_an_undecodable_image_is_left_out_named_and_exit_1(folders, tmp_path, capsys):
    shutil.copytree(folders / 'lq', tmp_path / 'lq')
    (tmp_path / 'lq' / 'broken.png').write_bytes(b'not a png')
    code = evaluate.main(['--restored', str(tmp_path / 'lq'), '--metrics', 'niqe', '-o', str(tmp_path / 'out')])
    assert code == 1 and 'broken.png' in capsys.readouterr().err
    method = json.loads((tmp_path / 'out' / 'metrics.json').read_text())['methods'][0]
    assert method['num_images'] == 4 and [s['file'] for s in method['skipped']] == [str(tmp_path / 'lq' / 'broken.png')]


def test_identical_images_have_infinite_psnr_counted_in_the_mean(tmp_path, capsys):
    gt = face_crops(tmp_path / 'gt', size=64, count=3, seed=1)
    (tmp_path / 'restored').mkdir()
    for i, path in enumerate(gt):  # the first one blurred, the other two exact copies of their ground truth
        img = cv2.imread(str(path))
        cv2.imwrite(str(tmp_path / 'restored' / path.name), cv2.GaussianBlur(img, (0, 0), 2) if i == 0 else img)
    code = evaluate.main(['--restored', f'm={tmp_path / "restored"}', '--gt', str(tmp_path / 'gt'),
                          '--metrics', 'psnr,ssim', '-o', str(tmp_path / 'out')])
    out = capsys.readouterr().out
    assert code == 0
    assert [line.split()[1] for line in out.splitlines() if line.startswith('m ')] == ['inf']  # PSNR column
    assert 'note: m: 2 of 3 image(s) equal their ground truth (PSNR inf), so the mean PSNR is inf' in out

    def not_json(token):
        raise AssertionError(f'metrics.json holds {token}, which is not JSON')
    payload = json.loads((tmp_path / 'out' / 'metrics.json').read_text(), parse_constant=not_json)
    psnr = payload['methods'][0]['metrics']['psnr']
    blurred = psnr['per_image'].pop(gt[0].stem)
    assert psnr['value'] == 'inf' and float(psnr['value']) == float('inf') and psnr['num_images'] == 3
    assert list(psnr['per_image'].values()) == ['inf', 'inf'] and 0 < blurred < 100
    assert psnr['identical_images'] == 2 and psnr['finite_mean'] == pytest.approx(blurred)
    assert '<td>inf</td>' in (tmp_path / 'out' / 'report.html').read_text()


def test_metrics_json_is_strict_json_for_every_non_finite_value(tmp_path):
    from dlst_plugin.metrics.report import write_json
    write_json(tmp_path / 'm.json', {'a': float('inf'), 'b': [float('-inf'), float('nan'), 1.5], 'c': {'d': 2}})
    text = (tmp_path / 'm.json').read_text()
    assert 'Infinity' not in text and 'NaN' not in text
    assert json.loads(text) == {'a': 'inf', 'b': ['-inf', None, 1.5], 'c': {'d': 2}}


def test_the_library_scores_methods_given_as_python_values(folders, tmp_path):
    """What the demo and dlst-table1 call: methods as (name, folder) pairs, settings as a dataclass."""
    from dlst_plugin.errors import ConfigError
    from dlst_plugin.metrics.evaluation import EvaluationSettings, evaluate
    result = evaluate([('clean', folders / 'clean'), ('blurred', str(folders / 'blurred'))], tmp_path / 'out',
                      EvaluationSettings(metrics=['niqe'], niqe_backend='basicsr'), command=['a test'])
    assert [r['name'] for r in result.records] == ['clean', 'blurred'] and result.failed == []
    assert result.records[0]['metrics']['niqe']['value'] < result.records[1]['metrics']['niqe']['value']
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['command'] == ['a test']
    assert result.payload['methods'] is result.records
    with pytest.raises(ConfigError, match="two methods are named 'a'"):
        evaluate([('a', folders / 'clean'), ('a', folders / 'blurred')], tmp_path / 'again')
    assert not (tmp_path / 'again').exists()
