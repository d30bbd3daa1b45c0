"""dlst-collect-lq-faces: photos (WIDER Face style) -> aligned real-world LQ faces (paper 3.2.1).

Detect every face, keep those whose box is at least --min-size px on both sides (paper:
20x20), crop with a margin, resize bicubic to the generator size, align to the FFHQ
template, and write a folder of PNGs or an LMDB (DST ending in .lmdb) with faces.csv
(source photo, box, score, size, landmarks per face). Reruns resume; unreadable photos
are listed in errors.csv and skipped.
"""
import argparse
import os
import sys

from dlst_plugin.faces.detection import WEIGHTS_ENV, MissingWeightsError, available_backends
from dlst_plugin.faces.harvest import ERRORS_CSV, FACES_CSV, HarvestOptions, harvest
from dlst_plugin.lmdb_writer import list_images


def add_common_arguments(p, default_size=512):
    """Options shared with dlst-make-testset (one place for the harvest's options)."""
    p.add_argument('src', help='folder of photos (searched recursively)')
    p.add_argument('dst', help="output folder for PNG faces, or an LMDB folder when it ends with '.lmdb'; "
                               'an earlier run into DST is resumed')
    p.add_argument('--glob', default=None, help="only photos whose path relative to SRC matches this fnmatch "
                                                "pattern, e.g. '0--Parade/*'")
    p.add_argument('--size', type=int, default=default_size, help='side of the aligned output faces in px')
    p.add_argument('--margin', type=float, default=HarvestOptions.margin,
                   help='crop side = max(box w, h) * (1 + 2 * margin) before resizing and aligning')
    p.add_argument('--detector', choices=available_backends(), default='yunet',
                   help='face detection backend (retinaface needs facexlib and local weights)')
    p.add_argument('--weights-dir', default=None,
                   help=f'folder holding detector weights (default: ${WEIGHTS_ENV}, else ./weights)')
    p.add_argument('--score-threshold', type=float, default=None,
                   help="minimum detection score (default: the detector's own: yunet 0.7, retinaface 0.8)")
    p.add_argument('--border', choices=['reflect', 'constant', 'replicate'], default='reflect',
                   help='how alignment fills pixels outside the photo')
    p.add_argument('--png-level', type=int, choices=range(10), default=1, metavar='0-9',
                   help='PNG compression level of the output faces')
    p.add_argument('--max-faces', type=int, default=None,
                   help='stop once this many faces are collected (the paper collected 30,000)')
    p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1),
                   help='processes that detect and align (1 = all in this process)')
    p.add_argument('--flush-every', type=int, default=50,
                   help='photos between commits of faces and bookkeeping (what a kill can cost)')


def run_harvest(args, opts, what):
    if not os.path.isdir(args.src):
        print(f'error: source folder {args.src} does not exist', file=sys.stderr)
        return 2
    if args.size < 16 or args.workers < 1 or args.flush_every < 1:
        print('error: --size must be at least 16, --workers and --flush-every at least 1', file=sys.stderr)
        return 2
    photos = list_images(args.src, args.glob)
    if not photos:
        print(f'error: no images under {args.src}' + (f' matching {args.glob!r}' if args.glob else ''),
              file=sys.stderr)
        return 2
    try:
        summary = harvest(photos, args.dst, opts, workers=args.workers, flush_every=args.flush_every,
                          max_faces=args.max_faces, desc=what)
    except MissingWeightsError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, OSError, ImportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    if summary['already_done']:
        print(f"resumed: {summary['already_done']} of {summary['photos']} photos were done before")
    print(f"{summary['faces']} {what} in {args.dst} from {summary['photos_done']} photos "
          f"({summary['seconds']:.1f} s this run); per-face records in {os.path.join(args.dst, FACES_CSV)}")
    if summary['errors']:
        print(f"warning: {summary['errors']} photo(s) could not be processed and were skipped, listed in "
              f'{os.path.join(args.dst, ERRORS_CSV)}', file=sys.stderr)
    return 0


def options_from_args(args, **size_rule):
    return HarvestOptions(size=args.size, margin=args.margin, backend=args.detector, weights_dir=args.weights_dir,
                          score_threshold=args.score_threshold, border=args.border, png_level=args.png_level,
                          **size_rule)


def build_parser():
    p = argparse.ArgumentParser(prog='dlst-collect-lq-faces', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_arguments(p)
    p.add_argument('--min-size', type=float, default=20,
                   help='keep a face only if its box is at least this many px wide and high (paper: 20)')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_harvest(args, options_from_args(args, min_size=args.min_size), 'LQ faces')


if __name__ == '__main__':
    sys.exit(main())
