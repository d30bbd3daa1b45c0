"""dlst-make-lmdb: a folder of images -> an LMDB in BasicSR's layout (data.mdb + meta_info.txt).

Images are read, optionally resized and PNG-encoded in worker processes; the main process
writes. Rerunning on an existing destination resumes it: keys already stored are skipped, none is
stored twice. Unreadable sources are skipped, listed in a report file, and make the exit code 1;
when no image at all could be stored, no LMDB is left behind.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from dlst_plugin.cli.common import add_positional_alias, check_resume_settings, make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT, ConfigError, InputError
from dlst_plugin.fileio.atomic import atomic_write_csv, atomic_write_text, check_writable
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

EXAMPLE = 'example:\n  dlst-make-lmdb -i ffhq/images1024x1024 -o datasets/ffhq/ffhq_512.lmdb --resize 512 --keys stem'
SETTINGS_FILE = 'make_lmdb.json'  # options an LMDB was made with; a resume must use the same
COPY_LEVEL = -1  # meta_info.txt level of PNGs stored as they were (--copy-png): their own level
INTERPOLATIONS = {'area': cv2.INTER_AREA, 'bicubic': cv2.INTER_CUBIC, 'lanczos': cv2.INTER_LANCZOS4,
                  'linear': cv2.INTER_LINEAR}


def parse_size(text):
    """'512' -> (512, 512); '640x480' -> (640, 480) as (width, height)."""
    try:
        parts = [int(p) for p in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f'--resize expects N or WxH with positive integers, got {text!r}')
    return (parts[0], parts[-1])


def build_parser():
    p = make_parser('dlst-make-lmdb', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('-i', '--input', metavar='SRC', help='folder of images (searched recursively)')
    p.add_argument('-o', '--output', metavar='DST', help="LMDB folder to create or resume; must end with '.lmdb'")
    add_positional_alias(p, 'input', 'SRC', '-i/--input')
    add_positional_alias(p, 'output', 'DST', '-o/--output')
    p.add_argument('--glob', default=None, help="only images whose path relative to SRC matches this fnmatch "
                                                "pattern, e.g. '*.png' or 'train/*'")
    p.add_argument('--keys', choices=['relpath', 'stem'], default='relpath',
                   help="key of an image: its path relative to SRC without extension ('a/b/001'), or the file "
                        "name alone ('001', BasicSR's own convention; names must then be unique)")
    p.add_argument('--sanitize-keys', action='store_true',
                   help="replace characters keys cannot hold (dots, spaces, non-ASCII) by '_' instead of stopping")
    p.add_argument('--resize', type=parse_size, default=None, metavar='N|WxH',
                   help='resize every image to this size, e.g. 512 to turn FFHQ 1024 into FFHQ 512')
    p.add_argument('--interpolation', choices=sorted(INTERPOLATIONS), default='area',
                   help='resampling for --resize (area is the anti-aliased choice for shrinking)')
    p.add_argument('--png-level', type=int, choices=range(10), default=1, metavar='0-9',
                   help='PNG compression level (BasicSR uses 1; higher = smaller and slower)')
    p.add_argument('--copy-png', action='store_true',
                   help='store PNG sources byte for byte (decoded only to check them) instead of re-encoding: '
                        'several times faster, same pixels; meta_info.txt gives their level as -1. '
                        'Ignored with --resize; other formats are still encoded (level 1)')
    p.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                   help='processes that read and encode images (1 = all in this process)')
    p.add_argument('--commit-every', type=int, default=500, help='images per LMDB transaction')
    p.add_argument('--report', default=None,
                   help='CSV listing the sources that were skipped and why (default: DST/skipped.csv)')
    p.add_argument('--overwrite', action='store_true', help='delete an existing DST LMDB and start again')
    p.add_argument('--no-resume', action='store_true', help='stop if DST exists instead of resuming it')
    p.add_argument('--verify', action='store_true',
                   help='afterwards, decode every entry and check it against meta_info.txt')
    return p


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


def prepare_dst(args, settings):
    """Remove / check an existing DST; return True when resuming one."""
    dst = args.output
    if not os.path.exists(dst):
        return False
    if not is_lmdb_dir(dst):
        if os.path.isdir(dst) and not os.listdir(dst):
            return False
        raise ConfigError(f'-o/--output {dst} exists and is not an LMDB folder (no data.mdb); choose another DST')
    check_writable(dst, 'LMDB', LMDB_FILES)
    if args.overwrite:
        shutil.rmtree(dst)
        return False
    if args.no_resume:
        raise ConfigError(f'{dst} already exists (drop --no-resume to resume it, or pass --overwrite)')
    check_resume_settings(os.path.join(dst, SETTINGS_FILE), settings, dst, flag_names=True)
    return True


def write_lmdb(args, jobs, writer):
    """Encode ``jobs`` (in workers) and put them; return the skipped [(key, path, error)]."""
    paths = {job[0]: job[1] for job in jobs}
    skipped = []
    parallel = args.workers > 1 and len(jobs) > 1
    with worker_pool(args.workers) if parallel else contextlib.nullcontext() as pool:
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


def check_args(args):
    if not os.path.isdir(args.input):
        raise ConfigError(f'-i/--input {args.input}: source folder does not exist')
    if not args.output.rstrip('/').endswith('.lmdb'):
        raise ConfigError(f"-o/--output {args.output} must end with '.lmdb' (BasicSR's convention)")
    if args.workers < 1 or args.commit_every < 1:
        raise ConfigError('--workers and --commit-every must be at least 1')


def report_skipped(args, skipped, stored):
    """Write the skip list; when nothing at all was stored, remove the empty LMDB and raise."""
    report = args.report or os.path.join(args.output, 'skipped.csv')
    if not stored:  # every source failed: leave no empty LMDB behind
        shutil.rmtree(args.output, ignore_errors=True)
        if args.report:
            atomic_write_csv(report, ['key', 'source', 'error'], skipped)
        shown = '\n  '.join(f'{path}: {error}' for _, path, error in skipped[:5])
        raise InputError(f'none of the {len(skipped)} image(s) under {args.input} could be read, so no LMDB was '
                         f'written:\n  {shown}' + (f'\n  ... (all listed in {report})' if args.report else ''))
    atomic_write_csv(report, ['key', 'source', 'error'], skipped)
    if skipped:
        print(f'warning: skipped {len(skipped)} unreadable image(s), listed in {report}:', file=sys.stderr)
        for _, path, error in skipped[:5]:
            print(f'  {path}: {error}', file=sys.stderr)


def run(args):
    check_args(args)
    settings = {'resize': list(args.resize) if args.resize else None, 'interpolation': args.interpolation,
                'png_level': args.png_level, 'copy_png': args.copy_png, 'keys': args.keys,
                'sanitize_keys': args.sanitize_keys}
    images = list_images(args.input, args.glob)
    if not images:
        raise ConfigError(f'no images under {args.input}' + (f' matching {args.glob!r}' if args.glob else ''))
    keyed = make_keys(images, args.keys, args.sanitize_keys)
    resuming = prepare_dst(args, settings)
    writer = LmdbWriter(args.output, resume=True, compress_level=args.png_level, commit_every=args.commit_every)
    atomic_write_text(os.path.join(args.output, SETTINGS_FILE), json.dumps(settings, indent=1))
    level = COPY_LEVEL if args.copy_png and args.resize is None else args.png_level
    jobs = [(key, path, args.resize, args.interpolation, level) for key, path in keyed if key not in writer]
    if resuming:
        print(f'resuming {args.output}: {len(keyed) - len(jobs)} of {len(keyed)} images already stored')
    start = time.time()
    skipped = write_lmdb(args, jobs, writer)
    seconds = time.time() - start
    written = len(jobs) - len(skipped)
    report_skipped(args, skipped, stored=len(writer))
    print(f'wrote {written} images to {args.output} in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f} '
          f'images/s); {len(writer)} entries in all')
    status = EXIT_INPUT if skipped else 0
    if args.verify:
        problems = verify_lmdb(args.output, workers=args.workers)
        if problems:
            print(f'error: verify found {len(problems)} problem(s) in {args.output}:', file=sys.stderr)
            for problem in problems[:20]:
                print(f'  {problem}', file=sys.stderr)
            status = EXIT_INPUT
        else:
            print(f'verify: all {len(writer)} entries decode and match meta_info.txt')
    return status


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='the images written so far are committed; rerun '
                       'the same command to resume')


if __name__ == '__main__':
    sys.exit(main())
