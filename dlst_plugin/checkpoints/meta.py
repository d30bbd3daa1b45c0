"""What a checkpoint says about its network, so it can be rebuilt from the file alone.

Every ``net_g_*.pth`` of the plugin's models (and every file ``dlst-export`` writes) carries, next to
``params`` / ``params_ema``, a ``meta`` entry of plain data (loadable with ``torch.load(weights_only=True)``)::

    {'format': 1, 'arch': 'SkipTransformer', 'options': {...constructor options...},
     'image_range': [-1, 1], 'channels': 'RGB', 'plugin_version': '0.1.0'}

In a ``.safetensors`` file the same dict is JSON in the header's ``dlst_meta`` entry.

**Metadata is data about the network, never about files.** Checkpoints are untrusted input. The writer
leaves out every option that names a file or says how one is read (:data:`NOT_NETWORK_KEYS`: the files the
network was initialised from, their layout and channel order, the process settings); readers ignore the
same keys. A reader accepts only the options the arch's constructor knows, of the right type and within
bounds (:data:`OPTION_RULES`), and refuses anything else with one line naming the checkpoint; sizes are then
checked against the tensors before anything is built (:func:`dlst_plugin.loading.shapes.check_shapes`).

A checkpoint without ``meta`` (older files, other tools' copies, a bare state dict) is rebuilt from its
tensor shapes (:mod:`dlst_plugin.loading.shapes`).
"""
import json
import numbers

from dlst_plugin._package import __version__
from dlst_plugin.errors import CheckpointLayoutError

META_KEY = 'meta'
FORMAT = 1
HEADER_KEY = 'dlst_meta'  # safetensors header entry holding the JSON of ``meta``
MAX_HEADER = 64 * 1024  # a header entry larger than this is no metadata the plugin wrote
# network_* options that name a file or say how one is read, or set the process: the writer strips them, readers
# ignore them (one list for both)
INIT_FILE_KEYS = ('decoder_load_path', 'bank_load_path', 'pretrained')
NOT_NETWORK_KEYS = INIT_FILE_KEYS + ('decoder_channel_order', 'bank_channel_order', 'pretrained_channel_order',
                                     'bank_layout', 'pretrained_layout', 'use_checkpoint')
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
NOT_RESTORERS = {'CoupledStyleGAN2': 'a degrader (use it with dlst-generate-pairs)',
                 'PureStyleGAN2Generator': 'a StyleGAN2 generator (a prior: decoder_load_path / bank_load_path)',
                 'PureStyleGAN2Discriminator': 'a discriminator'}
KNOWN_ARCHS = RESTORER_ARCHS + tuple(NOT_RESTORERS)


def _number(lo, hi, whole=False, power_of_two=False):
    def check(v):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or (whole and int(v) != v) or not lo <= v <= hi:
            return f'a {"whole " if whole else ""}number in [{lo}, {hi}]'
        if power_of_two and int(v) & (int(v) - 1):
            return 'a power of 2'
        return None
    return check


def _flag(v):
    return None if isinstance(v, bool) else 'true or false'


def _list_of(item, most):
    def check(v):
        if not isinstance(v, (list, tuple)) or len(v) > most or any(item(x) for x in v):
            return f'a list of at most {most} entries, each {item(0) or item(1.0) or "valid"}'
        return None
    return check


def _patch_sizes(v):
    if v is None:
        return None
    if not isinstance(v, dict) or len(v) > 16:
        return 'a block of at most 16 resolution: patch size entries'
    size = _number(1, 4096, whole=True, power_of_two=True)
    for res, p in v.items():
        if size(int(res) if str(res).isdigit() else res) or _number(1, 4096, whole=True)(p):
            return 'resolution: patch size entries of whole numbers (powers of 2 up to 4096)'
    return None


SIZE = _number(4, 4096, whole=True, power_of_two=True)
# every option a network's metadata may hold, with what its value must be (bounds keep a crafted file from
# building a network of terabytes before its shapes are checked)
OPTION_RULES = {
    'out_size': SIZE, 'in_size': SIZE, 'num_style_feat': _number(1, 4096, whole=True),
    'num_mlp': _number(0, 32, whole=True), 'channel_multiplier': _number(1 / 64, 16), 'narrow': _number(1 / 4096, 4),
    'encoder_narrow': _number(1 / 4096, 4), 'num_first_blocks': _number(0, 64, whole=True),
    'rrdb_channels': _number(1, 1024, whole=True), 'num_rrdbs': _number(0, 64, whole=True),
    'rrdb_growth_channels': _number(1, 1024, whole=True), 'lr_mlp': _number(0, 100), 'truncation': _number(0, 2),
    'mixing_prob': _number(0, 1), 'num_mean_latent': _number(1, 1_000_000, whole=True),
    'stddev_group': _number(1, 64, whole=True), 'num_frozen_blocks': _number(0, 16, whole=True), 'attention': _flag,
    'fix_decoder': _flag, 'fix_bank': _flag,
    'input_is_latent': _flag, 'different_w': _flag, 'sft_half': _flag, 'patch_sizes': _patch_sizes,
    'skip_resolutions': _list_of(_number(4, 4096, whole=True, power_of_two=True), 16),
    'resample_kernel': _list_of(_number(-1e3, 1e3), 16),
}


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
    options = {k: _plain(v) for k, v in net_opt.items() if k != 'type' and k not in NOT_NETWORK_KEYS}
    return {'format': FORMAT, 'arch': str(net_opt['type']), 'options': options, 'image_range': [-1, 1],
            'channels': 'RGB', 'plugin_version': __version__}


def read_metadata(ckpt, name='checkpoint'):
    """The ``meta`` entry of a loaded checkpoint dict with its options checked (file and process keys dropped),
    None when it has none (older files); CheckpointLayoutError naming ``name`` when it is not what the plugin
    writes."""
    meta = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    if meta is None:
        return None
    arch = meta.get('arch') if isinstance(meta, dict) else None
    options = meta.get('options') if isinstance(meta, dict) else None
    if not isinstance(arch, str) or not isinstance(options, dict):
        raise _refused(name, 'it is not {arch, options} as the plugin writes it')
    if arch not in KNOWN_ARCHS:
        raise _refused(name, f'arch {arch[:40]!r} is none of {", ".join(KNOWN_ARCHS)}')
    kept = {}
    for key, value in options.items():
        if key in NOT_NETWORK_KEYS:
            continue  # a file or process setting: never taken from a checkpoint
        rule = OPTION_RULES.get(key)
        if rule is None:
            raise _refused(name, f'unknown option {str(key)[:40]!r}')
        problem = rule(value)
        if problem:
            raise _refused(name, f'option {key} must be {problem}')
        kept[key] = value
    return {**meta, 'options': kept}


def _refused(name, why):
    return CheckpointLayoutError(f'{name}: its metadata is refused ({why}); remove the meta entry (the network is '
                                 'then rebuilt from its tensor shapes) or pass --opt X.yml whose network_g builds it')


def network_options(meta):
    """The ``network_g`` block (``type`` + options) a checked ``meta`` entry describes."""
    return {'type': meta['arch'], **meta['options']}


def header_metadata(meta):
    """safetensors header entries (strings only) carrying ``meta``."""
    return {HEADER_KEY: json.dumps(meta, sort_keys=True), 'arch': str(meta['arch'])}


def metadata_from_header(header, name='checkpoint'):
    """``meta`` from a safetensors header (None when it has none), checked as :func:`read_metadata` checks it; a
    damaged, oversized or deeply nested entry is an error naming the file."""
    text = (header or {}).get(HEADER_KEY)
    if text is None:
        return None
    if len(text) > MAX_HEADER:
        raise _refused(name, f'its header entry {HEADER_KEY!r} is {len(text)} characters long')
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise CheckpointLayoutError(f'{name}: its header entry {HEADER_KEY!r} is not valid JSON '
                                    f'({str(err)[:80]}); re-export the file with dlst-export, or delete the entry '
                                    'to rebuild from tensor shapes') from None
    return read_metadata({META_KEY: meta}, name)


def detect_arch(state):
    """The restorer arch whose signature keys ``state`` holds, or None."""
    return next((arch for arch, keys in SIGNATURES.items() if all(k in state for k in keys)), None)
