"""dlst-restore: restore the faces in photos with a Skip-Transformer (or GLEAN, GFP-GAN) checkpoint.

Inputs are files, folders (their images, recursively) or glob patterns. Per photo: detect,
align, restore the faces in batches, paste them back with a feathered mask, and write
OUTPUT/restored_imgs/NAME.png, OUTPUT/restored_faces/NAME_00.png ... and, with --compare,
OUTPUT/cmp/NAME.png (input | restored); files of the same name are replaced. A photo that fails
(no face, unreadable, too small ...) is reported and skipped; the run ends with a summary and
exits 1 if any photo failed.
"""
import glob
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.faces.detection import WEIGHTS_ENV, available_backends
from dlst_plugin.fileio import atomic_write_bytes
from dlst_plugin.image_files import IMAGE_EXTENSIONS, list_images
from dlst_plugin.model_files import resolve_model_path
from dlst_plugin.restoration import (
    DTYPES,
    SELECTIONS,
    STAGES,
    FaceRestorer,
    RestoreError,
    RestoreSetupError,
    side_by_side,
    to_bgr8,
)

OUT_DIRS = {'image': 'restored_imgs', 'faces': 'restored_faces', 'compare': 'cmp'}
EXAMPLE = ('example:\n  dlst-restore -i photos/ \'more/*.jpg\' one.png -o results '
           '--model experiments/DLST_512/models/net_g_latest.pth --compare')


def build_parser():
    p = make_parser('dlst-restore', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('-i', '--input', nargs='+', required=True,
                   help='image files, folders (searched recursively) or glob patterns (quote them)')
    p.add_argument('-o', '--output', required=True, help='output folder (restored_imgs/, restored_faces/, cmp/)')
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


def write_png(path, img):
    """Write through a temporary file, so an interrupted run leaves no half-written PNG."""
    ok, buf = cv2.imencode('.png', img)
    if not ok:
        raise RestoreError(f'cannot encode {path}')
    atomic_write_bytes(path, buf.tobytes())


def restore_one(restorer, path, out_dir, name, args, totals):
    img = read_photo(path)
    result = restorer.restore_image(img, aligned=args.aligned)
    write_png(out_dir / OUT_DIRS['image'] / f'{name}.png', result.image)
    if not args.no_faces:
        for k, face in enumerate(result.faces):
            write_png(out_dir / OUT_DIRS['faces'] / f'{name}_{k:02d}.png', face)
    if args.compare:
        write_png(out_dir / OUT_DIRS['compare'] / f'{name}.png',
                  side_by_side(to_bgr8(img)[0], to_bgr8(result.image)[0]))
    for stage, seconds in result.timings.items():
        totals[stage] += seconds
    totals['faces'] += len(result.faces)
    return result


def run(args):
    if args.batch_size < 1:
        raise RestoreSetupError('--batch-size must be at least 1')
    paths, problems = collect_inputs(args.input)
    if not paths:
        raise RestoreSetupError('-i/--input: no input images: ' + '; '.join(f'{e}: {why}' for e, why in problems))
    model = resolve_model_path(args.model, args.weights_dir, prefer_safetensors=True)
    if model.suffix == '.safetensors' and Path(args.model).suffix.lower() != '.safetensors':
        print(f'note: --model {args.model}: using {model} (the safetensors copy next to it)', file=sys.stderr)
    restorer = FaceRestorer.from_files(str(model), opt=args.opt, device=args.device, dtype=args.dtype,
                                       weights_dir=args.weights_dir, detector=args.detector, select=args.faces,
                                       min_face_size=args.min_face_size, batch_size=args.batch_size,
                                       score_threshold=args.score_threshold)
    if not args.aligned:
        restorer.detector  # noqa: B018  (build it now: a missing detector model stops the run before any work)
    out_dir = Path(args.output)
    for key, sub in OUT_DIRS.items():
        if key == 'image' or (key == 'faces' and not args.no_faces) or (key == 'compare' and args.compare):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
    totals = dict.fromkeys(STAGES, 0.0) | {'faces': 0}
    used, ok, failed = set(), 0, list(problems)
    for path in tqdm(paths, desc='photos', unit='photo', file=sys.stderr):
        try:
            result = restore_one(restorer, path, out_dir, output_name(path, used), args, totals)
        except (RestoreError, ValueError, cv2.error, OSError, MemoryError, RuntimeError) as err:
            # the photo's own problem (or memory, disk, a failing forward): report it and go on
            failed.append((path, str(err) if isinstance(err, RestoreError) else f'{type(err).__name__}: {err}'))
            tqdm.write(f'failed: {path}: {err}', file=sys.stderr)
            continue
        ok += 1
        for note in result.notes:
            tqdm.write(f'note: {path}: {note}', file=sys.stderr)
    faces = totals['faces']
    print(f'{ok} ok, {len(failed)} failed; {faces} faces restored into {out_dir}')
    if faces:
        print('seconds per face: ' + ', '.join(f'{s} {totals[s] / faces:.3f}' for s in STAGES))
    for entry, why in failed:
        print(f'  failed: {entry}: {why}')
    return 1 if failed else 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='the photos finished so far are in the output folder')


if __name__ == '__main__':
    sys.exit(main())
