"""Write and check LMDBs in BasicSR's layout (``data.mdb`` + ``meta_info.txt``), resumably.

BasicSR's ``FileClient('lmdb')`` looks images up by key, and its datasets (and GFP-GAN's)
list the keys from ``meta_info.txt``, one ``<key>.png (h,w,c) <png level>`` line each,
keeping what comes before the first ``.``.
:class:`LmdbWriter` is the one writer for every LMDB the plugin makes (``dlst-make-lmdb``,
``dlst-collect-lq-faces``, pair generation):

* the map grows by doubling when it fills (no ``MapFullError``);
* reopening an existing LMDB resumes it: committed keys are kept, a key is never stored
  twice, and ``meta_info.txt`` is reconciled with what was really committed (a run killed
  between a commit and its ``meta_info`` lines loses nothing);
* keys are checked against :data:`KEY_RULE` before anything is written;
* a read-only destination stops with one :class:`~dlst_plugin.errors.ConfigError` naming it.
"""
import contextlib
import multiprocessing
import os
import re
import signal
import time

import cv2
import lmdb
import numpy as np

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.fileio.atomic import append_durably, atomic_write_text, check_writable
from dlst_plugin.fileio.images import list_images  # noqa: F401  (re-exported: the one folder scan)

META_INFO = 'meta_info.txt'
LMDB_FILES = ('data.mdb', 'lock.mdb', META_INFO)
KEY_RULE = ("an LMDB key must be printable ASCII without '.', whitespace or '\\' (BasicSR encodes keys as ASCII "
            "and reads meta_info.txt lines '<key>.png (h,w,c) level', cutting the key at the first '.')")
_BAD_KEY_CHAR = re.compile(r'[^\x21-\x7e]|[.\\]')
_META_LINE = re.compile(r'^(\S+?)\.png \((\d+),(\d+),(\d+)\) (-?\d+)$')
_INITIAL_MAP_SIZE = 1 << 28  # 256 MiB; doubled whenever it fills


def key_problem(key):
    """Why ``key`` breaks :data:`KEY_RULE`, or None when it is fine."""
    if not key:
        return 'it is empty'
    bad = sorted(set(_BAD_KEY_CHAR.findall(key)))
    if bad:
        return 'it contains ' + ', '.join(repr(c) for c in bad)
    return None


def check_key(key):
    problem = key_problem(key)
    if problem:
        raise ConfigError(f'bad LMDB key {key!r}: {problem}; {KEY_RULE}')


def sanitize_key(key):
    """Replace every character :data:`KEY_RULE` forbids by ``_``."""
    return _BAD_KEY_CHAR.sub('_', key)


def image_shape(img):
    """(h, w, c) as BasicSR's meta_info.txt writes it (c = 1 for a grey image)."""
    return (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])


def encode_png(img, compress_level=1):
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise ValueError(f'OpenCV could not encode a {img.shape} {img.dtype} image as PNG')
    return buf.tobytes()


def format_meta_line(key, shape, compress_level):
    h, w, c = shape
    return f'{key}.png ({h},{w},{c}) {compress_level}'


def read_meta_info(lmdb_path):
    """Parsed ``meta_info.txt``: list of (key, (h, w, c), level), plus the malformed lines."""
    entries, malformed = [], []
    path = os.path.join(lmdb_path, META_INFO)
    if not os.path.isfile(path):
        return entries, malformed
    with open(path, encoding='ascii', errors='replace') as f:
        for line in f:
            line = line.rstrip('\n')
            match = _META_LINE.match(line)
            if match:
                key, h, w, c, level = match.groups()
                entries.append((key, (int(h), int(w), int(c)), int(level)))
            elif line.strip():
                malformed.append(line)
    return entries, malformed


def lmdb_keys(lmdb_path):
    """The keys ``meta_info.txt`` lists, in its order (what BasicSR's datasets read)."""
    return [key for key, _, _ in read_meta_info(lmdb_path)[0]]


def read_lmdb_images(lmdb_path, keys=None, flags=cv2.IMREAD_COLOR):
    """``{key: image}`` of ``keys`` (default: :func:`lmdb_keys`), decoded with OpenCV ``flags``; InputError
    naming the LMDB and the key when a key is not stored or does not decode."""
    keys = lmdb_keys(lmdb_path) if keys is None else list(keys)
    images = {}
    env = lmdb.open(os.fspath(lmdb_path), readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            for key in keys:
                data = txn.get(key.encode('ascii'))
                img = None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), flags)
                if img is None:
                    raise InputError(f'{lmdb_path}: key {key!r} is ' + ('not stored' if data is None else
                                                                       'not a decodable image'))
                images[key] = img
    finally:
        env.close()
    return images


def is_lmdb_dir(path):
    return os.path.isfile(os.path.join(path, 'data.mdb'))


class LmdbWriter:
    """Resumable writer of a BasicSR-layout LMDB.

    Args:
        path: folder to write, ending in ``.lmdb`` (BasicSR's convention).
        resume: reopen an existing LMDB and keep its entries; if False, an existing
            ``path`` is an error (:class:`~dlst_plugin.errors.ConfigError`, as is a read-only one).
        compress_level: PNG level written to ``meta_info.txt`` for entries put without one.
        commit_every / commit_bytes: commit after this many puts or buffered bytes.
        map_size: initial map size in bytes (it doubles on demand).
    """

    def __init__(self, path, resume=True, compress_level=1, commit_every=500, commit_bytes=1 << 27, map_size=None):
        path = os.fspath(path)
        if not path.rstrip('/').endswith('.lmdb'):
            raise ConfigError(f"LMDB folder {path!r} must end with '.lmdb' (BasicSR's convention)")
        if os.path.exists(path):
            if not resume:
                raise ConfigError(f'{path} already exists (resume it, or remove it first)')
            if not os.path.isdir(path) or (os.listdir(path) and not is_lmdb_dir(path)):
                raise ConfigError(f'{path} exists and is not an LMDB folder (no data.mdb); refusing to write')
            check_writable(path, 'LMDB', LMDB_FILES)
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.compress_level = compress_level
        self.commit_every = commit_every
        self.commit_bytes = commit_bytes
        size = max(map_size or _INITIAL_MAP_SIZE, 2 * _file_size(os.path.join(path, 'data.mdb')))
        try:
            self.env = lmdb.open(path, map_size=size, readahead=False, meminit=False)
        except lmdb.Error as err:  # ReadonlyError (EACCES), a read-only file system
            raise ConfigError(f'cannot open the LMDB {path} for writing ({type(err).__name__}: {err}): make it '
                              f'writable (chmod -R u+w {path}) or choose another output') from None
        self._meta = {}  # key -> (shape, level), committed, in insertion order
        self._pending = {}  # key -> (bytes, shape, level), not committed yet
        self._pending_bytes = 0
        self.resumed = self._reconcile()

    # -- resume ------------------------------------------------------------------------------------
    def _reconcile(self):
        """Rebuild the meta table from what the LMDB really holds; return the number of entries."""
        entries, _ = read_meta_info(self.path)
        listed = {key: (shape, level) for key, shape, level in entries}
        with self.env.begin() as txn:
            stored = [k.decode('ascii') for k in txn.cursor().iternext(values=False)]
            stored_set = set(stored)
            for key, _, _ in entries:  # meta_info order first (the order things were written)
                if key in stored_set and key not in self._meta:
                    self._meta[key] = listed[key]
            for key in stored:  # committed but killed before its meta_info line: read the shape back
                if key not in self._meta:
                    img = cv2.imdecode(np.frombuffer(txn.get(key.encode('ascii')), np.uint8), cv2.IMREAD_UNCHANGED)
                    if img is None:
                        raise InputError(f'{self.path}: entry {key!r} is not a decodable image; remove the LMDB '
                                         '(or pass --overwrite) and write it again')
                    self._meta[key] = (image_shape(img), self.compress_level)
        self._write_meta_info()
        return len(self._meta)

    # -- writing -----------------------------------------------------------------------------------
    def __contains__(self, key):
        return key in self._meta or key in self._pending

    def __len__(self):
        return len(self._meta) + sum(1 for k in self._pending if k not in self._meta)

    def keys(self):
        """All keys, committed then pending, in the order first written."""
        return list(self._meta) + [k for k in self._pending if k not in self._meta]

    def put(self, key, png_bytes, shape, compress_level=None):
        """Store ``png_bytes`` (an encoded image of ``shape`` (h, w, c)) under ``key``.

        Putting a key again replaces its value; it is never listed twice."""
        check_key(key)
        if len(shape) != 3:
            raise ValueError(f'shape of {key!r} must be (h, w, c), got {shape}')
        level = self.compress_level if compress_level is None else compress_level
        self._pending[key] = (bytes(png_bytes), tuple(int(s) for s in shape), level)
        self._pending_bytes += len(png_bytes)
        if len(self._pending) >= self.commit_every or self._pending_bytes >= self.commit_bytes:
            self.commit()

    def put_image(self, key, img, compress_level=None):
        """Encode ``img`` (uint8 HxW or HxWxC, BGR) as PNG and store it."""
        level = self.compress_level if compress_level is None else compress_level
        self.put(key, encode_png(img, level), image_shape(img), level)

    def commit(self):
        """Write the pending entries in one transaction (growing the map if needed)."""
        if not self._pending:
            return
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, (data, _, _) in self._pending.items():
                        txn.put(key.encode('ascii'), data)
                break
            except lmdb.MapFullError:  # the transaction was aborted: grow and retry it whole
                self.env.set_mapsize(self.env.info()['map_size'] * 2)
        new_lines = []
        for key, (_, shape, level) in self._pending.items():
            if key not in self._meta:
                new_lines.append(format_meta_line(key, shape, level))
            self._meta[key] = (shape, level)
        if new_lines:
            append_durably(os.path.join(self.path, META_INFO), '\n'.join(new_lines) + '\n', encoding='ascii')
        self._pending.clear()
        self._pending_bytes = 0

    def _write_meta_info(self):
        """Rewrite meta_info.txt from the meta table, atomically."""
        lines = ''.join(format_meta_line(key, shape, level) + '\n' for key, (shape, level) in self._meta.items())
        atomic_write_text(os.path.join(self.path, META_INFO), lines, encoding='ascii')

    def close(self):
        if self.env is None:
            return
        self.commit()
        entries, malformed = read_meta_info(self.path)
        if malformed or entries != [(k, shape, level) for k, (shape, level) in self._meta.items()]:
            self._write_meta_info()
        self.env.close()
        self.env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _file_size(path):
    return os.path.getsize(path) if os.path.isfile(path) else 0


def verify_lmdb(lmdb_path, workers=1, chunk=64):
    """Check an LMDB against its ``meta_info.txt``; return a list of problems (empty when sound).

    Every listed key must be stored once and decode to the listed shape, and every stored
    key must be listed. Decoding runs in ``workers`` processes."""
    problems = []
    entries, malformed = read_meta_info(lmdb_path)
    if not os.path.isfile(os.path.join(lmdb_path, META_INFO)):
        problems.append(f'{META_INFO} is missing')
    problems += [f'{META_INFO}: malformed line {line!r}' for line in malformed]
    listed = {}
    for key, shape, _ in entries:
        if key in listed:
            problems.append(f'{META_INFO}: key {key!r} is listed more than once')
        listed[key] = shape
    env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        stored = [k.decode('ascii', errors='replace') for k in txn.cursor().iternext(values=False)]
    env.close()
    problems += [f'key {key!r} is stored but not listed in {META_INFO}' for key in stored if key not in listed]
    stored_set = set(stored)
    problems += [f'key {key!r} is listed in {META_INFO} but not stored' for key in listed if key not in stored_set]
    to_decode = [key for key in stored if key in listed]
    jobs = [(lmdb_path, to_decode[i:i + chunk]) for i in range(0, len(to_decode), chunk)]
    if workers > 1 and len(jobs) > 1:
        with worker_pool(workers) as pool:
            results = [r for part in pool.imap(_decode_shapes, jobs) for r in part]
    else:
        results = [r for job in jobs for r in _decode_shapes(job)]
    for key, shape in results:
        if isinstance(shape, str):
            problems.append(f'key {key!r}: {shape}')
        elif shape != listed[key]:
            problems.append(f'key {key!r}: decodes to {shape}, {META_INFO} says {listed[key]}')
    return problems


def _decode_shapes(job):
    """(key, shape or error) for each key of ``job = (lmdb_path, keys)``; runs in a worker."""
    lmdb_path, keys = job
    env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    out = []
    with env.begin() as txn:
        for key in keys:
            img = cv2.imdecode(np.frombuffer(txn.get(key.encode('ascii')), np.uint8), cv2.IMREAD_UNCHANGED)
            out.append((key, 'does not decode as an image' if img is None else image_shape(img)))
    env.close()
    return out



@contextlib.contextmanager
def worker_pool(workers, initializer=None, initargs=(), start_method=None):
    """Worker processes (``.imap(fn, items, chunksize)``, results in order) that can use OpenCV safely and never
    hang the parent when a signal kills them.

    A forked child that touches the OpenCV thread pool its parent had started hangs (even
    ``cv2.setNumThreads`` does), so the parent runs OpenCV single-threaded while workers are
    forked, and forked workers inherit that instead of calling OpenCV's thread settings. Workers leave
    Ctrl-C and SIGTERM to the parent (see ``_init_worker``). A ``concurrent.futures`` process pool, not a
    ``multiprocessing.Pool``: a worker killed while it holds the task queue's lock (SIGTERM sent to the whole
    process group, as Slurm does) leaves a ``Pool`` waiting for that lock forever at shutdown, where the
    executor notices the dead process and shuts down anyway; the loop then sees ``BrokenProcessPool``."""
    from concurrent.futures import ProcessPoolExecutor
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    ctx = multiprocessing.get_context(start_method)
    fresh = ctx.get_start_method() != 'fork'
    executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(fresh, initializer, initargs))
    try:
        yield _Workers(executor)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(threads)


class _Workers:
    """``imap`` over a process pool executor (what the callers of :func:`worker_pool` use)."""

    def __init__(self, executor):
        self.executor = executor

    def imap(self, fn, items, chunksize=1):
        from concurrent.futures.process import BrokenProcessPool
        try:
            yield from self.executor.map(fn, items, chunksize=chunksize)
        except BrokenProcessPool:
            time.sleep(0.5)  # a SIGTERM sent to the whole group reaches this process too: its handler runs first
            raise InputError('a worker process ended abruptly (killed by a signal, or out of memory); what was '
                             'written is committed: rerun the same command to continue') from None


def _init_worker(fresh, initializer, initargs):
    # the parent handles Ctrl-C and SIGTERM and tears the pool down (Pool.terminate sends SIGTERM): a worker
    # ignores SIGINT (a terminal sends it to every process) and dies quietly on SIGTERM, without the
    # traceback a forked copy of the parent's handler (or a broken result pipe) would print
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if fresh:  # a new interpreter (spawn / forkserver): one OpenCV thread per worker process
        cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)
