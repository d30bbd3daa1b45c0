"""``dlst-demo``: the whole DL-ST pipeline on the shipped sample photos, on a CPU, in minutes.

Stages (each one that finished is skipped on a rerun, so an interrupted demo continues):
  photos    "in-the-wild" photos (sample photos shrunk to small faces and degraded by a hidden process)
            and HQ photos (the sample photos, mildly rescaled)
  real_lq   as dlst-collect-lq-faces: detect, crop, align the real LQ faces (paper 3.2.1)
  hq        HQ faces from the HQ photos, aligned, into an LMDB (the FFHQ stand-in)
  prior     a tiny StyleGAN2 face prior on the HQ faces: a quick fit, then BasicSR's StyleGAN2Model
            (options/train_stylegan2_prior.yml at full scale); samples checked with a face detector
  degrader  a tiny coupled StyleGAN2 degrader started from the prior, trained on the real LQ faces
            (paper 3.2.2-3.2.3)
  pairs     as dlst-generate-pairs: (clean, degraded) pairs into two LMDBs (paper 3.2.4)
  restorer  a tiny Skip-Transformer (decoder and discriminator from the prior) on the second-order set
            (paper 3.2.4, 3.3)
  restore   as dlst-restore: the in-the-wild photos (detect, align, restore, paste back)
  evaluate  as dlst-evaluate: NIQE (BasicSR and pyiqa) of the faces before and after restoration
  report    report.html: pictures of every stage, loss plots, timings

The demo's networks are tiny and trained for minutes on three photos: they show every stage working,
not the paper's results. See README.md for the full-scale commands.
"""
import os
import sys

from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.demo.pipeline import DEFAULT_PHOTOS, demo_settings, run_demo
from dlst_plugin.demo.steps import INTERRUPTED


def build_parser():
    p = make_parser('dlst-demo', __doc__)
    p.add_argument('-o', '--output', '--out', dest='out', default='demo_out',
                   help='output folder (default: %(default)s)')
    p.add_argument('--photos', default=None,
                   help=f'folder of photos with faces (default: {DEFAULT_PHOTOS} of the checkout, or the '
                        'copy installed with the package)')
    p.add_argument('--fast', action='store_true', help='a few iterations only (a smoke test of every stage)')
    p.add_argument('--size', type=int, default=64, help='face size of the tiny models (default: %(default)s)')
    p.add_argument('--fit-steps', type=int, default=None, help='steps of the prior\'s fit (default: 500, --fast 300)')
    p.add_argument('--prior-iters', type=int, default=None,
                   help='StyleGAN2Model iterations of the prior (default: 100, --fast 10)')
    p.add_argument('--dl-iters', type=int, default=None, help='degrader iterations (default: 100, --fast 10)')
    p.add_argument('--st-iters', type=int, default=None, help='restorer iterations (default: 500, --fast 10)')
    p.add_argument('--pairs', type=int, default=None, help='generated pairs (default: 64, --fast 8)')
    p.add_argument('--seed', type=int, default=0, help='seed of the photo variants (default: %(default)s)')
    p.add_argument('--threads', type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                   help='CPU threads per stage (default: half the cores, at most 4: %(default)s); tiny '
                        'networks gain little from more, and lose a lot when other programs use the cores')
    p.add_argument('--restart', action='store_true', help='redo every stage, even those already done')
    return p


def run(args):
    settings = demo_settings(args.fast, fit_steps=args.fit_steps, prior_iters=args.prior_iters, dl_iters=args.dl_iters,
                             st_iters=args.st_iters, pairs=args.pairs, size=args.size, seed=args.seed)
    run_demo(args.out, args.photos, settings, threads=args.threads, restart=args.restart)


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted=INTERRUPTED)


if __name__ == '__main__':
    sys.exit(main())
