"""dlst-make-testset: photos (CelebA / VGGFace2 / AFLW / LS3D-W style) -> aligned small real faces (paper 4.1).

The paper's own real-LQ test set keeps faces whose region is at most 40x40 px (653 faces)
and aligns them. This keeps faces whose box is at most --max-size px on both sides, and
aligns them at the restorer's input size, like dlst-collect-lq-faces (same options, same
faces.csv / errors.csv / resume).
"""
import argparse
import sys

from dlst_plugin.cli.collect_lq_faces import add_common_arguments, options_from_args, run_harvest


def build_parser():
    p = argparse.ArgumentParser(prog='dlst-make-testset', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_arguments(p)
    p.add_argument('--max-size', type=float, default=40,
                   help='keep a face only if its box is at most this many px wide and high (paper: 40)')
    p.add_argument('--min-size', type=float, default=8,
                   help='ignore boxes smaller than this (below it detections are mostly false positives)')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.min_size > args.max_size:
        print(f'error: --min-size {args.min_size} is above --max-size {args.max_size}', file=sys.stderr)
        return 2
    return run_harvest(args, options_from_args(args, min_size=args.min_size, max_size=args.max_size), 'test faces')


if __name__ == '__main__':
    sys.exit(main())
