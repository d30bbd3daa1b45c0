"""Networks and tensor shapes: the options that build the network a state dict loads into (when a checkpoint
has no metadata), and the check that a state dict fits a network, on the meta device (no memory, no
initialisation), before anything real is built (docs/design.md#checkpoints).

* StyleGAN2: :func:`infer_generator_config` / :func:`infer_discriminator_config` from a BasicSR-layout state;
* restorers: :func:`infer_network_options` (the arch from keys only it has, then sizes, widths, block counts,
  attention, skip layers, GLEAN's in/out size); the Skip-Transformer's attention patch sizes travel in a
  buffer (``attention_patch_sizes``); a file saved before it existed gets the default sizes, with a warning;
  what else leaves no trace in the shapes (``lr_mlp``) takes its default;
* :func:`check_shapes` - every key of a state dict against the network an options block builds.
"""
import logging

import torch

from dlst_plugin.archs.external import CLEAN_DECODER_ARCHS, PLUGIN_READ_KEYS
from dlst_plugin.archs.skip_transformer_arch import PATCH_SIZES_KEY, patch_size_overrides, patch_sizes_from_buffer
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.archs.stylegan2_layers import stylegan2_channels
from dlst_plugin.checkpoints.glean_mmagic import check_not_legacy
from dlst_plugin.checkpoints.meta import INIT_FILE_KEYS, RESTORER_ARCHS, detect_arch
from dlst_plugin.checkpoints.reading import key_indices, listing, sub_state
from dlst_plugin.errors import CheckpointLayoutError

DEFAULT_GROWTH = 32  # GLEAN's rrdb_growth_channels (ESRGAN's): no trace in a trunk without RRDBs
OPTIONAL_KEYS = ('attention_patch_sizes', )  # buffers that files saved before they existed lack (loads fill them)
logger = logging.getLogger(__name__)


def compare_state(expected_shapes, state):
    """(missing, unexpected, mismatched) keys of ``state`` against ``{key: shape}``."""
    missing = [k for k in expected_shapes if k not in state]
    unexpected = [k for k in state if k not in expected_shapes]
    mismatched = [f'{k} {tuple(state[k].shape)} vs {tuple(shape)}' for k, shape in expected_shapes.items()
                  if k in state and tuple(state[k].shape) != tuple(shape)]
    return missing, unexpected, mismatched


def check_state(expected_shapes, state, what, strict=True):
    """Raise :class:`CheckpointLayoutError` listing every key that does not fit (shape mismatches
    always; missing/unexpected keys when ``strict``, else they are logged)."""
    missing, unexpected, mismatched = compare_state(expected_shapes, state)
    problems = [f'{label} ({len(keys)}): {listing(keys)}' for label, keys in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('shape mismatches (checkpoint vs network)', mismatched)) if keys]
    if mismatched or (strict and problems):
        raise CheckpointLayoutError(f'{what} does not fit the network:\n  ' + '\n  '.join(problems))
    if problems:
        logger.warning('%s loaded partially:\n  %s', what, '\n  '.join(problems))


def _channel_config(widths, what):
    """channel_multiplier and narrow that reproduce ``{resolution: width}`` (StyleGAN2's table)."""
    narrow = widths[4] / 512
    multiplier = 2
    if max(widths) >= 64:
        multiplier = widths[64] / (256 * narrow)
        multiplier = int(multiplier) if multiplier == int(multiplier) else multiplier
    table = stylegan2_channels(multiplier, narrow)
    if narrow <= 0 or any(table[res] != width for res, width in widths.items()):
        raise CheckpointLayoutError(f'{what}: feature widths {widths} do not follow StyleGAN2\'s channel table')
    return {'channel_multiplier': multiplier, 'narrow': 1 if narrow == 1 else narrow}


def infer_generator_config(state):
    """Constructor arguments of ``PureStyleGAN2Generator`` matching a BasicSR-layout state dict
    (``lr_mlp`` and ``resample_kernel`` leave no trace in the shapes: defaults apply)."""
    try:
        num_style_feat = state['style_conv1.modulated_conv.modulation.weight'].shape[1]
        widths = {4: state['constant_input.weight'].shape[1]}
        rgbs = key_indices(state, r'to_rgbs\.(\d+)\.modulated_conv\.weight')
        widths.update({2**(i + 3): state[f'to_rgbs.{i}.modulated_conv.weight'].shape[2] for i in rgbs})
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'cannot infer the generator size: key {err} missing or mis-shaped') from None
    num_mlp = len(key_indices(state, r'style_mlp\.(\d+)\.weight'))
    return {'out_size': 2**(len(rgbs) + 2), 'num_style_feat': num_style_feat, 'num_mlp': num_mlp,
            **_channel_config(widths, 'generator')}


def infer_discriminator_config(state):
    """Constructor arguments of ``PureStyleGAN2Discriminator`` matching a BasicSR-layout state dict."""
    try:
        blocks = key_indices(state, r'conv_body\.(\d+)\.conv2\.1\.weight')
        log_size = len(blocks) + 2
        widths = {2**log_size: state['conv_body.0.0.weight'].shape[0], 4: state['final_conv.0.weight'].shape[0]}
        widths.update({2**(log_size - i): state[f'conv_body.{i}.conv2.1.weight'].shape[0] for i in blocks})
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'cannot infer the discriminator size: key {err} missing or mis-shaped') \
            from None
    return {'out_size': 2**log_size, **_channel_config(widths, 'discriminator')}


def expected_shapes(kind, config):
    """``{key: shape}`` of a Pure* network built with ``config``, without allocating its weights."""
    cls = PureStyleGAN2Generator if kind == 'generator' else PureStyleGAN2Discriminator
    with torch.device('meta'):
        return {k: v.shape for k, v in cls(**config).state_dict().items()}


def _encoder_narrow(widths, reference, name):
    """``encoder_narrow`` such that ``max(1, int(reference[r] * it)) == widths[r]`` at every resolution."""
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
    and tensor shapes alone; :class:`~dlst_plugin.errors.CheckpointLayoutError` naming ``name`` when the arch is
    unknown. Every key is checked against the inferred network where it is built
    (:func:`dlst_plugin.loading.networks.build_loaded` runs :func:`check_shapes` first)."""
    arch = detect_arch(state)
    if arch is None:
        check_not_legacy(state, name)
        raise CheckpointLayoutError(
            f'{name} has no metadata and its keys match no known restorer ({", ".join(RESTORER_ARCHS)}); keys: '
            f'{listing(state)}. Pass --opt X.yml whose network_g builds it')
    try:
        options = {'type': arch, **INFER[arch](state, name)}
    except (KeyError, IndexError) as err:
        raise CheckpointLayoutError(f'{name} looks like a {arch} but key {err} is missing or mis-shaped; pass --opt '
                                    'X.yml whose network_g builds it') from None
    return options


def check_shapes(network_opt, state, name='checkpoint', strict=True):
    """Raise ``CheckpointLayoutError`` listing the keys of ``state`` that do not fit ``network_opt``'s network, built on
    the meta device (no memory, no initialisation, no file read: the options' init files are left out)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    options = constructor_options(network_opt)
    try:
        with torch.device('meta'):
            net = ARCH_REGISTRY.get(network_opt['type'])(**options)
    except (KeyError, TypeError, ValueError, ArithmeticError, NotImplementedError, RuntimeError) as err:
        raise CheckpointLayoutError(f'{name}: network_g {network_opt.get("type")!r} {options} cannot be built: '
                                    f'{str(err)[:300]}') from None
    expected = {k: v.shape for k, v in net.state_dict().items() if k in state or k not in OPTIONAL_KEYS}
    try:
        check_state(expected, state, name, strict)
    except CheckpointLayoutError as err:
        detail = str(err).split(' does not fit the network:', 1)[-1]
        raise CheckpointLayoutError(f'{name} does not fit network_g {network_opt["type"]} {options} (wrong --opt, '
                                    f'or a damaged file?):{detail}') from None


def constructor_options(network_opt, init_files=False):
    """The keyword arguments of ``network_opt``'s arch: ``type`` left out, and the keys the plugin reads itself
    for that arch (GFP-GAN's clean arch: its ``decoder_load_path``, read with ``weights_only=True``, and
    ``decoder_channel_order``), and the files the network is initialised from (``INIT_FILE_KEYS``) unless
    ``init_files`` (a network built for training reads them; one that loads a checkpoint must not)."""
    dropped = {'type'}
    if network_opt.get('type') in CLEAN_DECODER_ARCHS:
        dropped.update(PLUGIN_READ_KEYS, ('decoder_load_path', ))
    if not init_files:
        dropped.update(INIT_FILE_KEYS)
    return {k: v for k, v in network_opt.items() if k not in dropped}
