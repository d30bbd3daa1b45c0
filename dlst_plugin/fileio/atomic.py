"""Writes that a kill cannot cut in half: write to a temporary file beside the target, flush it to
disk, then rename it over the target (``os.replace`` is atomic on POSIX and Windows). A reader sees
the old file or the new one, never a truncated one; an interrupted write leaves at most a
``*.tmp-<pid>`` file, which the next write of the same target removes.

Every file the plugin's commands and datasets write goes through here (images, CSV and JSON
records, option files, checkpoints, exported models)."""
import contextlib
import os
import signal
import threading
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success it replaces ``path`` (fsynced), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.name}.tmp-{os.getpid()}')
    try:
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # what is left of a failed write; the write's own error is raised
            tmp.unlink()


def _write_file(path, data):
    """Write ``data`` to ``path`` (the temporary file of an atomic write); tests replace it to fake a full disk."""
    with open(path, 'wb') as f:
        f.write(data)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        _write_file(tmp, data)


def atomic_write_text(path, text, encoding='utf-8'):
    atomic_write_bytes(path, text.encode(encoding))


def append_durably(path, text, encoding='utf-8'):
    """Append ``text`` to ``path`` (created when missing) and fsync it: once this returns, a kill or a power cut
    keeps the lines. Line endings are written as given (``newline=''``: a CSV writer's own stay as they are).
    For logs of finished work (``done.txt``, ``meta_info.txt``) that a reader takes line by line, ignoring a cut
    last line; a file that must never be seen half-written goes through :func:`atomic_write_bytes`."""
    with open(path, 'a', encoding=encoding, newline='') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def signals_deferred():
    """Inside the block, Ctrl-C and SIGTERM wait until it ends: for writes to several files that must agree
    (what a sink committed, then its records of it), which the exception a signal handler raises could
    otherwise cut between two files. A signal received meanwhile is handed to the handler that was in place,
    once, as the block ends. Outside the main thread (where handlers cannot be set) it is a plain block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


def atomic_write_image(path, img, params=()):
    """Encode ``img`` (OpenCV's layout: BGR, uint8 or uint16) in the format of ``path``'s suffix with OpenCV's
    ``params`` (e.g. ``[cv2.IMWRITE_JPEG_QUALITY, 90]``) and write it atomically; ValueError when OpenCV cannot
    encode it."""
    import cv2
    try:
        ok, buf = cv2.imencode(Path(path).suffix or '.png', img, list(params))
    except cv2.error:  # a layout the format cannot hold (e.g. 2 or 5 channels)
        ok = False
    if not ok:
        raise ValueError(f'OpenCV cannot encode a {img.shape} {img.dtype} image as {Path(path).suffix} ({path})')
    atomic_write_bytes(path, buf.tobytes())


def atomic_torch_save(obj, path):
    """``torch.save`` through a temporary file: a kill during the save leaves the previous file intact."""
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_csv(path, header, rows):
    """A whole CSV file (``header`` then ``rows``, lists or dicts keyed by ``header``), atomically."""
    import csv
    import io
    buf = io.StringIO(newline='')
    if rows and isinstance(rows[0], dict):
        writer = csv.DictWriter(buf, header)
        writer.writeheader()
    else:
        writer = csv.writer(buf)
        writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def check_writable(path, what='output', files=()):
    """Raise :class:`~dlst_plugin.errors.ConfigError` when the existing folder ``path`` (or one of the
    ``files`` in it) cannot be written (read-only permissions or file system), naming it; what does not
    exist yet passes."""
    from dlst_plugin.errors import ConfigError
    path = Path(path)
    for target in [path] + [path / name for name in files]:
        if target.exists() and not os.access(target, os.W_OK):
            raise ConfigError(f'{what} {path} is read-only ({target} cannot be written): make it writable '
                              f'(chmod -R u+w {path}) or choose another {what}')


def check_can_write(folder, size=4096):
    """Write ``size`` bytes into the existing ``folder`` through the atomic path, then remove them: raise the
    ``OSError`` a real output write would meet there (read-only file system, no permission, no space), before
    any work is done. Permissions alone say nothing for root or a read-only mount; a write does."""
    probe = Path(folder) / f'.dlst-write-test-{os.getpid()}'
    atomic_write_bytes(probe, b'\0' * size)
    probe.unlink()
