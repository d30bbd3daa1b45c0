"""dlst-make-testset: photos (CelebA / VGGFace2 / AFLW / LS3D-W style) -> aligned small real faces (paper 4.1).

The paper's own real-LQ test set keeps faces whose region is at most 40x40 px (653 faces)
and aligns them. This keeps faces whose box is at most --max-size px on both sides, and
aligns them at the restorer's input size, like dlst-collect-lq-faces (same options, same
faces.csv / errors.csv / resume).
"""
import sys

from dlst_plugin.cli.collect_lq_faces import INTERRUPTED, add_harvest_arguments, options_from_args
from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT, ConfigError
from dlst_plugin.faces.harvest import harvest_folder

EXAMPLE = 'example:\n  dlst-make-testset -i celeba/ -o testsets/own_lq --max-size 40'


def build_parser():
    p = make_parser('dlst-make-testset', __doc__.split('\n')[0], epilog=EXAMPLE)
    add_harvest_arguments(p)
    p.add_argument('--max-size', type=float, default=40,
                   help='keep a face only if its box is at most this many px wide and high (paper: 40)')
    p.add_argument('--min-size', type=float, default=8,
                   help='ignore boxes smaller than this (below it detections are mostly false positives)')
    return p


def run(args):
    if args.min_size > args.max_size:
        raise ConfigError(f'--min-size {args.min_size} is above --max-size {args.max_size}')
    summary = harvest_folder(args.input, args.output, options_from_args(args, min_size=args.min_size,
                                                                         max_size=args.max_size),
                             glob=args.glob, workers=args.workers, flush_every=args.flush_every,
                             max_faces=args.max_faces, what='test faces', overwrite=args.overwrite)
    return EXIT_INPUT if summary['errors'] else 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted=INTERRUPTED)


if __name__ == '__main__':
    sys.exit(main())
