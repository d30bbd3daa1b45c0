"""The README's main job: dlst-demo runs every stage on the shipped photos (fast setting)."""
import json

import cv2
import pytest
from helpers import REPO, run

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_and_reports_with_pictures(tmp_path):
    out = tmp_path / 'demo'
    proc = run(['python', '-m', 'dlst_plugin.cli.demo', '--fast', '--out', out], cwd=REPO, timeout=1200)
    assert 'done in' in proc.stdout
    assert len(list((out / 'real_lq').glob('*.png'))) >= 6
    assert (out / 'pairs' / 'clean.lmdb' / 'data.mdb').is_file()
    metrics = json.loads((out / 'evaluation' / 'metrics.json').read_text())
    assert [m['name'] for m in metrics['methods']] == ['real LQ faces', 'DL-ST demo']
    for restored in (out / 'restored' / 'restored_imgs').iterdir():
        source = next((out / 'wild_photos').glob(restored.stem + '.*'))
        assert cv2.imread(str(restored)).shape == cv2.imread(str(source)).shape
    report = (out / 'report.html').read_text()
    assert report.count('data:image/jpeg;base64,') >= 6  # a picture for every stage
    assert '<polyline' in report  # loss curves
    assert 'not the paper' in report

    again = run(['python', '-m', 'dlst_plugin.cli.demo', '--fast', '--out', out], cwd=tmp_path)
    assert again.stdout.count('already done') == 9


def test_demo_without_photos_says_so(tmp_path):
    proc = run(['python', '-m', 'dlst_plugin.cli.demo', '--photos', tmp_path / 'none', '--out', tmp_path / 'o'],
               cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert 'no photo folder found' in proc.stderr and 'Traceback' not in proc.stderr
