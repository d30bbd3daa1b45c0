"""A StyleGAN2 checkpoint of any known layout -> BasicSR's layout, checked against a network built from the size
its tensors give: the library behind ``dlst-convert-stylegan2``.

Layouts read: ``basicsr``, ``rosinality``, ``gfpgan_clean`` and ``mmagic``
(:mod:`dlst_plugin.checkpoints.stylegan2_layouts` maps the names); ``layout`` forces one instead of detecting it.
``channel_order='bgr'`` converts a StyleGAN2 trained on BGR images (MMagic trains on BGR) to RGB. The output
holds ``params_ema`` (generator) and/or the discriminator: ``params`` when it is alone, ``params_d`` next to a
generator (BasicSR option ``param_key_d: params_d``); it is written atomically and never replaced unless
``overwrite``. Here and not in ``checkpoints/``: the check builds the networks' shapes (:mod:`.shapes`).
"""
import re
from pathlib import Path

import torch

from dlst_plugin.checkpoints.reading import listing, read_checkpoint
from dlst_plugin.checkpoints.stylegan2_layouts import KINDS, convert_network, find_network
from dlst_plugin.errors import CheckpointLayoutError, ConfigError, MissingFileError
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


def convert_one(obj, kind, src, layout, lr_mlp, channel_order):
    """Map and check one network; return its :class:`Conversion` and the lines describing what was done."""
    conversion = convert_network(obj, kind, layout, lr_mlp, name=str(src), channel_order=channel_order,
                                 option='--channel-order')
    what = f'{src} ({conversion.layout} {kind} in {conversion.source})'
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
        lines.append(f'  note: weights rescaled for lr_mlp={lr_mlp}; the clean generator upsamples '
                     'bilinearly, so images above 4 px differ from its own')
    return conversion, lines


def convert_stylegan2(src, dst, layout='auto', kind='auto', lr_mlp=0.01, channel_order=None, overwrite=False):
    """Convert the checkpoint ``src`` into ``dst`` (BasicSR's layout); print what was done per network and return
    the keys written. ``kind``: 'generator', 'discriminator', 'both' or 'auto' (every StyleGAN2 network found);
    ``lr_mlp``: that of the generator that will load ``dst`` (``gfpgan_clean`` weights are rescaled for it). A
    checkpoint that cannot be converted raises CheckpointLayoutError naming what does not fit."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise MissingFileError(f'-i/--input {src}: no such checkpoint file')
    if dst.exists() and not overwrite:
        raise ConfigError(f'-o/--output {dst} exists; pass --overwrite to replace it')
    obj = read_checkpoint(src)
    kinds = kinds_to_convert(obj, kind)
    out, extras = {}, {}
    for each in kinds:
        conversion, lines = convert_one(obj, each, src, layout, lr_mlp, channel_order)
        out[output_key(each, kinds)] = conversion.state
        extras.update(conversion.extras)  # MMagic's w_avg
        print('\n'.join(lines))
    if isinstance(obj.get('latent_avg'), torch.Tensor):  # rosinality's converted official weights
        extras['latent_avg'] = obj['latent_avg']
    out.update(extras)
    atomic_torch_save(out, dst)
    print(f'wrote {dst}: ' + ', '.join(out))
    return list(out)
