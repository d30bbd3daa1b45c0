"""Read face images from a folder or a BasicSR LMDB, with one clear error per bad file.

Every face dataset of the plugin reads through ``FaceImageSource`` (LMDB via BasicSR's
``FileClient``, opened lazily in each worker, or folders). A missing, unreadable or corrupt image
raises ``BadImageError`` naming it, never a bare cv2 ``NoneType`` error; with ``skip_bad_images`` it is
logged through BasicSR's root logger and another image is read instead. An LMDB whose ``meta_info.txt``
lists a key ``data.mdb`` does not hold is refused at start-up (keys only, no image is decoded), not
mid-training.
"""
import os
import os.path as osp

import cv2
import lmdb
import numpy as np
from basicsr.utils import FileClient, get_root_logger

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.fileio.images import IMAGE_EXTENSIONS, list_images

BACKENDS = ('disk', 'lmdb')


class BadImageError(InputError, OSError):
    """An image that is missing, unreadable or not decodable; ``path`` names it."""

    def __init__(self, message, path=None):  # one-argument form: DataLoader workers re-raise with the text
        super().__init__(message)
        self.path = path


def _bad_image(path, reason):
    return BadImageError(f'cannot read image {path}: {reason}', path=path)


def scan_image_folder(root):
    """Relative paths of the image files under ``root`` (recursive, sorted; :mod:`dlst_plugin.fileio.images`)."""
    return [rel.replace('/', os.sep) for rel, _ in list_images(root)]


def read_lmdb_keys(root, option='dataroot_gt'):
    """Keys listed in a BasicSR LMDB's ``meta_info.txt`` (``name.ext (h,w,c) level`` per line)."""
    meta = osp.join(root, 'meta_info.txt')
    if not osp.isfile(meta):
        raise ConfigError(f'{option}: {root} is not a BasicSR LMDB: {meta} is missing')
    if not osp.isfile(osp.join(root, 'data.mdb')):
        raise ConfigError(f'{option}: {root} is not a BasicSR LMDB: data.mdb is missing')
    keys = []
    with open(meta, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(' ', 2)  # names may hold spaces; shape and level never do
            if len(parts) != 3 or not parts[1].startswith('('):
                raise ConfigError(f'{meta} line {number}: expected "name.ext (h,w,c) compression", got {line!r}')
            keys.append(osp.splitext(parts[0])[0])
    return keys


def check_lmdb_keys(root, keys, option='dataroot_gt', shown=5):
    """Raise :class:`~dlst_plugin.errors.ConfigError` naming the keys of ``meta_info.txt`` that ``data.mdb``
    does not hold. One read transaction over the stored keys; no value is read or decoded."""
    try:
        env = lmdb.open(root, readonly=True, lock=False, readahead=False, max_readers=1)
    except lmdb.Error as err:
        if 'already open' in str(err):  # this process reads it already: it passed this check then
            return
        raise ConfigError(f'{option}: cannot open the LMDB {root} ({type(err).__name__}: {err})') from None
    try:
        with env.begin(buffers=True) as txn:
            stored = {bytes(key) for key in txn.cursor().iternext(values=False)}
    finally:
        env.close()
    missing = [key for key in keys if key.encode('utf-8') not in stored]
    if missing:
        listed = ', '.join(repr(k) for k in missing[:shown]) + (f' and {len(missing) - shown} more'
                                                                 if len(missing) > shown else '')
        raise ConfigError(f'{option}: {osp.join(root, "meta_info.txt")} lists {len(missing)} key(s) that '
                          f'{osp.join(root, "data.mdb")} does not hold: {listed}. The LMDB is incomplete or its '
                          'meta_info.txt belongs to another one: rerun the command that wrote it (dlst-make-lmdb, '
                          'dlst-generate-pairs, dlst-collect-lq-faces resume and repair it)')


def decode_image(buf, path):
    """Bytes -> float32 BGR HxWx3 in [0, 1]; ``BadImageError`` naming ``path`` if they are no image."""
    if buf is None:
        raise _bad_image(path, 'no such key in the LMDB')
    data = np.frombuffer(buf, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise _bad_image(path, 'not a decodable image (corrupt or unsupported format)')
    out = img.astype(np.float32)
    out /= 255.0  # as BasicSR's imfrombytes, bit for bit
    return out


class FaceImageSource:
    """Images of a folder (recursive, ``IMAGE_EXTENSIONS``) or of a BasicSR LMDB.

    Args:
        root: the folder, or the ``.lmdb`` folder holding ``data.mdb`` and ``meta_info.txt``.
        io_backend_opt: BasicSR's ``io_backend`` dict, ``{'type': 'disk' | 'lmdb', ...}``; other
            keys go to ``FileClient`` (e.g. ``readahead`` for LMDB).
        skip_bad_images: log and skip bad images instead of raising ``BadImageError``.
        option: the option name that gave ``root``, used in error messages.
    """

    def __init__(self, root, io_backend_opt=None, skip_bad_images=False, option='dataroot_gt'):
        if not root:
            raise ConfigError(f'{option} is not set')
        backend_opt = dict(io_backend_opt or {'type': 'disk'})
        self.backend = backend_opt.pop('type', 'disk')
        if self.backend not in BACKENDS:
            raise ConfigError(f'io_backend.type {self.backend!r} is not supported for {option}; use one of {BACKENDS}')
        self.root = osp.expanduser(str(root))
        self.option = option
        self.skip_bad_images = bool(skip_bad_images)
        if not osp.isdir(self.root):
            raise ConfigError(f'{option}: {self.root} does not exist or is not a folder')
        if self.backend == 'lmdb':
            self.keys = read_lmdb_keys(self.root, option)
            check_lmdb_keys(self.root, self.keys, option)
            self._client_opt = dict(backend_opt, db_paths=[self.root], client_keys=['default'])
        else:
            self.keys = scan_image_folder(self.root)
            self._client_opt = backend_opt
        if not self.keys:
            what = 'no keys in meta_info.txt' if self.backend == 'lmdb' else \
                f'no image files ({" ".join(IMAGE_EXTENSIONS)})'
            raise ConfigError(f'{option}: {what} in {self.root}')
        self._client = None
        self._client_pid = None
        self._bad = set()

    def __len__(self):
        return len(self.keys)

    def __getstate__(self):  # an open LMDB environment must not travel to worker processes
        state = dict(self.__dict__)
        state['_client'] = state['_client_pid'] = None
        return state

    def path(self, index):
        """The file path (disk) or LMDB key of an image, as BasicSR datasets report it."""
        key = self.keys[index]
        return osp.join(self.root, key) if self.backend == 'disk' else key

    def describe(self, index):
        """Where an image lives, for messages: the file, or ``<lmdb folder> key <key>``."""
        return self.path(index) if self.backend == 'disk' else f'{self.root} key {self.keys[index]!r}'

    def _file_client(self):
        # opened lazily, and again after a fork: every DataLoader worker needs its own LMDB handle
        if self._client is not None and self._client_pid != os.getpid():
            self._close_inherited_client()
        if self._client is None:
            self._client = FileClient(self.backend, **self._client_opt)
            self._client_pid = os.getpid()
        return self._client

    def _close_inherited_client(self):
        """Drop a handle opened before a fork. LMDB refuses to open an environment twice in one
        process, and the forked copy of the parent's must not be used: close this process's copy."""
        if self.backend == 'lmdb':
            for env in self._client.client._client.values():  # BasicSR's LmdbBackend keeps its envs there
                env.close()
        self._client = self._client_pid = None

    def read(self, index):
        """Image ``index`` as float32 BGR HxWx3 in [0, 1]; ``BadImageError`` if it cannot be read."""
        where = self.describe(index)
        try:
            buf = self._file_client().get(self.path(index))
        except OSError as err:
            raise _bad_image(where, err.strerror or str(err)) from err
        try:
            return decode_image(buf, where)
        except cv2.error as err:
            raise _bad_image(where, f'OpenCV could not decode it ({err.msg.strip() if err.msg else err})') from err

    def read_or_skip(self, index):
        """``(index_read, image)``: image ``index`` or, with ``skip_bad_images``, the next good one."""
        n = len(self.keys)
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                return i, self.read(i)
            except BadImageError as err:
                if not self.skip_bad_images:
                    raise
                self._bad.add(i)
                get_root_logger().warning(f'skipping a bad image ({err}); skip_bad_images is set')
        raise InputError(f'{self.option}: no readable image left in {self.root} (all {n} failed)')
