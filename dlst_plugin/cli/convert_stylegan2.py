"""``dlst-convert-stylegan2 -i SRC -o DST``: a StyleGAN2 checkpoint of any known layout -> BasicSR's
layout, checked against a network built from the inferred size.

Layouts read: ``basicsr``, ``rosinality``, ``gfpgan_clean`` and ``mmagic`` (see
:mod:`dlst_plugin.checkpoints.reading`); ``--layout`` forces one instead of detecting it. ``--channel-order bgr``
converts a StyleGAN2 trained on BGR images (MMagic trains on BGR) to RGB: the generator's ToRGB outputs and
the discriminator's from-RGB input are swapped; without the option an MMagic training save is warned about.

DST holds ``params_ema`` (generator) and/or the discriminator: ``params`` when it is alone,
``params_d`` next to a generator (BasicSR option ``param_key_d: params_d``). DST is written
atomically and never replaced without ``--overwrite``.
"""
import sys

from dlst_plugin.checkpoints.stylegan2_layouts import KINDS, LAYOUTS
from dlst_plugin.cli.common import add_positional_alias, make_parser, run_command
from dlst_plugin.errors import CheckpointLayoutError, InputError
from dlst_plugin.loading.stylegan2_conversion import convert_stylegan2


def convert(args):
    """The command's one call; the checkpoint it converts is its input: one that cannot be used is an input
    failure (exit code 1), not a configuration error."""
    try:
        convert_stylegan2(args.input, args.output, layout=args.layout, kind=args.kind, lr_mlp=args.lr_mlp,
                          channel_order=args.channel_order, overwrite=args.overwrite)
    except CheckpointLayoutError as err:
        raise InputError(str(err)) from None


def build_parser():
    parser = make_parser(
        'dlst-convert-stylegan2',
        'Convert a StyleGAN2 checkpoint (BasicSR, rosinality stylegan2-pytorch, GFP-GAN StyleGAN2GeneratorClean or '
        'MMagic/mmediting StyleGANv2, e.g. the priors GLEAN uses) to the BasicSR layout the plugin loads.',
        epilog='example:\n  dlst-convert-stylegan2 -i 550000.pt -o stylegan2_ffhq_256.pth')
    parser.add_argument('-i', '--input', metavar='SRC', help='checkpoint to read (.pth/.pt)')
    parser.add_argument('-o', '--output', metavar='DST', help='BasicSR-layout checkpoint to write')
    add_positional_alias(parser, 'input', 'SRC', '-i/--input')
    add_positional_alias(parser, 'output', 'DST', '-o/--output')
    parser.add_argument('--layout', choices=('auto', ) + LAYOUTS, default='auto',
                        help='layout of SRC (default: detected from its keys)')
    parser.add_argument('--kind', choices=('auto', ) + KINDS + ('both', ), default='auto',
                        help='network(s) to convert (default: every StyleGAN2 network found in SRC)')
    parser.add_argument('--lr-mlp', type=float, default=0.01,
                        help='lr_mlp of the generator that will load DST (gfpgan_clean weights are rescaled for it)')
    parser.add_argument('--channel-order', choices=('rgb', 'bgr'), default=None,
                        help='colour order SRC was trained on; bgr swaps ToRGB outputs and the discriminator\'s '
                             'from-RGB input so DST works on RGB (MMagic trains StyleGAN2 on BGR images; default: '
                             'rgb, with a warning for an MMagic training save)')
    parser.add_argument('--overwrite', '--force', dest='overwrite', action='store_true',
                        help='replace DST if it exists (--force: old spelling)')
    return parser


def main(argv=None):
    return run_command(build_parser(), convert, argv, interrupted='nothing was written (DST is written at the end)')


if __name__ == '__main__':
    sys.exit(main())
