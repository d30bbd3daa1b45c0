"""Harvest aligned faces from folders of photos: the engine of ``dlst-collect-lq-faces`` (paper
3.2.1) and ``dlst-make-testset`` (paper 4.1).

Per photo: detect -> keep faces whose box passes the size rule -> square crop around the box
with a margin -> bicubic resize to the output size -> align to the FFHQ template. The
landmarks follow the crop and the resize, so the face is detected once, in the photo.

Output goes to a folder of PNGs or, when the destination ends in ``.lmdb``, to an LMDB
(:class:`dlst_plugin.fileio.lmdb.LmdbWriter`). Beside the faces: ``faces.csv`` (one row per
face), ``errors.csv`` (photos that could not be read or processed) and ``done.txt`` (photos
finished; a rerun skips them, so an interrupted run resumes without duplicates).
"""
import contextlib
import csv
import io
import os
import shutil
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.faces.alignment import align_face
from dlst_plugin.faces.detection import build_detector
from dlst_plugin.fileio.atomic import (
    append_durably,
    atomic_write_bytes,
    atomic_write_csv,
    check_writable,
    signals_deferred,
)
from dlst_plugin.fileio.images import list_images
from dlst_plugin.fileio.lmdb import LmdbWriter, encode_png, image_shape, is_lmdb_dir, sanitize_key, worker_pool

FACES_CSV, ERRORS_CSV, DONE_TXT = 'faces.csv', 'errors.csv', 'done.txt'
CSV_FIELDS = ['key', 'source', 'face_index', 'x1', 'y1', 'x2', 'y2', 'width', 'height', 'score'] + [
    f'{name}_{axis}' for name in ('left_eye', 'right_eye', 'nose', 'left_mouth', 'right_mouth') for axis in 'xy']


@dataclass
class HarvestOptions:
    size: int = 512  # side of the aligned output faces
    min_size: float = 0  # keep a face when min(box w, h) >= min_size ...
    max_size: float = float('inf')  # ... and max(box w, h) <= max_size
    margin: float = 1.0  # crop side = max(box w, h) * (1 + 2 * margin): room for rotated faces
    backend: str = 'yunet'
    weights_dir: str = None
    score_threshold: float = None  # None: the backend's default
    border: str = 'reflect'
    png_level: int = 1


def keep_face(face, opts):
    return min(face.width, face.height) >= opts.min_size and max(face.width, face.height) <= opts.max_size


def crop_resize_align(img, face, opts):
    """The aligned ``opts.size`` face of one detection (paper 3.2.1: crop, bicubic resize, align)."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * opts.margin)
    left, top = (x1 + x2 - side) / 2, (y1 + y2 - side) / 2
    scale = opts.size / side
    # crop + bicubic resize in one warp: exactly the square [left, left + side) scaled to size
    resize = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]])
    crop = cv2.warpAffine(img, resize, (opts.size, opts.size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT_101)
    landmarks = (face.landmarks - [left, top]) * scale
    aligned, _ = align_face(crop, landmarks, opts.size, border=opts.border, interpolation='bicubic')
    return aligned


def read_image(path):
    """BGR/grey uint8 image, or ValueError saying why not (also catches truncated files)."""
    data = np.fromfile(path, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError('unreadable: not an image, truncated or corrupt' if data.size else 'empty file')
    return img


_WORKER = {}


def _init_worker(opts):
    det_opts = {} if opts.score_threshold is None else {'score_threshold': opts.score_threshold}
    _WORKER['detector'] = build_detector(opts.backend, weights_dir=opts.weights_dir, **det_opts)
    _WORKER['opts'] = opts


def process_photo(job):
    """(source, source_key, rows, pngs, error) for one photo; runs in a worker process."""
    source, path, key = job
    opts = _WORKER['opts']
    try:
        img = read_image(path)
        faces = [f for f in _WORKER['detector'].detect(img) if keep_face(f, opts)]
        rows, pngs = [], []
        for i, face in enumerate(faces):
            aligned = crop_resize_align(img, face, opts)
            rows.append(_csv_row(f'{key}_{i:03d}', source, i, face))
            pngs.append((encode_png(aligned, opts.png_level), image_shape(aligned)))
        return source, rows, pngs, None
    except Exception as err:  # one bad photo must not stop the harvest: it is reported in errors.csv
        return source, [], [], f'{type(err).__name__}: {err}'


def _csv_row(key, source, index, face):
    values = [key, source, index, *(round(float(v), 2) for v in face.box), round(face.width, 2),
              round(face.height, 2), round(face.score, 4)]
    return dict(zip(CSV_FIELDS, values + [round(float(v), 2) for v in face.landmarks.reshape(-1)]))


class _FolderSink:
    def __init__(self, root, png_level):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def put(self, key, png, shape):
        atomic_write_bytes(os.path.join(self.root, key + '.png'), png)

    def commit(self):
        pass

    def close(self):
        pass


class _LmdbSink:
    def __init__(self, root, png_level):
        self.writer = LmdbWriter(root, resume=True, compress_level=png_level, commit_every=10 ** 9)

    def put(self, key, png, shape):
        self.writer.put(key, png, shape)

    def commit(self):
        self.writer.commit()

    def close(self):
        self.writer.close()


class HarvestState:
    """faces.csv / errors.csv / done.txt of a destination, reconciled for resuming."""

    def __init__(self, dst):
        self.dst = dst
        self.done = set(_read_lines(os.path.join(dst, DONE_TXT)))
        rows = read_csv_rows(os.path.join(dst, FACES_CSV))
        self.rows = [r for r in rows if r['source'] in self.done]  # rows of unfinished photos are redone
        self.num_faces = len(self.rows)
        self.errors = []  # photos that failed before are not done: they are retried, and reported again
        atomic_write_csv(os.path.join(dst, FACES_CSV), CSV_FIELDS, self.rows)
        atomic_write_csv(os.path.join(dst, ERRORS_CSV), ['source', 'error'], self.errors)
        self._pending_rows, self._pending_errors, self._pending_done = [], [], []

    def add(self, source, rows, error):
        if error:
            self._pending_errors.append({'source': source, 'error': error})
        else:
            self._pending_rows += rows
            self._pending_done.append(source)
            self.num_faces += len(rows)

    @property
    def num_errors(self):
        return len(self.errors) + len(self._pending_errors)

    def flush(self):
        """Record what the sink has committed: rows first, then the photos as done."""
        self._append_csv(FACES_CSV, CSV_FIELDS, self._pending_rows)
        self._append_csv(ERRORS_CSV, ['source', 'error'], self._pending_errors)
        self.errors += self._pending_errors
        append_durably(os.path.join(self.dst, DONE_TXT), ''.join(s + '\n' for s in self._pending_done))
        self.done.update(self._pending_done)
        self._pending_rows, self._pending_errors, self._pending_done = [], [], []

    def _append_csv(self, name, fields, rows):
        """Append ``rows`` (the file was written whole, with its header, when the state was opened)."""
        text = io.StringIO()
        csv.DictWriter(text, fields).writerows(rows)
        append_durably(os.path.join(self.dst, name), text.getvalue())


def _read_lines(path):
    if not os.path.isfile(path):
        return []
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f if line.endswith('\n')]  # a cut last line is not done


def read_csv_rows(path):
    """The rows of a CSV file with a header (``faces.csv``, ``errors.csv``) as dicts; [] when there is no file."""
    if not os.path.isfile(path):
        return []
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def source_key(rel_path):
    """Key stem of a photo: its relative path without extension, made LMDB-safe."""
    return sanitize_key(os.path.splitext(rel_path)[0].replace(os.sep, '/'))


def check_destination(dst, overwrite=False):
    """Refuse a folder that holds something else than an earlier harvest; ``overwrite`` removes an earlier one."""
    as_lmdb = dst.rstrip('/').endswith('.lmdb')
    if not os.path.exists(dst) or not os.listdir(dst):
        return
    if not os.path.isfile(os.path.join(dst, DONE_TXT)) and not (as_lmdb and is_lmdb_dir(dst)):
        raise ConfigError(f'-o/--output {dst} exists and holds no earlier harvest ({DONE_TXT} missing); '
                          'choose a new destination')
    check_writable(dst, 'output folder', (FACES_CSV, ERRORS_CSV, DONE_TXT))
    if overwrite:
        shutil.rmtree(dst)


def harvest(photos, dst, opts, workers=1, flush_every=50, max_faces=None, desc='faces', overwrite=False):
    """Run the pipeline over ``photos`` [(relative name, path)] into ``dst``; return a summary dict."""
    keys = {}
    for rel, _ in photos:
        keys.setdefault(source_key(rel), []).append(rel)
    clashes = [names for names in keys.values() if len(names) > 1]
    if clashes:
        raise ConfigError(f'photos {clashes[0]} give the same output key {source_key(clashes[0][0])!r} '
                          '(names differing only in extension or in characters LMDB keys cannot hold); rename one')
    _init_worker(opts)  # build the detector here first: missing weights stop the run before DST is touched
    check_destination(dst, overwrite)
    as_lmdb = dst.rstrip('/').endswith('.lmdb')
    sink = (_LmdbSink if as_lmdb else _FolderSink)(dst, opts.png_level)
    state = HarvestState(dst)
    todo = [(rel, path, source_key(rel)) for rel, path in photos if rel not in state.done]
    if max_faces is not None and state.num_faces >= max_faces:
        todo = []
    summary = {'photos': len(photos), 'already_done': len(state.done & {rel for rel, _ in photos}),
               'faces_before': state.num_faces}
    start, since_flush = time.time(), 0
    # torch (retinaface) is not fork-safe once used: its workers start fresh interpreters
    start_method = 'spawn' if opts.backend.startswith('retinaface') else None
    def record():
        """Commit what was put, then record it as done; a signal waits until both are written."""
        with signals_deferred():
            sink.commit()
            state.flush()

    with contextlib.ExitStack() as stack:
        stack.callback(sink.close)
        stack.callback(record)  # on any exit (callbacks run last-first)
        pool = stack.enter_context(worker_pool(workers, _init_worker, (opts,), start_method)) if workers > 1 else None
        results = pool.imap(process_photo, todo, chunksize=1) if pool else map(process_photo, todo)
        bar = stack.enter_context(tqdm(total=len(todo), unit='photo', desc=desc, dynamic_ncols=True))
        for source, rows, pngs, error in results:
            for row, (png, shape) in zip(rows, pngs):
                sink.put(row['key'], png, shape)
            state.add(source, rows, error)
            since_flush += 1
            bar.update(1)
            bar.set_postfix(faces=state.num_faces, errors=state.num_errors)
            if since_flush >= flush_every:
                record()
                since_flush = 0
            if max_faces is not None and state.num_faces >= max_faces:
                break
    summary.update(faces=state.num_faces, errors=len(state.errors), seconds=time.time() - start,
                   photos_done=len(state.done))
    return summary


def harvest_folder(source, dst, opts, glob=None, workers=1, flush_every=50, max_faces=None, what='faces',
                   overwrite=False):
    """Harvest the photos under the folder ``source`` (those matching the fnmatch pattern ``glob``) into ``dst``
    (:func:`harvest`), resuming an earlier harvest there; print what was done and return the summary dict
    (``errors``: photos that could not be processed, listed in errors.csv; the rest was done). Bad settings
    raise ConfigError; no face passing the size rule raises InputError. Messages name the command flags."""
    if not os.path.isdir(source):
        raise ConfigError(f'-i/--input {source}: source folder does not exist')
    if opts.size < 16 or workers < 1 or flush_every < 1:
        raise ConfigError('--size must be at least 16, --workers and --flush-every at least 1')
    photos = list_images(source, glob)
    if not photos:
        raise ConfigError(f'-i/--input {source}: no images' + (f' matching {glob!r}' if glob else ''))
    summary = harvest(photos, os.fspath(dst), opts, workers=workers, flush_every=flush_every, max_faces=max_faces,
                      desc=what, overwrite=overwrite)
    errors_csv = os.path.join(dst, ERRORS_CSV)
    if summary['already_done']:
        print(f"resumed: {summary['already_done']} of {summary['photos']} photos were done before")
    if not summary['faces']:
        raise InputError(f"no face passed the size rule in {summary['photos_done']} photo(s) under {source} "
                         f"({summary['errors']} unreadable, listed in {errors_csv}); check --min-size/--max-size, "
                         '--score-threshold and the photos')
    print(f"{summary['faces']} {what} in {dst} from {summary['photos_done']} photos "
          f"({summary['seconds']:.1f} s this run); per-face records in {os.path.join(dst, FACES_CSV)}")
    if summary['errors']:
        print(f"warning: {summary['errors']} photo(s) could not be processed and were skipped, listed in "
              f'{errors_csv}', file=sys.stderr)
    return summary
