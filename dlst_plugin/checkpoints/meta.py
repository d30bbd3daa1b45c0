"""What a checkpoint says about its network, so it can be rebuilt from the file alone.

Every ``net_g_*.pth`` of the plugin's models (and every file ``dlst-export`` writes) carries, next to
``params`` / ``params_ema``, a ``meta`` entry of plain data (loadable with ``torch.load(weights_only=True)``)::

    {'format': 1, 'arch': 'SkipTransformer', 'options': {...constructor options...},
     'image_range': [-1, 1], 'channels': 'RGB', 'plugin_version': '0.1.0'}

``options`` are the ``network_g`` options without the files the network was initialised from
(``decoder_load_path``, ``bank_load_path``, ``pretrained``) and the options about those files (their layout
and channel order): the checkpoint holds those weights. In a
``.safetensors`` file the same dict is JSON in the header's ``dlst_meta`` entry.

A checkpoint without ``meta`` (older files, other tools' copies, a bare state dict) is rebuilt from its
tensor shapes (:func:`infer_network_options`): the arch from keys only it has, then the sizes, widths,
block counts, attention and skip layers. The Skip-Transformer's attention patch sizes travel in a buffer
(``attention_patch_sizes``); a file saved before it existed gets the default sizes, with a warning. What
else leaves no trace in the shapes (``lr_mlp``) takes its default.
"""
import json
import logging

from dlst_plugin.checkpoints.reading import key_indices, sub_state

META_KEY = 'meta'
FORMAT = 1
INIT_FILE_KEYS = ('decoder_load_path', 'bank_load_path', 'pretrained')
# options that only say how those files are read: left out of ``meta`` like the files
INIT_OPTION_KEYS = ('decoder_channel_order', 'bank_channel_order', 'pretrained_channel_order', 'bank_layout',
                    'pretrained_layout')
HEADER_KEY = 'dlst_meta'  # safetensors header entry holding the JSON of ``meta``
# keys only a state dict of that network holds (the first is also what spandrel detection checks first)
SIGNATURES = {
    'SkipTransformer': ('encoder.to_w.weight', 'encoder.first.0.0.weight', 'decoder.constant_input.weight',
                        'decoder.style_conv1.modulated_conv.weight', 'decoder.to_rgb1.modulated_conv.weight'),
    'GLEANStyleGAN2': ('encoder.0.0.conv_first.weight', 'encoder.0.1.weight', 'fusion_out.0.weight',
                       'fusion_skip.0.weight', 'bank.constant_input.weight', 'bank.style_conv1.modulated_conv.weight'),
    'GFPGANv1Clean': ('conv_body_first.weight', 'final_linear.weight', 'toRGB.0.weight', 'condition_scale.0.0.weight',
                      'stylegan_decoder.constant_input.weight', 'stylegan_decoder.style_conv1.modulated_conv.weight'),
}
RESTORER_ARCHS = tuple(SIGNATURES)
DEFAULT_GROWTH = 32  # GLEAN's rrdb_growth_channels (ESRGAN's): no trace in a trunk without RRDBs
OPTIONAL_KEYS = ('attention_patch_sizes', )  # buffers that files saved before they existed lack (loads fill them)
NOT_RESTORERS = {'CoupledStyleGAN2': 'a degrader (use it with dlst-generate-pairs)',
                 'PureStyleGAN2Generator': 'a StyleGAN2 generator (a prior: decoder_load_path / bank_load_path)',
                 'PureStyleGAN2Discriminator': 'a discriminator'}
logger = logging.getLogger(__name__)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def network_metadata(net_opt):
    """The ``meta`` entry of a network built from ``net_opt`` (a BasicSR ``network_*`` block)."""
    from dlst_plugin import __version__
    options = {k: _plain(v) for k, v in net_opt.items()
               if k != 'type' and k not in INIT_FILE_KEYS and k not in INIT_OPTION_KEYS}
    return {'format': FORMAT, 'arch': str(net_opt['type']), 'options': options, 'image_range': [-1, 1],
            'channels': 'RGB', 'plugin_version': __version__}


def read_metadata(ckpt):
    """The ``meta`` entry of a loaded checkpoint dict, or None when it has none (older files)."""
    meta = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and meta.get('arch') and isinstance(meta.get('options'), dict):
        return meta
    return None


def network_options(meta):
    """The ``network_g`` block (``type`` + options) a ``meta`` entry describes."""
    return {'type': meta['arch'], **meta['options']}


def header_metadata(meta):
    """safetensors header entries (strings only) carrying ``meta``."""
    return {HEADER_KEY: json.dumps(meta, sort_keys=True), 'arch': str(meta['arch'])}


def metadata_from_header(header, name='checkpoint'):
    """``meta`` from a safetensors header (None when it has none); a damaged entry is an error naming the file."""
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError
    text = (header or {}).get(HEADER_KEY)
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except ValueError as err:
        raise CheckpointLayoutError(f'{name}: its header entry {HEADER_KEY!r} is not valid JSON ({err}); re-export '
                                    'the file with dlst-export, or delete the entry to rebuild from tensor shapes') \
            from None
    return read_metadata({META_KEY: meta})


# -- inference from tensor shapes --------------------------------------------------------------------

def detect_arch(state):
    """The restorer arch whose signature keys ``state`` holds, or None."""
    return next((arch for arch, keys in SIGNATURES.items() if all(k in state for k in keys)), None)


def _encoder_narrow(widths, reference, name):
    """``encoder_narrow`` such that ``max(1, int(reference[r] * it)) == widths[r]`` at every resolution."""
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError
    for res in sorted(widths, key=lambda r: -reference[r]):
        guess = widths[res] / reference[res]
        if all(max(1, int(reference[r] * guess)) == w for r, w in widths.items()):
            return 1 if guess == 1 else guess
    raise CheckpointLayoutError(f'{name}: encoder widths {widths} are no fixed fraction of the decoder widths '
                                f'{ {r: reference[r] for r in widths} }; pass --opt X.yml with the network_g that '
                                'built it')


def _stylegan(state, prefix, name, multiplier):
    """(StyleGAN2 options, its widths) of the sub-network under ``prefix``; ``multiplier``: the arch's default
    channel_multiplier, kept when the network is too small (< 64 px) for it to leave a trace."""
    from dlst_plugin.archs.stylegan2_layers import stylegan2_channels
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError, infer_generator_config
    try:
        config = infer_generator_config(sub_state(state, prefix))
    except CheckpointLayoutError as err:
        raise CheckpointLayoutError(f'{name}: its {prefix.rstrip(".")} network: {err}') from None
    if config['out_size'] < 64:
        config['channel_multiplier'] = multiplier
    return config, stylegan2_channels(config['channel_multiplier'], config['narrow'])


def infer_skip_transformer(state, name='checkpoint', why='it has no metadata'):
    """``SkipTransformer`` options from a state dict's shapes and its ``attention_patch_sizes`` buffer (``lr_mlp``:
    default; a state dict without the buffer gets the default patch sizes, with a warning saying ``why``)."""
    from dlst_plugin.archs.skip_transformer_arch import PATCH_SIZES_KEY, patch_size_overrides
    config, dec = _stylegan(state, 'decoder.', name, 1)
    out_size = config['out_size']
    stages = key_indices(state, r'encoder\.stages\.(\d+)\.down\.0\.weight')
    widths = {out_size: state['encoder.first.0.0.weight'].shape[0]}
    widths.update({out_size >> (i + 1): state[f'encoder.stages.{i}.down.0.weight'].shape[0] for i in stages})
    attention = any('.attention.' in k for k in state if k.startswith('encoder.stages.'))
    patch_sizes = {}
    if PATCH_SIZES_KEY in state:
        patch_sizes = patch_size_overrides(_buffer_patch_sizes(state[PATCH_SIZES_KEY], out_size, name))
    elif attention:
        logger.warning('%s: %s and was saved without its attention patch sizes (before the %s buffer existed): '
                       'the default patch size (resolution / 8, what the shipped option files train) is assumed; '
                       'a model trained with other patch_sizes needs the option file that trained it', name, why,
                       PATCH_SIZES_KEY)
    return {**config, 'encoder_narrow': _encoder_narrow(widths, dec, name),
            'num_first_blocks': len(key_indices(state, r'encoder\.first\.(\d+)\.conv1\.0\.weight')),
            'attention': attention, 'patch_sizes': patch_sizes,
            'skip_resolutions': key_indices(state, r'skips\.(\d+)\.fuse\.0\.weight')}


def _buffer_patch_sizes(tensor, out_size, name):
    from dlst_plugin.archs.skip_transformer_arch import PATCH_SIZES_KEY, patch_sizes_from_buffer
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError
    try:
        return patch_sizes_from_buffer(tensor.reshape(-1).tolist(), out_size)
    except ValueError as err:
        raise CheckpointLayoutError(f'{name}: its {PATCH_SIZES_KEY} buffer does not fit: {err}') from None


def infer_glean(state, name='checkpoint'):
    """``GLEANStyleGAN2`` options from a state dict's shapes (``lr_mlp``: default; ``rrdb_growth_channels``:
    default when the trunk has no RRDB)."""
    config, _ = _stylegan(state, 'bank.', name, 2)
    blocks = key_indices(state, r'encoder\.(\d+)\.0\.weight')  # blocks 1 ...: one per encoder resolution
    rrdbs = key_indices(state, r'encoder\.0\.0\.body\.(\d+)\.rdb1\.conv1\.weight')
    growth = state['encoder.0.0.body.0.rdb1.conv1.weight'].shape[0] if rrdbs else DEFAULT_GROWTH
    return {'in_size': 2**(len(blocks) + 1), **config, 'rrdb_channels': state['encoder.0.0.conv_first.weight'].shape[0],
            'num_rrdbs': len(rrdbs), 'rrdb_growth_channels': growth}


def infer_gfpgan_clean(state, name='checkpoint'):
    """GFP-GAN's ``GFPGANv1Clean`` options from a state dict's shapes; ``input_is_latent`` is not stored:
    True, as GFP-GAN's released models and its ``GFPGANer`` use it."""
    config, _ = _stylegan(state, 'stylegan_decoder.', name, 2)
    sft = state['condition_scale.0.2.weight'].shape[0] == state['condition_scale.0.0.weight'].shape[0]
    different_w = state['final_linear.weight'].shape[0] != config['num_style_feat']
    return {**config, 'input_is_latent': True, 'different_w': different_w, 'sft_half': sft, 'fix_decoder': False}


INFER = {'SkipTransformer': infer_skip_transformer, 'GLEANStyleGAN2': infer_glean,
         'GFPGANv1Clean': infer_gfpgan_clean}


def infer_network_options(state, name='checkpoint'):
    """The ``network_g`` block (``type`` + options) that builds a network ``state`` loads into, from its keys
    and tensor shapes alone; :class:`~dlst_plugin.checkpoints.reading.CheckpointLayoutError` naming ``name`` when the
    arch is unknown or the shapes do not fit the inferred network."""
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError, listing
    arch = detect_arch(state)
    if arch is None:
        from dlst_plugin.checkpoints.glean_mmagic import check_not_legacy
        check_not_legacy(state, name)
        raise CheckpointLayoutError(
            f'{name} has no metadata and its keys match no known restorer ({", ".join(RESTORER_ARCHS)}); keys: '
            f'{listing(state)}. Pass --opt X.yml whose network_g builds it')
    try:
        options = {'type': arch, **INFER[arch](state, name)}
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'{name} looks like a {arch} but key {err} is missing or mis-shaped; pass --opt '
                                    'X.yml whose network_g builds it') from None
    if arch != 'GFPGANv1Clean':  # the plugin's own archs: check every shape now, naming what does not fit
        check_shapes(options, state, name)
    return options


def check_shapes(network_opt, state, name='checkpoint'):
    """Raise ``CheckpointLayoutError`` listing the keys of ``state`` that do not fit ``network_opt``'s network
    (built on the meta device: no memory, no initialisation)."""
    import torch

    from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
    from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
    from dlst_plugin.checkpoints.reading import check_state
    cls = {'SkipTransformer': SkipTransformer, 'GLEANStyleGAN2': GLEANStyleGAN2}[network_opt['type']]
    with torch.device('meta'):
        expected = {k: v.shape for k, v in cls(**without_type(network_opt)).state_dict().items()
                    if k in state or k not in OPTIONAL_KEYS}
    check_state(expected, state, f'{name} (inferred {network_opt["type"]} {without_type(network_opt)})')


def without_type(network_opt):
    return {k: v for k, v in network_opt.items() if k != 'type'}
