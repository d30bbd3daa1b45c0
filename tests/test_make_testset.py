"""dlst-make-testset (paper 4.1): only small faces, aligned, from a folder made from the shipped photos."""
import cv2
import pytest
from test_collect_lq_faces import make_photo_folder, read_rows

from dlst_plugin.cli import make_testset
from dlst_plugin.fileio.lmdb import read_meta_info, verify_lmdb


@pytest.fixture
def photos(tmp_path):
    return make_photo_folder(tmp_path / 'photos')


def test_keeps_only_faces_of_at_most_max_size(photos, tmp_path):
    dst = tmp_path / 'test'
    assert make_testset.main(['-i', str(photos), '-o', str(dst), '--size', '64', '--workers', '1']) == 1  # corrupt
    rows = read_rows(dst)
    assert rows, 'the photos shrunk 3x and 5x hold faces under 40 px'
    assert all(max(float(r['width']), float(r['height'])) <= 40 for r in rows)
    assert not any(r['source'].endswith('_full.png') for r in rows)  # full-size faces are 60-210 px
    for row in rows:
        assert cv2.imread(str(dst / f"{row['key']}.png")).shape == (64, 64, 3)


def test_max_size_is_an_option(photos, tmp_path):
    dst = tmp_path / 'test.lmdb'
    assert make_testset.main([str(photos), str(dst), '--size', '64', '--max-size', '80', '--workers', '1']) == 1
    rows = read_rows(dst)
    assert any(max(float(r['width']), float(r['height'])) > 40 for r in rows)
    assert all(max(float(r['width']), float(r['height'])) <= 80 for r in rows)
    assert verify_lmdb(str(dst)) == [] and len(read_meta_info(str(dst))[0]) == len(rows)


def test_min_above_max_is_refused(photos, tmp_path, capsys):
    assert make_testset.main([str(photos), str(tmp_path / 'x'), '--min-size', '50']) == 2
    assert '--min-size' in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_testset.main(['--help'])
    assert exit_info.value.code == 0
    assert '--max-size' in capsys.readouterr().out
