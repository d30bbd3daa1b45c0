"""dlst-restore's output: checked before any photo is restored (unwritable up front: exit 2), a full or
read-only disk stops the run at the first failed write (exit 1, naming what was finished), and no partial
file survives a failed photo.

Tests run as root, where permissions stop no write, so the file system's refusals are faked where the
plugin writes every file (``dlst_plugin.fileio.atomic._write_file``): half the bytes, then the OSError."""
import errno

import cv2
import numpy as np
import pytest
from helpers import call_main
from tiny_restorers import TINY_ST, save_training_checkpoint

from dlst_plugin.cli.restore import main
from dlst_plugin.fileio import atomic as fileio
from dlst_plugin.inference.face_restorer import FaceRestorer

MESSAGES = {errno.ENOSPC: 'No space left on device', errno.EROFS: 'Read-only file system',
            errno.ENAMETOOLONG: 'File name too long'}


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return save_training_checkpoint(tmp_path_factory.mktemp('model') / 'net_g_tiny.pth', TINY_ST)[0]


@pytest.fixture
def faces(tmp_path):
    """Three aligned 32 px faces a.png, b.png, c.png (restored in that order)."""
    folder = tmp_path / 'faces'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in 'abc':
        cv2.imwrite(str(folder / f'{name}.png'), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return folder


@pytest.fixture
def restored(monkeypatch):
    """The photos the restorer was given, in order."""
    calls, real = [], FaceRestorer.restore_image

    def counting(self, img, *args, **kwargs):
        calls.append(img.shape)
        return real(self, img, *args, **kwargs)
    monkeypatch.setattr(FaceRestorer, 'restore_image', counting)
    return calls


def fail_writes(monkeypatch, code, when):
    """Make every write of a file whose name ``when(name)`` accepts write half its bytes, then fail with ``code``;
    return the names of all files written (or tried) in order."""
    tried, real = [], fileio._write_file

    def writer(path, data):
        tried.append(path.name)
        if not when(path.name):
            return real(path, data)
        real(path, data[:len(data) // 2])  # what a full disk leaves: a partial file
        raise OSError(code, MESSAGES[code], str(path))
    monkeypatch.setattr(fileio, '_write_file', writer)
    return tried


def restore(faces, out, model):
    return call_main(main, ['-i', faces, '-o', out, '--model', model, '--aligned'])


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file())


def test_output_under_a_file_stops_before_any_photo(faces, tmp_path, model, restored):
    (tmp_path / 'notes.txt').write_text('a file, not a folder')
    code, _, err = restore(faces, tmp_path / 'notes.txt' / 'out', model)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f'error: -o/--output {tmp_path / "notes.txt" / "out"}: cannot write into')
    assert 'no photo was restored' in err and restored == []


def test_read_only_output_stops_before_any_photo(faces, tmp_path, model, restored, monkeypatch):
    fail_writes(monkeypatch, errno.EROFS, lambda name: True)
    code, stdout, err = restore(faces, tmp_path / 'out', model)
    assert code == 2 and 'Read-only file system' in err and 'no photo was restored' in err
    assert restored == [] and stdout == ''
    assert files_under(tmp_path / 'out') == []  # the test write left nothing behind


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EROFS], ids=['disk_full', 'read_only'])
def test_failed_write_stops_at_the_first_error_naming_what_was_finished(faces, tmp_path, model, restored,
                                                                       monkeypatch, code):
    tried = fail_writes(monkeypatch, code, lambda name: name.startswith('b_00.png'))  # b's face, after b's photo
    code_, stdout, err = restore(faces, tmp_path / 'out', model)
    assert code_ == 1 and '1 ok, 0 failed' in stdout
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: cannot write') and MESSAGES[code] in line
    assert '1 of 3 photo(s) finished (a.png' in line and '1 not started' in line and 'none of b.png kept' in line
    assert len(restored) == 2 and not any(name.startswith('c') for name in tried)  # c never started
    assert files_under(tmp_path / 'out') == ['restored_faces/a_00.png', 'restored_imgs/a.png']  # b's taken back


def test_a_write_error_of_one_photo_skips_only_that_photo(faces, tmp_path, model, restored, monkeypatch):
    fail_writes(monkeypatch, errno.ENAMETOOLONG, lambda name: name.startswith('b_00.png'))
    code, stdout, _ = restore(faces, tmp_path / 'out', model)
    assert code == 1 and '2 ok, 1 failed' in stdout and 'File name too long' in stdout
    assert files_under(tmp_path / 'out') == ['restored_faces/a_00.png', 'restored_faces/c_00.png',
                                             'restored_imgs/a.png', 'restored_imgs/c.png']


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.ENOSPC, lambda name: True)
    with pytest.raises(OSError, match='No space left on device'):
        fileio.atomic_write_bytes(tmp_path / 'x.png', b'0123456789')
    assert list(tmp_path.iterdir()) == []


def test_the_library_returns_the_photos_finished_and_writes_only_what_is_asked(model, faces, tmp_path):
    from dlst_plugin.inference.restore_files import RestoreSettings, restore_files
    summary = restore_files([faces, tmp_path / 'missing.png'], tmp_path / 'out', model,
                            RestoreSettings(aligned=True, write_faces=False))
    assert [p.rsplit('/', 1)[-1] for p in summary.finished] == ['a.png', 'b.png', 'c.png'] and summary.faces == 3
    assert summary.failed == [(str(tmp_path / 'missing.png'), 'no such file or folder')]
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['restored_imgs']  # no restored_faces/, no cmp/
