"""``dlst-convert-stylegan2 SRC DST``: a StyleGAN2 checkpoint of any known layout -> BasicSR's
layout (SPEC.md section 2), checked against a network built from the inferred size.

DST holds ``params_ema`` (generator) and/or the discriminator: ``params`` when it is alone,
``params_d`` next to a generator (BasicSR option ``param_key_d: params_d``).
"""
import argparse
import os
import sys
from pathlib import Path

import torch

from dlst_plugin.checkpoints import (
    KINDS,
    LAYOUTS,
    CheckpointLayoutError,
    check_state,
    convert_network,
    expected_shapes,
    find_network,
    infer_discriminator_config,
    infer_generator_config,
    listing,
    read_checkpoint,
)

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
    """A few renamings, one per top-level module, so each kind of rule shows once."""
    seen = {}
    for src, dst in renamed:
        seen.setdefault(src.split('.')[0], (src, dst))
    return list(seen.values())[:NUM_EXAMPLES]


def convert_one(obj, kind, args):
    """Map and check one network; return its state dict and the lines describing what was done."""
    conversion = convert_network(obj, kind, args.layout, args.lr_mlp, name=str(args.src))
    what = f'{args.src} ({conversion.layout} {kind} in {conversion.source})'
    try:
        config = INFER_CONFIG[kind](conversion.state)
    except CheckpointLayoutError as err:
        raise CheckpointLayoutError(f'{what}: {err}; its keys: {listing(conversion.state)}') from None
    check_state(expected_shapes(kind, config), conversion.state, what)
    num_src = len(conversion.state) + len(conversion.dropped)
    lines = [f'{kind}: {conversion.layout} layout in {conversion.source}: {num_src} tensors -> '
             f'{len(conversion.state)} ({len(conversion.renamed)} renamed, {len(conversion.dropped)} blur-kernel '
             f'buffers dropped, {conversion.rescaled} rescaled)',
             '  config: ' + ', '.join(f'{k}={v}' for k, v in config.items())]
    lines += [f'  {src} -> {dst}' for src, dst in examples(conversion.renamed)]
    if conversion.layout == 'gfpgan_clean':
        lines.append(f'  note: weights rescaled for lr_mlp={args.lr_mlp}; the clean generator upsamples '
                     'bilinearly, so images above 4 px differ from its own')
    return conversion.state, lines


def save_atomically(obj, dst):
    """Write to a temporary file beside ``dst``, then rename: ``dst`` is never half written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f'.{dst.name}.{os.getpid()}.tmp')
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def convert(args):
    if args.dst.exists() and not args.force:
        raise FileExistsError(f'{args.dst} exists; pass --force to overwrite it')
    obj = read_checkpoint(args.src)
    kinds = kinds_to_convert(obj, args.kind)
    out = {}
    for kind in kinds:
        state, lines = convert_one(obj, kind, args)
        out[output_key(kind, kinds)] = state
        print('\n'.join(lines))
    if isinstance(obj.get('latent_avg'), torch.Tensor):  # rosinality's converted official weights
        out['latent_avg'] = obj['latent_avg']
    save_atomically(out, args.dst)
    print(f'wrote {args.dst}: ' + ', '.join(out))


def build_parser():
    parser = argparse.ArgumentParser(
        prog='dlst-convert-stylegan2',
        description='Convert a StyleGAN2 checkpoint (BasicSR, rosinality stylegan2-pytorch or GFP-GAN '
        'StyleGAN2GeneratorClean) to the BasicSR layout the plugin loads.')
    parser.add_argument('src', type=Path, help='checkpoint to read (.pth/.pt)')
    parser.add_argument('dst', type=Path, help='BasicSR-layout checkpoint to write')
    parser.add_argument('--layout', choices=('auto', ) + LAYOUTS, default='auto',
                        help='layout of SRC (default: detected from its keys)')
    parser.add_argument('--kind', choices=('auto', ) + KINDS + ('both', ), default='auto',
                        help='network(s) to convert (default: every StyleGAN2 network found in SRC)')
    parser.add_argument('--lr-mlp', type=float, default=0.01,
                        help='lr_mlp of the generator that will load DST (gfpgan_clean weights are rescaled for it)')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        convert(args)
    except (CheckpointLayoutError, OSError) as err:  # FileNotFoundError/FileExistsError are OSErrors
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
