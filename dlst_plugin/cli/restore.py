"""dlst-restore: restore the faces in photos with a Skip-Transformer (or GLEAN, GFP-GAN) checkpoint.

Inputs are files, folders (their images, recursively) or glob patterns. Per photo: detect,
align, restore the faces in batches, paste them back with a feathered mask, and write
OUTPUT/restored_imgs/NAME.png, OUTPUT/restored_faces/NAME_00.png ... and, with --compare,
OUTPUT/cmp/NAME.png (input | restored); files of the same name are replaced. A photo that fails
(no face, unreadable, too small ...) is reported and skipped; the run ends with a summary and
exits 1 if any photo failed.

The output is checked first (its folders made and a test file written in each): an output that cannot be
written stops the run before any photo is restored. A write that fails during the run because the disk is
full or the output read-only stops the run at that photo (exit 1), saying which photos were finished; a
photo's files are written atomically and a photo that fails takes back the files it had written, so the
output folder holds finished photos only.
"""
import contextlib
import errno
import glob
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dlst_plugin.checkpoints.files import resolve_model_path
from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.faces.detection import WEIGHTS_ENV, available_backends
from dlst_plugin.fileio.atomic import atomic_write_bytes, check_can_write
from dlst_plugin.fileio.images import IMAGE_EXTENSIONS, list_images
from dlst_plugin.inference.face_restorer import SELECTIONS, STAGES, FaceRestorer, side_by_side, to_bgr8
from dlst_plugin.loading.networks import DTYPES, RestoreError, RestoreSetupError

OUT_DIRS = {'image': 'restored_imgs', 'faces': 'restored_faces', 'compare': 'cmp'}
# a failed output write with one of these stops the run: every later photo would fail the same way
STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT,
               errno.ENOTDIR}
EXAMPLE = ('example:\n  dlst-restore -i photos/ \'more/*.jpg\' one.png -o results '
           '--model experiments/DLST_512/models/net_g_latest.pth --compare')


def build_parser():
    p = make_parser('dlst-restore', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('-i', '--input', nargs='+', required=True,
                   help='image files, folders (searched recursively) or glob patterns (quote them)')
    p.add_argument('-o', '--output', required=True,
                   help='output folder (restored_imgs/, restored_faces/, cmp/); checked with a test write before any '
                        'photo is restored. A full or read-only disk stops the run at the first failed write '
                        '(exit 1, naming the photos finished); a failed photo leaves none of its files')
    p.add_argument('--model', required=True,
                   help='restorer checkpoint: X.pth (BasicSR net_g_*.pth; params_ema, else params) or X.safetensors '
                        '(dlst-export --format safetensors). When X.safetensors lies next to a given X.pth, the '
                        '.safetensors file is used (same weights, no pickle). A bare name is also looked up in the '
                        'weights folder')
    p.add_argument('--opt', default=None,
                   help='BasicSR option file whose network_g builds the restorer; overrides what the checkpoint '
                        'says (default: the network the checkpoint describes in its metadata, else the one its '
                        'tensor shapes give)')
    p.add_argument('--aligned', action='store_true',
                   help='inputs are already aligned faces: no detection, no paste-back')
    p.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto', help='where the restorer runs')
    p.add_argument('--dtype', choices=sorted(DTYPES), default='float32',
                   help='restorer precision (float16: CUDA only)')
    p.add_argument('--batch-size', type=int, default=4, help='faces restored per forward pass')
    p.add_argument('--faces', choices=list(SELECTIONS), default='all',
                   help='which detected faces to restore: all, the largest, or the one nearest the centre')
    p.add_argument('--min-face-size', type=float, default=0,
                   help='ignore faces whose box is smaller than this many px on either side')
    p.add_argument('--detector', choices=available_backends(), default='yunet', help='face detection backend')
    p.add_argument('--score-threshold', type=float, default=None,
                   help="minimum detection score (default: the detector's own)")
    p.add_argument('--weights-dir', default=None,
                   help=f'folder holding every weight file (checkpoint by name, detector weights; '
                        f'default: ${WEIGHTS_ENV}, else ./weights)')
    p.add_argument('--compare', action='store_true', help='also write cmp/NAME.png: input | restored')
    p.add_argument('--no-faces', action='store_true', help='do not write restored_faces/')
    return p


def collect_inputs(entries):
    """([absolute path], [(entry, reason)]): files as given, folder images (recursive), glob matches."""
    found, problems = [], []
    for entry in entries:
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
    """Write through a temporary file (no half-written PNG survives a failure or a kill); ``written``
    collects the paths written, so a photo that fails later can take its files back."""
    ok, buf = cv2.imencode('.png', img)
    if not ok:
        raise RestoreError(f'cannot encode {path}')
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as err:
        raise WriteFailed(path, err) from None
    if written is not None:
        written.append(path)


def restore_one(restorer, path, out_dir, name, args, totals):
    """Restore one photo and write its files; when anything fails (or Ctrl-C / SIGTERM comes) the files
    this photo had written are removed, so the output folder holds finished photos only."""
    img = read_photo(path)
    result = restorer.restore_image(img, aligned=args.aligned)
    written = []
    try:
        write_png(out_dir / OUT_DIRS['image'] / f'{name}.png', result.image, written)
        if not args.no_faces:
            for k, face in enumerate(result.faces):
                write_png(out_dir / OUT_DIRS['faces'] / f'{name}_{k:02d}.png', face, written)
        if args.compare:
            write_png(out_dir / OUT_DIRS['compare'] / f'{name}.png',
                      side_by_side(to_bgr8(img)[0], to_bgr8(result.image)[0]), written)
    except BaseException:
        for done in written:
            with contextlib.suppress(OSError):
                os.remove(done)
        raise
    for stage, seconds in result.timings.items():
        totals[stage] += seconds
    totals['faces'] += len(result.faces)
    return result


def output_folders(args):
    out_dir = Path(args.output)
    wanted = {'image': True, 'faces': not args.no_faces, 'compare': args.compare}
    return out_dir, [out_dir / sub for key, sub in OUT_DIRS.items() if wanted[key]]


def check_output(args):
    """Create the output folders and write a test file in each: an output that cannot be written (read-only,
    full, a path under a file) stops the run before any photo is restored: a configuration error (exit code 2,
    nothing was done), as dlst-make-lmdb and dlst-collect-lq-faces treat an unwritable destination."""
    out_dir, folders = output_folders(args)
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            check_can_write(folder)
        except OSError as err:
            raise ConfigError(f'-o/--output {out_dir}: cannot write into {folder} ({err}); no photo was restored. '
                             'Free some space, make it writable, or choose another output folder') from None
    return out_dir


def load_restorer(args):
    model = resolve_model_path(args.model, args.weights_dir, prefer_safetensors=True)
    if model.suffix == '.safetensors' and Path(args.model).suffix.lower() != '.safetensors':
        print(f'note: --model {args.model}: using {model} (the safetensors copy next to it)', file=sys.stderr)
    restorer = FaceRestorer.from_files(str(model), opt=args.opt, device=args.device, dtype=args.dtype,
                                       weights_dir=args.weights_dir, detector=args.detector, select=args.faces,
                                       min_face_size=args.min_face_size, batch_size=args.batch_size,
                                       score_threshold=args.score_threshold)
    if not args.aligned:
        restorer.detector  # noqa: B018  (build it now: a missing detector model stops the run before any work)
    return restorer


def restore_all(restorer, paths, out_dir, args, totals, failed):
    """Restore ``paths`` in turn; return (finished photos, (photo, WriteFailed) that stopped the run or None)."""
    used, finished = set(), []
    for path in tqdm(paths, desc='photos', unit='photo', file=sys.stderr):
        try:
            result = restore_one(restorer, path, out_dir, output_name(path, used), args, totals)
        except WriteFailed as err:
            if err.fatal:  # every later photo would fail the same way: stop at the first
                return finished, (path, err)
            failed.append((path, str(err)))
            tqdm.write(f'failed: {path}: {err}', file=sys.stderr)
            continue
        except (RestoreError, ValueError, cv2.error, OSError, MemoryError, RuntimeError) as err:
            # the photo's own problem (or memory, a failing forward): report it and go on
            failed.append((path, str(err) if isinstance(err, RestoreError) else f'{type(err).__name__}: {err}'))
            tqdm.write(f'failed: {path}: {err}', file=sys.stderr)
            continue
        finished.append(path)
        for note in result.notes:
            tqdm.write(f'note: {path}: {note}', file=sys.stderr)
    return finished, None


def stop_message(stop, finished, failed, paths, out_dir):
    """The error of a run stopped by an output write: what failed, what was finished, what was not started."""
    path, err = stop
    names = [Path(p).name for p in finished]
    shown = ', '.join(names) if len(names) <= 3 else f'{names[0]} ... {names[-1]}'
    left = len(paths) - paths.index(path) - 1
    return (f'{err}; stopped at {path}: {len(finished)} of {len(paths)} photo(s) finished'
            + (f' ({shown}; their files are in {out_dir})' if finished else '')
            + f', {len(failed)} failed, {left} not started, none of {Path(path).name} kept. '
            'Free some space or make the output writable, then rerun')


def run(args):
    if args.batch_size < 1:
        raise RestoreSetupError('--batch-size must be at least 1')
    paths, problems = collect_inputs(args.input)
    if not paths:
        raise RestoreSetupError('-i/--input: no input images: ' + '; '.join(f'{e}: {why}' for e, why in problems))
    restorer = load_restorer(args)
    out_dir = check_output(args)
    totals = dict.fromkeys(STAGES, 0.0) | {'faces': 0}
    failed = list(problems)
    finished, stop = restore_all(restorer, paths, out_dir, args, totals, failed)
    faces = totals['faces']
    print(f'{len(finished)} ok, {len(failed)} failed; {faces} faces restored into {out_dir}')
    if faces:
        print('seconds per face: ' + ', '.join(f'{s} {totals[s] / faces:.3f}' for s in STAGES))
    for entry, why in failed:
        print(f'  failed: {entry}: {why}')
    if stop:
        raise InputError(stop_message(stop, finished, failed, paths, out_dir))
    return 1 if failed else 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='the photos finished so far are in the output folder')


if __name__ == '__main__':
    sys.exit(main())
