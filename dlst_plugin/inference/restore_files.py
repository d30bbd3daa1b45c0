"""Restoring photo files into an output folder: the library behind ``dlst-restore`` (``dlst-table1 evaluate`` and
the demo call it too).

Inputs are files, folders (their images, recursively) or glob patterns. Per photo: detect, align, restore the
faces in batches, paste them back (:class:`~dlst_plugin.inference.face_restorer.FaceRestorer`), and write
OUTPUT/restored_imgs/NAME.png, OUTPUT/restored_faces/NAME_00.png ... and, with ``compare``, OUTPUT/cmp/NAME.png
(input | restored); files of the same name are replaced. A photo that fails is reported and skipped.

The output is checked first (its folders made and a test file written in each). A write that fails because the
disk is full or the output read-only stops the run at that photo (InputError naming the photos finished); a
photo's files are written atomically and a photo that fails takes back the files it had written, so the output
folder holds finished photos only. Messages name the matching ``dlst-restore`` flags.
"""
import contextlib
import errno
import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dlst_plugin.checkpoints.files import resolve_model_path
from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.fileio.atomic import atomic_write_image, check_can_write
from dlst_plugin.fileio.images import IMAGE_EXTENSIONS, list_images
from dlst_plugin.inference.face_restorer import STAGES, FaceRestorer, side_by_side, to_bgr8
from dlst_plugin.loading.networks import RestoreError, RestoreSetupError

OUT_DIRS = {'image': 'restored_imgs', 'faces': 'restored_faces', 'compare': 'cmp'}
# a failed output write with one of these stops the run: every later photo would fail the same way
STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT,
               errno.ENOTDIR}


@dataclass
class RestoreSettings:
    """How to restore; each field is the ``dlst-restore`` flag of the same name (``write_faces`` is the
    opposite of ``--no-faces``)."""
    opt: str = None  # option file whose network_g builds the restorer (default: the checkpoint's own say)
    aligned: bool = False  # inputs are aligned faces: no detection, no paste-back
    device: str = 'auto'
    dtype: str = 'auto'
    compile: bool = False
    batch_size: int = 4
    faces: str = 'all'  # which detected faces: all, largest, center
    min_face_size: float = 0
    detector: str = 'yunet'
    score_threshold: float = None
    weights_dir: str = None
    compare: bool = False
    write_faces: bool = True


@dataclass
class RestoreSummary:
    """What :func:`restore_files` did: the photos finished, ``[(input, reason)]`` of those that failed (inputs
    that named nothing included), faces restored, seconds per stage summed over the faces."""
    finished: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    faces: int = 0
    seconds: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


def collect_inputs(entries):
    """([absolute path], [(entry, reason)]): files as given, folder images (recursive), glob matches."""
    found, problems = [], []
    for entry in map(os.fspath, entries):
        if os.path.isdir(entry):
            images = list_images(entry)
            if not images:
                problems.append((entry, f'folder holds no images ({", ".join(IMAGE_EXTENSIONS)})'))
            found += [path for _, path in images]
        elif os.path.isfile(entry):
            found.append(entry)
        elif glob.has_magic(entry):
            matches = sorted(m for m in glob.glob(entry, recursive=True) if os.path.isfile(m))
            if not matches:
                problems.append((entry, 'pattern matches no file'))
            found += matches
        else:
            problems.append((entry, 'no such file or folder'))
    unique = list(dict.fromkeys(os.path.abspath(p) for p in found))
    return unique, problems


def output_name(path, used):
    """File stem, made unique within the run (photo.jpg and photo.png both -> photo, photo_png)."""
    stem = Path(path).stem
    name = stem if stem not in used else f'{stem}_{Path(path).suffix.lstrip(".")}'
    n = 1
    while name in used:
        name, n = f'{stem}_{n}', n + 1
    used.add(name)
    return name


def read_photo(path):
    """The file's pixels, unchanged (grey, alpha and 16 bits kept), or RestoreError."""
    data = np.fromfile(path, np.uint8)
    if data.size == 0:
        raise RestoreError('empty file')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise RestoreError('not an image, or truncated / corrupt (OpenCV cannot decode it)')
    return img


class WriteFailed(Exception):
    """One of a photo's output files could not be written; ``fatal`` when every later write would fail too
    (no space, read-only, no permission, the folder gone), so the run stops instead of going on."""

    def __init__(self, path, err):
        super().__init__(f'cannot write {path}: {err.strerror or err}')
        self.path, self.err = path, err
        self.fatal = err.errno in STOP_ERRNOS


def write_png(path, img, written=None):
    """Write atomically (no half-written PNG survives a failure or a kill); ``written`` collects the paths
    written, so a photo that fails later can take its files back."""
    try:
        atomic_write_image(path, img)
    except ValueError:
        raise RestoreError(f'cannot encode {path}') from None
    except OSError as err:
        raise WriteFailed(path, err) from None
    if written is not None:
        written.append(path)


def restore_one(restorer, path, out_dir, name, settings, summary):
    """Restore one photo and write its files; when anything fails (or Ctrl-C / SIGTERM comes) the files
    this photo had written are removed, so the output folder holds finished photos only."""
    img = read_photo(path)
    result = restorer.restore_image(img, aligned=settings.aligned)
    written = []
    try:
        write_png(out_dir / OUT_DIRS['image'] / f'{name}.png', result.image, written)
        if settings.write_faces:
            for k, face in enumerate(result.faces):
                write_png(out_dir / OUT_DIRS['faces'] / f'{name}_{k:02d}.png', face, written)
        if settings.compare:
            write_png(out_dir / OUT_DIRS['compare'] / f'{name}.png',
                      side_by_side(to_bgr8(img)[0], to_bgr8(result.image)[0]), written)
    except BaseException:
        for done in written:
            with contextlib.suppress(OSError):
                os.remove(done)
        raise
    for stage, seconds in result.timings.items():
        summary.seconds[stage] += seconds
    summary.faces += len(result.faces)
    return result


def check_output(output, settings):
    """Create the output folders and write a test file in each: an output that cannot be written (read-only,
    full, a path under a file) stops the run before any photo is restored: a configuration error (exit code 2,
    nothing was done), as dlst-make-lmdb and dlst-collect-lq-faces treat an unwritable destination."""
    out_dir = Path(output)
    wanted = {'image': True, 'faces': settings.write_faces, 'compare': settings.compare}
    for folder in [out_dir / sub for key, sub in OUT_DIRS.items() if wanted[key]]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            check_can_write(folder)
        except OSError as err:
            raise ConfigError(f'-o/--output {out_dir}: cannot write into {folder} ({err}); no photo was restored. '
                              'Free some space, make it writable, or choose another output folder') from None
    return out_dir


def load_restorer(model, settings):
    """The :class:`FaceRestorer` of ``model`` (a path, or a bare name looked up in the weights folder); with a
    detector built now unless the inputs are aligned (a missing detector model stops before any work)."""
    path = resolve_model_path(model, settings.weights_dir, prefer_safetensors=True)
    if path.suffix == '.safetensors' and Path(model).suffix.lower() != '.safetensors':
        print(f'note: --model {model}: using {path} (the safetensors copy next to it)', file=sys.stderr)
    restorer = FaceRestorer.from_files(str(path), opt=settings.opt, device=settings.device, dtype=settings.dtype,
                                       weights_dir=settings.weights_dir, detector=settings.detector,
                                       select=settings.faces, min_face_size=settings.min_face_size,
                                       batch_size=settings.batch_size, score_threshold=settings.score_threshold,
                                       compile=settings.compile)
    if not settings.aligned:
        restorer.detector  # noqa: B018  (build it now)
    return restorer


def restore_all(restorer, paths, out_dir, settings, summary):
    """Restore ``paths`` in turn into ``summary``; return the (photo, WriteFailed) that stopped the run, or None."""
    used = set()
    for path in tqdm(paths, desc='photos', unit='photo', file=sys.stderr):
        try:
            result = restore_one(restorer, path, out_dir, output_name(path, used), settings, summary)
        except WriteFailed as err:
            if err.fatal:  # every later photo would fail the same way: stop at the first
                return path, err
            summary.failed.append((path, str(err)))
            tqdm.write(f'failed: {path}: {err}', file=sys.stderr)
            continue
        except (RestoreError, ValueError, cv2.error, OSError, MemoryError, RuntimeError) as err:
            # the photo's own problem (or memory, a failing forward): report it and go on
            summary.failed.append((path, str(err) if isinstance(err, RestoreError) else f'{type(err).__name__}: {err}'))
            tqdm.write(f'failed: {path}: {err}', file=sys.stderr)
            continue
        summary.finished.append(path)
        for note in result.notes:
            tqdm.write(f'note: {path}: {note}', file=sys.stderr)
    return None


def stop_message(stop, summary, paths, out_dir):
    """The error of a run stopped by an output write: what failed, what was finished, what was not started."""
    path, err = stop
    names = [Path(p).name for p in summary.finished]
    shown = ', '.join(names) if len(names) <= 3 else f'{names[0]} ... {names[-1]}'
    left = len(paths) - paths.index(path) - 1
    return (f'{err}; stopped at {path}: {len(summary.finished)} of {len(paths)} photo(s) finished'
            + (f' ({shown}; their files are in {out_dir})' if summary.finished else '')
            + f', {len(summary.failed)} failed, {left} not started, none of {Path(path).name} kept. '
            'Free some space or make the output writable, then rerun')


def print_summary(summary, out_dir):
    print(f'{len(summary.finished)} ok, {len(summary.failed)} failed; {summary.faces} faces restored into {out_dir}')
    if summary.faces:
        print('seconds per face: ' + ', '.join(f'{s} {summary.seconds[s] / summary.faces:.3f}' for s in STAGES))
    for entry, why in summary.failed:
        print(f'  failed: {entry}: {why}')


def restore_files(inputs, output, model, settings=None):
    """Restore the photos ``inputs`` (files, folders, glob patterns) with the restorer checkpoint ``model`` into
    the folder ``output``; print a summary and return a :class:`RestoreSummary` (photos that failed are in
    ``failed``; the rest was done). ``settings``: :class:`RestoreSettings`. No input image, a restorer that
    cannot be built or an output that cannot be written raise a ConfigError before any photo is restored;
    a full or read-only disk met during the run raises InputError once the summary is printed."""
    settings = settings or RestoreSettings()
    if settings.batch_size < 1:
        raise RestoreSetupError('--batch-size must be at least 1')
    paths, problems = collect_inputs(inputs)
    if not paths:
        raise RestoreSetupError('-i/--input: no input images: ' + '; '.join(f'{e}: {why}' for e, why in problems))
    restorer = load_restorer(model, settings)
    out_dir = check_output(output, settings)
    summary = RestoreSummary(failed=list(problems))
    stop = restore_all(restorer, paths, out_dir, settings, summary)
    print_summary(summary, out_dir)
    if stop:
        raise InputError(stop_message(stop, summary, paths, out_dir))
    return summary
