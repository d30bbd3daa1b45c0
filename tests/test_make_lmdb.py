"""dlst-make-lmdb and the LmdbWriter under it: round trip, resume, corrupt sources, existing DST."""
import signal
import subprocess
import sys
import time

import cv2
import lmdb
import numpy as np
import pytest
from helpers import REPO, subprocess_env
from signal_runs import assert_stopped_by_sigterm, line_count, signal_mid_run

from dlst_plugin.cli import make_lmdb
from dlst_plugin.fileio.lmdb import META_INFO, LmdbWriter, read_meta_info, verify_lmdb


def _write_sources(root, count=6, seed=0):
    """Colour PNGs, a grey PNG and a JPEG in a sub-folder; returns {key: source path}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / 'sub').mkdir(exist_ok=True)
    paths = {}
    for i in range(count):
        paths[f'{i:03d}'] = root / f'{i:03d}.png'
        cv2.imwrite(str(paths[f'{i:03d}']), rng.integers(0, 256, (24 + i, 32, 3), dtype=np.uint8))
    paths['sub/grey'] = root / 'sub' / 'grey.png'
    cv2.imwrite(str(paths['sub/grey']), rng.integers(0, 256, (20, 16), dtype=np.uint8))
    paths['sub/photo'] = root / 'sub' / 'photo.jpg'
    cv2.imwrite(str(paths['sub/photo']), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    return paths


def _lmdb_contents(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = {k.decode('ascii'): bytes(v) for k, v in txn.cursor()}
    env.close()
    return items


def _decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_round_trip_keeps_pixels_and_shapes(tmp_path):
    """Two forked workers, after this process ran OpenCV's thread pool (forked children once hung on it)."""
    cv2.GaussianBlur(np.zeros((512, 512, 3), np.uint8), (0, 0), 3)
    sources = _write_sources(tmp_path / 'src')
    dst = tmp_path / 'out.lmdb'
    assert make_lmdb.main([str(tmp_path / 'src'), str(dst), '--workers', '2', '--verify']) == 0
    stored = _lmdb_contents(dst)
    assert set(stored) == set(sources)
    meta = {key: shape for key, shape, _ in read_meta_info(str(dst))[0]}
    for key, path in sources.items():
        original = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(_decode(stored[key]), original), key
        assert meta[key] == (original.shape[0], original.shape[1], 1 if original.ndim == 2 else 3)


def test_copy_png_stores_source_bytes(tmp_path):
    sources = _write_sources(tmp_path / 'src', count=2)
    dst = tmp_path / 'copy.lmdb'
    assert make_lmdb.main([str(tmp_path / 'src'), str(dst), '--copy-png', '--workers', '1', '--verify']) == 0
    stored = _lmdb_contents(dst)
    levels = {key: level for key, _, level in read_meta_info(str(dst))[0]}
    for key, path in sources.items():
        if path.suffix == '.png':
            assert stored[key] == path.read_bytes() and levels[key] == -1
        else:  # a JPEG cannot be copied into a PNG LMDB: encoded losslessly from its decoded pixels
            assert stored[key][:8] == b'\x89PNG\r\n\x1a\n' and levels[key] == 1
            assert np.array_equal(_decode(stored[key]), cv2.imread(str(path)))


def test_lmdb_reads_through_basicsr(tmp_path, faces_dir):
    """BasicSR's FileClient and its FFHQDataset (which lists keys from meta_info.txt) read the LMDB."""
    from basicsr.data.ffhq_dataset import FFHQDataset
    from basicsr.utils import FileClient, imfrombytes

    dst = tmp_path / 'faces.lmdb'
    assert make_lmdb.main([str(faces_dir), str(dst), '--workers', '1']) == 0
    client = FileClient('lmdb', db_paths=[str(dst)], client_keys=['gt'])
    first = sorted(p.stem for p in faces_dir.glob('*.png'))[0]
    img = imfrombytes(client.get(first, 'gt'), float32=False)
    assert np.array_equal(img, cv2.imread(str(faces_dir / f'{first}.png')))
    client.client._client['gt'].close()  # one process may hold an LMDB open once
    dataset = FFHQDataset({'dataroot_gt': str(dst), 'io_backend': {'type': 'lmdb'}, 'mean': [0.5] * 3,
                           'std': [0.5] * 3, 'use_hflip': False})
    assert len(dataset) == 12
    assert tuple(dataset[0]['gt'].shape) == (3, 64, 64)


def test_resize_option(tmp_path):
    _write_sources(tmp_path / 'src', count=2)
    dst = tmp_path / 'small.lmdb'
    assert make_lmdb.main([str(tmp_path / 'src'), str(dst), '--resize', '16x8', '--workers', '1']) == 0
    for data in _lmdb_contents(dst).values():
        assert _decode(data).shape[:2] == (8, 16)
    assert {shape[:2] for _, shape, _ in read_meta_info(str(dst))[0]} == {(8, 16)}


def test_corrupt_source_is_reported_and_skipped(tmp_path, capsys):
    sources = _write_sources(tmp_path / 'src', count=3)
    (tmp_path / 'src' / 'broken.png').write_bytes(b'not a png at all')
    truncated = cv2.imencode('.jpg', np.full((32, 32, 3), 128, np.uint8))[1].tobytes()[:200]
    (tmp_path / 'src' / 'cut.jpg').write_bytes(truncated)
    dst = tmp_path / 'out.lmdb'
    assert make_lmdb.main(['-i', str(tmp_path / 'src'), '-o', str(dst), '--workers', '1']) == 1  # some inputs failed
    assert set(_lmdb_contents(dst)) == set(sources)
    report = (dst / 'skipped.csv').read_text()
    assert 'broken.png' in report and 'cut.jpg' in report
    assert 'skipped 2 unreadable' in capsys.readouterr().err


def test_folder_of_only_unreadable_images_writes_no_lmdb_and_exits_1(tmp_path, capsys):
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'a.png').write_bytes(b'not a png')
    (tmp_path / 'src' / 'b.jpg').write_bytes(b'')
    dst = tmp_path / 'out.lmdb'
    assert make_lmdb.main(['-i', str(tmp_path / 'src'), '-o', str(dst), '--workers', '1']) == 1
    err = capsys.readouterr().err
    assert '\nerror: none of the 2 image(s)' in err and 'a.png' in err and 'b.jpg' in err and 'Traceback' not in err
    assert not dst.exists()


def test_read_only_lmdb_is_one_error_naming_it(tmp_path, capsys, monkeypatch):
    """Resuming into an LMDB this user may not write (lmdb raises ReadonlyError: EACCES); root may write
    anything, so the error lmdb gives an unprivileged user is raised for the write-mode open."""
    import dlst_plugin.fileio.lmdb as writer_module
    _write_sources(tmp_path / 'src', count=2)
    dst = tmp_path / 'ro.lmdb'
    assert make_lmdb.main(['-i', str(tmp_path / 'src'), '-o', str(dst), '--workers', '1']) == 0
    real_open = lmdb.open

    def open_read_only(path, **kwargs):
        if not kwargs.get('readonly'):
            raise lmdb.ReadonlyError(f'{path}: Permission denied')
        return real_open(path, **kwargs)
    monkeypatch.setattr(writer_module.lmdb, 'open', open_read_only)
    capsys.readouterr()
    (tmp_path / 'src' / 'new.png').write_bytes((tmp_path / 'src' / '000.png').read_bytes())
    assert make_lmdb.main(['-i', str(tmp_path / 'src'), '-o', str(dst), '--workers', '1']) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: cannot open the LMDB') and str(dst) in err and 'ReadonlyError' in err
    assert len(err.strip().splitlines()) == 1


def test_names_breaking_the_key_rule_stop_with_the_rule(tmp_path, capsys):
    _write_sources(tmp_path / 'src', count=1)
    cv2.imwrite(str(tmp_path / 'src' / 'v1.2 face.png'), np.zeros((8, 8, 3), np.uint8))
    assert make_lmdb.main([str(tmp_path / 'src'), str(tmp_path / 'a.lmdb')]) == 2
    err = capsys.readouterr().err
    assert 'v1.2 face.png' in err and "'.'" in err and '--sanitize-keys' in err
    assert not (tmp_path / 'a.lmdb').exists()
    assert make_lmdb.main([str(tmp_path / 'src'), str(tmp_path / 'b.lmdb'), '--sanitize-keys']) == 0
    assert 'v1_2_face' in _lmdb_contents(tmp_path / 'b.lmdb')


def test_read_only_permissions_are_found_before_writing(tmp_path, capsys, monkeypatch):
    import dlst_plugin.fileio.atomic as fileio
    _write_sources(tmp_path / 'src', count=2)
    dst = tmp_path / 'ro.lmdb'
    assert make_lmdb.main(['-i', str(tmp_path / 'src'), '-o', str(dst), '--workers', '1']) == 0
    real_access = fileio.os.access
    monkeypatch.setattr(fileio.os, 'access', lambda p, mode: not str(p).endswith('data.mdb') and real_access(p, mode))
    capsys.readouterr()
    assert make_lmdb.main(['-i', str(tmp_path / 'src'), '-o', str(dst), '--workers', '1']) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: LMDB {dst} is read-only ({dst / "data.mdb"} cannot be written)')


def test_existing_dst(tmp_path, capsys):
    _write_sources(tmp_path / 'src', count=2)
    src, dst = str(tmp_path / 'src'), tmp_path / 'out.lmdb'
    (tmp_path / 'other.lmdb').mkdir()
    (tmp_path / 'other.lmdb' / 'notes.txt').write_text('mine')
    assert make_lmdb.main([src, str(tmp_path / 'other.lmdb')]) == 2  # not an LMDB: left alone
    assert (tmp_path / 'other.lmdb' / 'notes.txt').read_text() == 'mine'
    assert make_lmdb.main(['-i', src, '-o', str(dst), '--workers', '1']) == 0
    before = _lmdb_contents(dst)
    assert make_lmdb.main([src, str(dst), '--no-resume']) == 2
    assert make_lmdb.main([src, str(dst), '--png-level', '5']) == 2  # different options than the first run
    assert '--png-level 1 (now 5)' in capsys.readouterr().err
    assert make_lmdb.main([src, str(dst), '--workers', '1']) == 0  # resume: nothing new, nothing twice
    assert 'already stored' in capsys.readouterr().out
    assert _lmdb_contents(dst) == before
    keys = [k for k, _, _ in read_meta_info(str(dst))[0]]
    assert sorted(keys) == sorted(before) and len(keys) == len(set(keys))
    assert make_lmdb.main([src, str(dst), '--overwrite', '--png-level', '5', '--workers', '1']) == 0
    assert {lvl for _, _, lvl in read_meta_info(str(dst))[0]} == {5}


def test_writer_grows_the_map(tmp_path):
    rng = np.random.default_rng(1)
    with LmdbWriter(tmp_path / 'grow.lmdb', map_size=64 * 1024, commit_every=8) as writer:
        for i in range(40):
            writer.put_image(f'k{i:02d}', rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        map_size = writer.env.info()['map_size']
    assert map_size > 64 * 1024
    assert len(_lmdb_contents(tmp_path / 'grow.lmdb')) == 40
    assert verify_lmdb(str(tmp_path / 'grow.lmdb')) == []


def test_writer_reconciles_meta_info_on_reopen(tmp_path):
    """A kill between a commit and its meta_info lines, or a stale line, is repaired on resume."""
    path = tmp_path / 'r.lmdb'
    with LmdbWriter(path) as writer:
        for i in range(4):
            writer.put_image(f'k{i}', np.full((5 + i, 7, 3), i, np.uint8))
    lines = (path / META_INFO).read_text().splitlines()
    (path / META_INFO).write_text('\n'.join(lines[:2] + ['ghost.png (1,1,3) 1', 'k3.png (9,']) + '\n')
    writer = LmdbWriter(path)
    assert writer.keys()[:2] == ['k0', 'k1'] and sorted(writer.keys()) == ['k0', 'k1', 'k2', 'k3']
    writer.put_image('k1', np.zeros((5, 7, 3), np.uint8))  # same key again: replaced, not duplicated
    writer.close()
    entries, malformed = read_meta_info(str(path))
    assert malformed == [] and [k for k, _, _ in entries].count('k1') == 1
    assert dict((k, s) for k, s, _ in entries)['k3'] == (8, 7, 3)
    assert verify_lmdb(str(path)) == []


def test_verify_reports_a_wrong_meta_info(tmp_path):
    path = tmp_path / 'v.lmdb'
    with LmdbWriter(path) as writer:
        writer.put_image('a', np.zeros((4, 6, 3), np.uint8))
        writer.put_image('b', np.zeros((4, 6), np.uint8))
    (path / META_INFO).write_text('a.png (4,6,3) 1\nb.png (4,6,3) 1\nc.png (4,6,3) 1\n')
    problems = verify_lmdb(str(path))
    assert any("'b'" in p and '(4, 6, 1)' in p for p in problems)
    assert any("'c'" in p and 'not stored' in p for p in problems)


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    """SIGKILL the command mid-run (PNG level 9 on noise keeps it busy), rerun: every image once."""
    rng = np.random.default_rng(2)
    (tmp_path / 'src').mkdir()
    count = 120
    for i in range(count):
        cv2.imwrite(str(tmp_path / 'src' / f'{i:04d}.png'), rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))
    dst = tmp_path / 'k.lmdb'
    args = ['-m', 'dlst_plugin.cli.make_lmdb', str(tmp_path / 'src'), str(dst), '--png-level', '9',
            '--workers', '1', '--commit-every', '2']
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    entries, deadline = 0, time.time() + 120
    while entries < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if (dst / 'data.mdb').exists():
            env = lmdb.open(str(dst), readonly=True, lock=False)
            entries = env.stat()['entries']
            env.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 <= len(_lmdb_contents(dst)) < count, 'the run was not interrupted mid-way'
    assert make_lmdb.main([*args[2:], '--verify']) == 0
    stored = _lmdb_contents(dst)
    assert sorted(stored) == [f'{i:04d}' for i in range(count)]
    keys = [k for k, _, _ in read_meta_info(str(dst))[0]]
    assert len(keys) == count and set(keys) == set(stored)
    assert all(_decode(v).shape == (160, 160, 3) for v in stored.values())


@pytest.mark.slow
@pytest.mark.parametrize('group', [False, True], ids=['command', 'process_group'])
def test_sigterm_keeps_what_was_committed_and_rerun_completes(tmp_path, group):
    """SIGTERM (to the command, or to it and its workers as Slurm does) mid-run: exit 143, one message, no
    worker traceback, the committed images kept and listed; rerunning stores every image once."""
    rng = np.random.default_rng(3)
    (tmp_path / 'src').mkdir()
    count = 300  # about 2 s here: 32 px noise resized to 256 px and stored at PNG level 9
    for i in range(count):
        cv2.imwrite(str(tmp_path / 'src' / f'{i:04d}.png'), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    dst = tmp_path / 't.lmdb'
    args = ['-i', str(tmp_path / 'src'), '-o', str(dst), '--resize', '256', '--interpolation', 'lanczos',
            '--png-level', '9', '--workers', '2', '--commit-every', '2']
    code, _, err = signal_mid_run(['-m', 'dlst_plugin.cli.make_lmdb', *args], lambda: line_count(dst / META_INFO) >= 6,
                                  signal.SIGTERM, group=group)
    assert_stopped_by_sigterm(code, err, 'the images written so far are committed')
    stored = _lmdb_contents(dst)
    assert 6 <= len(stored) < count and sorted(k for k, _, _ in read_meta_info(str(dst))[0]) == sorted(stored)
    assert make_lmdb.main([*args, '--verify']) == 0
    assert sorted(_lmdb_contents(dst)) == [f'{i:04d}' for i in range(count)]
    assert len(read_meta_info(str(dst))[0]) == count


def test_help_mentions_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_lmdb.main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ('--glob', '--resize', '--png-level', '--workers', '--verify', '--overwrite', '--keys'):
        assert option in out


def test_the_library_returns_what_was_written_and_skipped(tmp_path, capsys):
    from dlst_plugin.fileio.folder_lmdb import LmdbSettings, make_lmdb
    _write_sources(tmp_path / 'src', count=2)
    (tmp_path / 'src' / 'broken.png').write_bytes(b'not a png')
    result = make_lmdb(tmp_path / 'src', tmp_path / 'x.lmdb', LmdbSettings(keys='stem', verify=True))
    assert (result.written, result.entries, result.problems) == (4, 4, [])
    assert [(key, why) for key, _, why in result.skipped] == [('broken', 'unreadable: not an image, truncated or '
                                                                          'corrupt')]
    again = make_lmdb(tmp_path / 'src', tmp_path / 'x.lmdb', LmdbSettings(keys='stem'))
    assert (again.written, again.entries) == (0, 4) and 'resuming' in capsys.readouterr().out
