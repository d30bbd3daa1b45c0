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
import re
import sys
from pathlib import Path

import torch

from dlst_plugin.checkpoints.reading import listing, read_checkpoint
from dlst_plugin.checkpoints.stylegan2_layouts import KINDS, LAYOUTS, convert_network, find_network
from dlst_plugin.cli.common import add_positional_alias, make_parser, run_command
from dlst_plugin.errors import CheckpointLayoutError, ConfigError, InputError, MissingFileError
from dlst_plugin.fileio.atomic import atomic_torch_save
from dlst_plugin.loading.shapes import check_state, expected_shapes, infer_discriminator_config, infer_generator_config

INFER_CONFIG = {'generator': infer_generator_config, 'discriminator': infer_discriminator_config}
NUM_EXAMPLES = 6


def output_key(kind, kinds):
    if kind == 'generator':
        return 'params_ema'
    return 'params_d' if 'generator' in kinds else 'params'


def kinds_to_convert(obj, requested):
    if requested == 'both':
        return list(KINDS)
    if requested != 'auto':
        return [requested]
    found = []
    for kind in KINDS:
        try:
            find_network(obj, kind)
            found.append(kind)
        except CheckpointLayoutError:
            pass
    return found or ['generator']  # nothing recognised: the generator attempt reports the keys


def examples(renamed):
    """A few renamings, one per top-level module (numbered buffers such as ``injected_noise_3`` count
    as one), so each kind of rule shows once."""
    seen = {}
    for src, dst in renamed:
        seen.setdefault(re.sub(r'\d+', '', src.split('.')[0]), (src, dst))
    return list(seen.values())[:NUM_EXAMPLES]


def convert_one(obj, kind, args):
    """Map and check one network; return its :class:`Conversion` and the lines describing what was done."""
    conversion = convert_network(obj, kind, args.layout, args.lr_mlp, name=str(args.src),
                                 channel_order=args.channel_order, option='--channel-order')
    what = f'{args.src} ({conversion.layout} {kind} in {conversion.source})'
    try:
        config = INFER_CONFIG[kind](conversion.state)
    except CheckpointLayoutError as err:
        raise CheckpointLayoutError(f'{what}: {err}; its keys: {listing(conversion.state)}') from None
    check_state(expected_shapes(kind, config), conversion.state, what)
    num_src = len(conversion.state) + len(conversion.dropped) + len(conversion.extras)
    kept = f', {", ".join(conversion.extras)} kept beside it' if conversion.extras else ''
    lines = [f'{kind}: {conversion.layout} layout in {conversion.source}: {num_src} tensors -> '
             f'{len(conversion.state)} ({len(conversion.renamed)} renamed, {len(conversion.dropped)} fixed '
             f'buffers dropped, {conversion.rescaled} rescaled, {conversion.swapped} colour-swapped{kept})',
             '  config: ' + ', '.join(f'{k}={v}' for k, v in config.items())]
    lines += [f'  {src} -> {dst}' for src, dst in examples(conversion.renamed)]
    if conversion.layout == 'gfpgan_clean':
        lines.append(f'  note: weights rescaled for lr_mlp={args.lr_mlp}; the clean generator upsamples '
                     'bilinearly, so images above 4 px differ from its own')
    return conversion, lines


def convert(args):
    """The command's one call; the checkpoint it converts is its input: one that cannot be used is an input
    failure (exit code 1), not a configuration error."""
    try:
        return convert_checkpoint(args)
    except CheckpointLayoutError as err:
        raise InputError(str(err)) from None


def convert_checkpoint(args):
    args.src, args.dst = Path(args.input), Path(args.output)
    if not args.src.is_file():
        raise MissingFileError(f'-i/--input {args.src}: no such checkpoint file')
    if args.dst.exists() and not args.overwrite:
        raise ConfigError(f'-o/--output {args.dst} exists; pass --overwrite to replace it')
    obj = read_checkpoint(args.src)
    kinds = kinds_to_convert(obj, args.kind)
    out, extras = {}, {}
    for kind in kinds:
        conversion, lines = convert_one(obj, kind, args)
        out[output_key(kind, kinds)] = conversion.state
        extras.update(conversion.extras)  # MMagic's w_avg
        print('\n'.join(lines))
    if isinstance(obj.get('latent_avg'), torch.Tensor):  # rosinality's converted official weights
        extras['latent_avg'] = obj['latent_avg']
    out.update(extras)
    atomic_torch_save(out, args.dst)
    print(f'wrote {args.dst}: ' + ', '.join(out))


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
