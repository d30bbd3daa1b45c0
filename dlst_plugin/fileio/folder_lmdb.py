"""A folder of images -> an LMDB in BasicSR's layout (data.mdb + meta_info.txt): the library behind
``dlst-make-lmdb`` (the demo calls it too).

Images are read, optionally resized and PNG-encoded in worker processes; this process writes
(:class:`~dlst_plugin.fileio.lmdb.LmdbWriter`). An existing destination is resumed: keys already stored are
skipped, none is stored twice, and the settings must be those it was made with. Unreadable sources are
skipped and listed in a report file; when no image at all could be stored, no LMDB is left behind.
Messages name the matching ``dlst-make-lmdb`` flags.
"""
import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.fileio.atomic import atomic_write_csv, check_writable
from dlst_plugin.fileio.images import list_images
from dlst_plugin.fileio.lmdb import (
    KEY_RULE,
    LMDB_FILES,
    LmdbWriter,
    encode_png,
    image_shape,
    is_lmdb_dir,
    key_problem,
    sanitize_key,
    verify_lmdb,
    worker_pool,
)
from dlst_plugin.fileio.resume import check_resume_settings, record_settings

SETTINGS_FILE = 'make_lmdb.json'  # options an LMDB was made with; a resume must use the same
COPY_LEVEL = -1  # meta_info.txt level of PNGs stored as they were (copy_png): their own level
INTERPOLATIONS = {'area': cv2.INTER_AREA, 'bicubic': cv2.INTER_CUBIC, 'lanczos': cv2.INTER_LANCZOS4,
                  'linear': cv2.INTER_LINEAR}


@dataclass
class LmdbSettings:
    """How to make the LMDB; each field is the ``dlst-make-lmdb`` flag of the same name."""
    glob: str = None  # only images whose relative path matches this fnmatch pattern
    keys: str = 'relpath'  # 'relpath' (a/b/001) or 'stem' (001)
    sanitize_keys: bool = False
    resize: tuple = None  # (width, height)
    interpolation: str = 'area'
    png_level: int = 1
    copy_png: bool = False  # store PNG sources byte for byte (ignored with resize)
    workers: int = 1
    commit_every: int = 500
    report: str = None  # CSV of the skipped sources (default: OUTPUT/skipped.csv)
    overwrite: bool = False
    no_resume: bool = False
    verify: bool = False  # decode every entry afterwards and check it against meta_info.txt


@dataclass
class LmdbResult:
    """What :func:`make_lmdb` did: images written this run, entries in all, ``[(key, source, error)]`` of the
    sources skipped, and the problems ``verify`` found."""
    written: int = 0
    entries: int = 0
    skipped: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def make_keys(images, style, sanitize):
    """[(key, path)] for the images, or ConfigError explaining the key rule / a clash."""
    keys, bad = [], []
    for rel, path in images:
        key = os.path.splitext(rel if style == 'relpath' else os.path.basename(rel))[0]
        if sanitize:
            key = sanitize_key(key)
        elif key_problem(key):
            bad.append(f'{rel}: {key_problem(key)}')
        keys.append((key, path))
    if bad:
        shown = '\n  '.join(bad[:10]) + (f'\n  ... and {len(bad) - 10} more' if len(bad) > 10 else '')
        raise ConfigError(f'{len(bad)} file name(s) cannot become LMDB keys:\n  {shown}\n'
                          f'{KEY_RULE}. Rename them, or pass --sanitize-keys to replace those characters by "_".')
    seen = {}
    for (key, path), (rel, _) in zip(keys, images):
        if key in seen:
            raise ConfigError(f'{seen[key]} and {rel} both give the key {key!r}; '
                              f'rename one{" or use --keys relpath" if style == "stem" else ""}')
        seen[key] = rel
    return keys


def encode_job(job):
    """(key, png bytes | None, shape, PNG level, error) for one source image; runs in a worker."""
    key, path, resize, interpolation, level = job
    try:
        data = np.fromfile(path, np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            why = 'unreadable: not an image, truncated or corrupt' if data.size else 'empty file'
            return key, None, None, None, why
        if level == COPY_LEVEL and resize is None and path.lower().endswith('.png'):  # decoded only to check it
            return key, data.tobytes(), image_shape(img), COPY_LEVEL, None
        if resize is not None and (img.shape[1], img.shape[0]) != resize:
            img = cv2.resize(img, resize, interpolation=INTERPOLATIONS[interpolation])
        level = 1 if level == COPY_LEVEL else level
        return key, encode_png(img, level), image_shape(img), level, None
    except Exception as err:  # reported in the skip list, never dropped silently
        return key, None, None, None, f'{type(err).__name__}: {err}'


def prepare_dst(dst, settings, recorded):
    """Remove / check an existing ``dst``; return True when resuming one."""
    if not os.path.exists(dst):
        return False
    if not is_lmdb_dir(dst):
        if os.path.isdir(dst) and not os.listdir(dst):
            return False
        raise ConfigError(f'-o/--output {dst} exists and is not an LMDB folder (no data.mdb); choose another DST')
    check_writable(dst, 'LMDB', LMDB_FILES)
    if settings.overwrite:
        shutil.rmtree(dst)
        return False
    if settings.no_resume:
        raise ConfigError(f'{dst} already exists (drop --no-resume to resume it, or pass --overwrite)')
    check_resume_settings(os.path.join(dst, SETTINGS_FILE), recorded, dst, flag_names=True)
    return True


def write_lmdb(jobs, writer, workers):
    """Encode ``jobs`` (in workers) and put them; return the skipped [(key, path, error)]."""
    paths = {job[0]: job[1] for job in jobs}
    skipped = []
    parallel = workers > 1 and len(jobs) > 1
    with worker_pool(workers) if parallel else contextlib.nullcontext() as pool:
        results = pool.imap(encode_job, jobs, chunksize=4) if pool else map(encode_job, jobs)
        try:
            with tqdm(total=len(jobs), unit='img', desc='encode+write', dynamic_ncols=True) as bar:
                for key, png, shape, level, error in results:
                    if error:
                        skipped.append((key, paths[key], error))
                        bar.set_postfix(skipped=len(skipped))
                    else:
                        writer.put(key, png, shape, level)
                    bar.update(1)
        finally:
            writer.close()  # commits what was put, even on Ctrl-C
    return skipped


def check_request(source, dst, settings):
    if not os.path.isdir(source):
        raise ConfigError(f'-i/--input {source}: source folder does not exist')
    if not os.fspath(dst).rstrip('/').endswith('.lmdb'):
        raise ConfigError(f"-o/--output {dst} must end with '.lmdb' (BasicSR's convention)")
    if settings.workers < 1 or settings.commit_every < 1:
        raise ConfigError('--workers and --commit-every must be at least 1')


def report_skipped(source, dst, report, skipped, stored):
    """Write the skip list (``report``, default DST/skipped.csv); when nothing at all was stored, remove the
    empty LMDB and raise InputError."""
    path = report or os.path.join(dst, 'skipped.csv')
    if not stored:  # every source failed: leave no empty LMDB behind
        shutil.rmtree(dst, ignore_errors=True)
        if report:
            atomic_write_csv(path, ['key', 'source', 'error'], skipped)
        shown = '\n  '.join(f'{p}: {error}' for _, p, error in skipped[:5])
        raise InputError(f'none of the {len(skipped)} image(s) under {source} could be read, so no LMDB was '
                         f'written:\n  {shown}' + (f'\n  ... (all listed in {path})' if report else ''))
    atomic_write_csv(path, ['key', 'source', 'error'], skipped)
    if skipped:
        print(f'warning: skipped {len(skipped)} unreadable image(s), listed in {path}:', file=sys.stderr)
        for _, p, error in skipped[:5]:
            print(f'  {p}: {error}', file=sys.stderr)


def verify(dst, workers, entries):
    """Problems :func:`~dlst_plugin.fileio.lmdb.verify_lmdb` finds, printed (stderr) or the all-clear line."""
    problems = verify_lmdb(dst, workers=workers)
    if problems:
        print(f'error: verify found {len(problems)} problem(s) in {dst}:', file=sys.stderr)
        for problem in problems[:20]:
            print(f'  {problem}', file=sys.stderr)
    else:
        print(f'verify: all {entries} entries decode and match meta_info.txt')
    return problems


def make_lmdb(source, dst, settings=None):
    """Store the images under the folder ``source`` in the LMDB ``dst`` (a folder ending in ``.lmdb``), resuming
    an earlier run into it; return an :class:`LmdbResult` (sources that could not be read are in ``skipped``,
    the rest was stored). ``settings``: :class:`LmdbSettings`. Bad settings or names that cannot become keys
    raise ConfigError before anything is written; sources none of which can be read raise InputError."""
    settings = settings or LmdbSettings()
    dst = os.fspath(dst)
    check_request(source, dst, settings)
    recorded = {'resize': list(settings.resize) if settings.resize else None, 'interpolation': settings.interpolation,
                'png_level': settings.png_level, 'copy_png': settings.copy_png, 'keys': settings.keys,
                'sanitize_keys': settings.sanitize_keys}
    images = list_images(source, settings.glob)
    if not images:
        raise ConfigError(f'no images under {source}' + (f' matching {settings.glob!r}' if settings.glob else ''))
    keyed = make_keys(images, settings.keys, settings.sanitize_keys)
    resuming = prepare_dst(dst, settings, recorded)
    writer = LmdbWriter(dst, resume=True, compress_level=settings.png_level, commit_every=settings.commit_every)
    record_settings(os.path.join(dst, SETTINGS_FILE), recorded)
    level = COPY_LEVEL if settings.copy_png and settings.resize is None else settings.png_level
    jobs = [(key, path, settings.resize, settings.interpolation, level) for key, path in keyed if key not in writer]
    if resuming:
        print(f'resuming {dst}: {len(keyed) - len(jobs)} of {len(keyed)} images already stored')
    start = time.time()
    result = LmdbResult(skipped=write_lmdb(jobs, writer, settings.workers))
    seconds = time.time() - start
    result.written, result.entries = len(jobs) - len(result.skipped), len(writer)
    report_skipped(source, dst, settings.report, result.skipped, stored=result.entries)
    print(f'wrote {result.written} images to {dst} in {seconds:.1f} s ({result.written / max(seconds, 1e-9):.1f} '
          f'images/s); {result.entries} entries in all')
    if settings.verify:
        result.problems = verify(dst, settings.workers, result.entries)
    return result
