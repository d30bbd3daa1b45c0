"""dlst-collect-lq-faces: photos (WIDER Face style) -> aligned real-world LQ faces (paper 3.2.1).

Detect every face, keep those whose box is at least --min-size px on both sides (paper:
20x20), crop with a margin, resize bicubic to the generator size, align to the FFHQ
template, and write a folder of PNGs or an LMDB (DST ending in .lmdb) with faces.csv
(source photo, box, score, size, landmarks per face). Reruns resume; unreadable photos
are listed in errors.csv, skipped, and make the exit code 1.
"""
import os
import sys

from dlst_plugin.cli.common import add_positional_alias, add_weights_dir_argument, make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT
from dlst_plugin.faces.detection import available_backends
from dlst_plugin.faces.harvest import HarvestOptions, harvest_folder

EXAMPLE = ('example:\n  dlst-collect-lq-faces -i WIDER_train/images -o datasets/real_lq_faces.lmdb --size 512 '
           '--min-size 20')


def add_harvest_arguments(p, default_size=512):
    """Options shared with dlst-make-testset (one place for the harvest's options)."""
    p.add_argument('-i', '--input', metavar='SRC', help='folder of photos (searched recursively)')
    p.add_argument('-o', '--output', metavar='DST',
                   help="output folder for PNG faces, or an LMDB folder when it ends with '.lmdb'; an earlier run "
                        'into DST is resumed')
    add_positional_alias(p, 'input', 'SRC', '-i/--input')
    add_positional_alias(p, 'output', 'DST', '-o/--output')
    p.add_argument('--overwrite', action='store_true', help='delete an earlier harvest in DST and start again')
    p.add_argument('--glob', default=None, help="only photos whose path relative to SRC matches this fnmatch "
                                                "pattern, e.g. '0--Parade/*'")
    p.add_argument('--size', type=int, default=default_size, help='side of the aligned output faces in px')
    p.add_argument('--margin', type=float, default=HarvestOptions.margin,
                   help='crop side = max(box w, h) * (1 + 2 * margin) before resizing and aligning')
    p.add_argument('--detector', choices=available_backends(), default='yunet',
                   help='face detection backend (retinaface needs facexlib and local weights)')
    add_weights_dir_argument(p, 'the detector weights are looked for')
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
    """Harvest ``args.input`` into ``args.output``; exit code 1 when a photo failed (no face kept: an error)."""
    summary = harvest_folder(args.input, args.output, opts, glob=args.glob, workers=args.workers,
                             flush_every=args.flush_every, max_faces=args.max_faces, what=what,
                             overwrite=args.overwrite)
    return EXIT_INPUT if summary['errors'] else 0


def options_from_args(args, **size_rule):
    return HarvestOptions(size=args.size, margin=args.margin, backend=args.detector, weights_dir=args.weights_dir,
                          score_threshold=args.score_threshold, border=args.border, png_level=args.png_level,
                          **size_rule)


def build_parser():
    p = make_parser('dlst-collect-lq-faces', __doc__.split('\n')[0], epilog=EXAMPLE)
    add_harvest_arguments(p)
    p.add_argument('--min-size', type=float, default=20,
                   help='keep a face only if its box is at least this many px wide and high (paper: 20)')
    return p


INTERRUPTED = 'faces of the photos finished so far are kept (done.txt lists them); rerun the same command to resume'


def main(argv=None):
    return run_command(build_parser(), lambda args: run_harvest(args, options_from_args(args, min_size=args.min_size),
                                                                'LQ faces'), argv, interrupted=INTERRUPTED)


if __name__ == '__main__':
    sys.exit(main())
