"""dlst-collect-lq-faces (paper 3.2.1) on a folder made from the shipped photos."""
import csv

import cv2
import numpy as np
import pytest
from helpers import SAMPLE_FACES

from dlst_plugin.cli import collect_lq_faces
from dlst_plugin.faces.alignment import face_template
from dlst_plugin.faces.detection import detect_faces
from dlst_plugin.faces.harvest import DONE_TXT, ERRORS_CSV, FACES_CSV
from dlst_plugin.fileio.lmdb import read_meta_info, verify_lmdb

SIZE = 64


def make_photo_folder(root):
    """The shipped photos at full size and shrunk 3x and 5x (faces of ~20-60 px), one corrupt file."""
    (root / 'event').mkdir(parents=True)
    for name in ('astronaut.png', 'grace_hopper.jpg', 'camera.png'):
        img = cv2.imread(str(SAMPLE_FACES / name))
        stem = name.split('.')[0]
        cv2.imwrite(str(root / f'{stem}_full.png'), img)
        for factor in (3, 5):
            small = cv2.resize(img, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(root / 'event' / f'{stem}_x{factor}.jpg'), small)
    (root / 'event' / 'corrupt.jpg').write_bytes(b'\xff\xd8 this is not a JPEG')
    return root


def read_rows(dst):
    with open(dst / FACES_CSV, newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture
def photos(tmp_path):
    return make_photo_folder(tmp_path / 'photos')


def test_collects_big_enough_faces_aligned(photos, tmp_path, capsys):
    dst = tmp_path / 'lq'
    assert collect_lq_faces.main(['-i', str(photos), '-o', str(dst), '--size', '128', '--workers', '1']) == 1  # corrupt
    rows = read_rows(dst)
    assert {'astronaut_full.png', 'grace_hopper_full.png'} <= {r['source'] for r in rows}
    assert all(min(float(r['width']), float(r['height'])) >= 20 for r in rows)
    for row in rows:
        face = cv2.imread(str(dst / f"{row['key']}.png"))
        assert face.shape == (128, 128, 3)
        if row['source'] in ('astronaut_full.png', 'grace_hopper_full.png'):  # crop -> resize -> align kept the eyes
            eyes = detect_faces(face)[0].landmarks[:2]
            assert np.abs(eyes - face_template(128)[:2]).max() < 6
    assert len(list(dst.rglob('*.png'))) == len(rows) == len({r['key'] for r in rows})
    assert 'event/corrupt.jpg' in (dst / ERRORS_CSV).read_text()
    assert 'could not be processed' in capsys.readouterr().err


def test_min_size_filters_boxes(photos, tmp_path):
    dst = tmp_path / 'big'
    assert collect_lq_faces.main([str(photos), str(dst), '--size', str(SIZE), '--min-size', '100',
                                  '--workers', '1']) == 1  # the corrupt photo
    rows = read_rows(dst)
    assert rows and all(min(float(r['width']), float(r['height'])) >= 100 for r in rows)
    assert 'astronaut_full.png' not in {r['source'] for r in rows}  # its face box is ~90 px wide


def test_lmdb_output_matches_the_csv(photos, tmp_path):
    """Two forked workers, after this process ran OpenCV's thread pool (forked children once hung on it)."""
    assert len(detect_faces(cv2.imread(str(SAMPLE_FACES / 'astronaut.png')))) == 1
    dst = tmp_path / 'lq.lmdb'
    assert collect_lq_faces.main([str(photos), str(dst), '--size', str(SIZE), '--workers', '2']) == 1
    assert verify_lmdb(str(dst)) == []
    keys = [k for k, _, _ in read_meta_info(str(dst))[0]]
    assert sorted(keys) == sorted(r['key'] for r in read_rows(dst))
    assert {shape for _, shape, _ in read_meta_info(str(dst))[0]} == {(SIZE, SIZE, 3)}


def test_resume_redoes_only_unfinished_photos(photos, tmp_path, capsys):
    dst = tmp_path / 'lq'
    args = [str(photos), str(dst), '--size', str(SIZE), '--workers', '1']
    assert collect_lq_faces.main(args) == 1  # the corrupt photo, every time
    rows = read_rows(dst)
    # as if killed after writing the last photo's face but before marking the photo done
    done = (dst / DONE_TXT).read_text().splitlines()
    last = rows[-1]
    (dst / DONE_TXT).write_text('\n'.join(d for d in done if d != last['source']) + '\n')
    (dst / f"{last['key']}.png").unlink()
    capsys.readouterr()
    assert collect_lq_faces.main(args) == 1
    assert 'resumed' in capsys.readouterr().out
    again = read_rows(dst)
    assert sorted(r['key'] for r in again) == sorted(r['key'] for r in rows)
    assert (dst / f"{last['key']}.png").is_file()
    assert sorted((dst / DONE_TXT).read_text().splitlines()) == sorted(done)


def test_refuses_a_foreign_destination(photos, tmp_path, capsys):
    dst = tmp_path / 'mine'
    dst.mkdir()
    (dst / 'thesis.txt').write_text('keep me')
    assert collect_lq_faces.main([str(photos), str(dst)]) == 2
    assert 'holds no earlier harvest' in capsys.readouterr().err
    assert (dst / 'thesis.txt').read_text() == 'keep me'


def test_retinaface_without_weights_stops_with_the_file_name(photos, tmp_path, capsys):
    code = collect_lq_faces.main([str(photos), str(tmp_path / 'out'), '--detector', 'retinaface',
                                  '--weights-dir', str(tmp_path / 'w'), '--workers', '1'])
    assert code == 2  # configuration: nothing was done
    assert 'detection_Resnet50_Final.pth' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        collect_lq_faces.main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(opt in out for opt in ('--min-size', '--size', '--detector', '--weights-dir', '--max-faces',
                                      '-i SRC, --input SRC', '-o DST, --output DST', '--overwrite'))


def _one_photo_folder(root):
    root.mkdir()
    cv2.imwrite(str(root / 'a.png'), cv2.imread(str(SAMPLE_FACES / 'astronaut.png')))
    return root


def test_no_face_kept_is_exit_1_with_the_rule(tmp_path, capsys):
    photos = _one_photo_folder(tmp_path / 'photos')
    code = collect_lq_faces.main(['-i', str(photos), '-o', str(tmp_path / 'out'), '--min-size', '1000',
                                  '--size', str(SIZE), '--workers', '1'])
    assert code == 1
    assert 'error: no face passed the size rule in 1 photo(s)' in capsys.readouterr().err


def test_overwrite_starts_again_and_keeps_refusing_foreign_folders(tmp_path):
    photos = _one_photo_folder(tmp_path / 'photos')
    dst = tmp_path / 'out'
    args = ['-i', str(photos), '-o', str(dst), '--size', str(SIZE), '--workers', '1']
    assert collect_lq_faces.main(args) == 0
    (dst / 'stale.png').write_bytes(b'from before')
    assert collect_lq_faces.main(args + ['--overwrite']) == 0
    assert not (dst / 'stale.png').exists() and len(read_rows(dst)) == 1


def test_read_only_lmdb_is_one_error_naming_it(tmp_path, capsys, monkeypatch):
    import lmdb

    import dlst_plugin.fileio.lmdb as writer_module
    from dlst_plugin.fileio.lmdb import LmdbWriter
    photos = _one_photo_folder(tmp_path / 'photos')
    dst = tmp_path / 'faces.lmdb'
    LmdbWriter(dst).close()  # an existing LMDB, as an earlier run leaves it
    real_open = lmdb.open

    def open_read_only(path, **kwargs):  # what lmdb raises for a user who may not write the files (EACCES)
        if not kwargs.get('readonly'):
            raise lmdb.ReadonlyError(f'{path}: Permission denied')
        return real_open(path, **kwargs)
    monkeypatch.setattr(writer_module.lmdb, 'open', open_read_only)
    code = collect_lq_faces.main(['-i', str(photos), '-o', str(dst), '--size', str(SIZE), '--workers', '1'])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: cannot open the LMDB') and str(dst) in err
    assert 'ReadonlyError' in err and len(err.strip().splitlines()) == 1


def test_max_faces_stops_early(photos, tmp_path):
    dst = tmp_path / 'few'
    assert collect_lq_faces.main([str(photos), str(dst), '--size', str(SIZE), '--max-faces', '2',
                                  '--workers', '1', '--flush-every', '1']) == 0
    assert len(read_rows(dst)) == 2
    assert np.all([cv2.imread(str(p)) is not None for p in dst.rglob('*.png')])


@pytest.mark.slow
def test_sigterm_keeps_finished_photos_and_rerun_completes(tmp_path):
    """SIGTERM mid-harvest (2 workers, LMDB output): exit 143, one message, no worker traceback, the photos
    finished so far recorded with their faces; rerunning finishes the rest, each face once."""
    import signal

    from signal_runs import assert_stopped_by_sigterm, line_count, signal_mid_run
    photo = cv2.imread(str(SAMPLE_FACES / 'astronaut.png'))  # one face per photo
    (tmp_path / 'photos').mkdir()
    count = 80  # about 2 s of detection here
    for i in range(count):
        cv2.imwrite(str(tmp_path / 'photos' / f'{i:03d}.png'), photo)
    dst = tmp_path / 'faces.lmdb'
    args = ['-i', str(tmp_path / 'photos'), '-o', str(dst), '--size', str(SIZE), '--workers', '2', '--flush-every', '2']
    code, _, err = signal_mid_run(['-m', 'dlst_plugin.cli.collect_lq_faces', *args],
                                  lambda: line_count(dst / DONE_TXT) >= 4, signal.SIGTERM)
    assert_stopped_by_sigterm(code, err, 'faces of the photos finished so far are kept')
    done = line_count(dst / DONE_TXT)
    assert 4 <= done < count and len(read_rows(dst)) == done and len(read_meta_info(str(dst))[0]) == done
    assert collect_lq_faces.main(args) == 0
    assert sorted(row['source'] for row in read_rows(dst)) == [f'{i:03d}.png' for i in range(count)]
    assert verify_lmdb(str(dst)) == [] and len(read_meta_info(str(dst))[0]) == count
