"""Self-describing checkpoints: ``meta`` written and read back, options inferred from tensor shapes when it is
missing (Skip-Transformer, GLEAN, GFP-GAN's clean model), safetensors round trips, unreadable files named."""
import logging

import pytest
import torch
from tiny_restorers import TINY_GLEAN, TINY_ST, build, save_bare_checkpoint, save_training_checkpoint

from dlst_plugin.checkpoints.meta import HEADER_KEY, network_metadata, network_options, read_metadata
from dlst_plugin.checkpoints.reading import read_checkpoint, write_safetensors
from dlst_plugin.errors import CheckpointLayoutError
from dlst_plugin.loading.networks import RestoreSetupError, build_loaded, load_restorer
from dlst_plugin.loading.shapes import infer_network_options

ST_CONFIGS = {
    'tiny': {},
    'no_attention': {'attention': False},
    'other_skips': {'skip_resolutions': [4, 16]},
    'no_skips': {'skip_resolutions': []},
    'encoder_narrow': {'encoder_narrow': 0.5, 'num_first_blocks': 2},
    'wide_64px': {'out_size': 64, 'narrow': 1 / 16, 'channel_multiplier': 2, 'num_mlp': 3, 'num_style_feat': 48,
                  'encoder_narrow': 0.75, 'num_first_blocks': 1, 'skip_resolutions': [8, 32]},
}
GLEAN_CONFIGS = {
    'in_lt_out': {},
    'in_eq_out': {'in_size': 32},
    'bigger_trunk': {'in_size': 8, 'rrdb_channels': 12, 'num_rrdbs': 3, 'rrdb_growth_channels': 6, 'num_mlp': 1},
    'no_rrdb': {'in_size': 4, 'num_rrdbs': 0, 'rrdb_growth_channels': 32},
}
INIT_OPTIONS = ('decoder_channel_order', 'bank_channel_order', 'bank_layout')
INIT_FILES = ('decoder_load_path', 'bank_load_path')


def expected(net_opt, inferred):
    """``net_opt`` with the keys the inference leaves out (defaults, init files) taken from ``inferred``."""
    return {**{k: v for k, v in net_opt.items() if k not in INIT_FILES}, **{k: inferred[k] for k in inferred
                                                                            if k not in net_opt}}


def assert_same_output(net, other, size):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), other(x))


@pytest.mark.parametrize('config', ST_CONFIGS, ids=list(ST_CONFIGS))
def test_skip_transformer_without_meta_loads_by_inference(tmp_path, config):
    net_opt = {**TINY_ST, **ST_CONFIGS[config]}
    path, net = save_bare_checkpoint(tmp_path / 'st.pth', net_opt)
    loaded, options = load_restorer(path)
    assert options == expected(net_opt, options)
    assert loaded.skip_resolutions == sorted(net_opt['skip_resolutions'])
    assert_same_output(net, loaded, net_opt.get('out_size', 32))


@pytest.mark.parametrize('config', GLEAN_CONFIGS, ids=list(GLEAN_CONFIGS))
def test_glean_without_meta_loads_by_inference(tmp_path, config):
    net_opt = {**TINY_GLEAN, **GLEAN_CONFIGS[config]}
    path, net = save_bare_checkpoint(tmp_path / 'glean.pth', net_opt, key=None)  # a flat state dict
    loaded, options = load_restorer(path)
    assert options == expected(net_opt, options)
    assert (loaded.in_size, loaded.out_size) == (net_opt['in_size'], net_opt['out_size'])
    assert_same_output(net, loaded, net_opt['in_size'])


def test_gfpgan_clean_without_meta_loads_by_inference(tmp_path):
    from restorer_configs import tiny_network
    net_opt = tiny_network('gfpgan')
    path, net = save_bare_checkpoint(tmp_path / 'gfpgan.pth', net_opt)
    loaded, options = load_restorer(path)
    assert options['type'] == 'GFPGANv1Clean' and options['narrow'] == net_opt['narrow']
    assert options['sft_half'] and options['different_w'] and options['num_mlp'] == 2
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x, randomize_noise=False)[0], loaded(x, randomize_noise=False)[0])


def test_patch_sizes_come_from_meta_from_the_buffer_and_default_with_a_warning(tmp_path, caplog):
    net_opt = {**TINY_ST, 'patch_sizes': {8: 2, 16: 4}}
    path, net = save_training_checkpoint(tmp_path / 'meta.pth', net_opt)
    with caplog.at_level(logging.WARNING):
        loaded, options = load_restorer(path)
    assert loaded.patch_sizes[8] == 2 and options['patch_sizes'] == {'8': 2, '16': 4} and not caplog.records
    assert_same_output(net, loaded, 32)
    bare, _ = save_bare_checkpoint(tmp_path / 'bare.pth', net_opt)  # weights only: the buffer carries them
    with caplog.at_level(logging.WARNING):
        rebuilt, options = load_restorer(bare)
    assert rebuilt.patch_sizes[8] == 2 and options['patch_sizes'] == {8: 2, 16: 4} and not caplog.records
    assert_same_output(net, rebuilt, 32)
    old = {k: v for k, v in net.state_dict().items() if k != 'attention_patch_sizes'}  # saved before the buffer
    torch.save({'params_ema': old}, tmp_path / 'old.pth')
    with caplog.at_level(logging.WARNING):
        guessed, _ = load_restorer(tmp_path / 'old.pth')
    assert guessed.patch_sizes[8] == 1 and 'patch size' in caplog.text and 'old.pth' in caplog.text


def test_meta_is_plain_data_and_names_the_network():
    meta = network_metadata({**TINY_ST, 'decoder_load_path': 'prior.pth', 'decoder_channel_order': 'bgr'})
    assert meta['arch'] == 'SkipTransformer' and meta['format'] == 1 and meta['image_range'] == [-1, 1]
    assert 'decoder_load_path' not in meta['options'] and meta['options']['skip_resolutions'] == [8, 16]
    assert not set(INIT_OPTIONS) & set(meta['options'])  # how the prior file was read is no network option
    assert read_metadata({'meta': meta}) == meta and network_options(meta)['type'] == 'SkipTransformer'


def test_option_file_overrides_meta(tmp_path):
    import yaml
    path, _ = save_training_checkpoint(tmp_path / 'st.pth', TINY_ST)
    (tmp_path / 'other.yml').write_text(yaml.safe_dump({'network_g': {**TINY_ST, 'attention': False}}))
    with pytest.raises(RestoreSetupError, match='does not fit network_g SkipTransformer'):
        load_restorer(path, tmp_path / 'other.yml')


def test_unknown_keys_say_to_pass_an_option_file(tmp_path):
    torch.save({'params': {'body.0.weight': torch.zeros(3)}}, tmp_path / 'other.pth')
    with pytest.raises(RestoreSetupError, match=r'other\.pth has no metadata.*body\.0\.weight.*--opt'):
        load_restorer(tmp_path / 'other.pth')


def test_degrader_meta_is_not_taken_for_a_restorer(tmp_path):
    meta = network_metadata({'type': 'CoupledStyleGAN2', 'out_size': 32})
    torch.save({'params': {'red.x': torch.zeros(1)}, 'meta': meta}, tmp_path / 'degrader.pth')
    with pytest.raises(RestoreSetupError, match='CoupledStyleGAN2, a degrader'):
        load_restorer(tmp_path / 'degrader.pth')


def test_inferred_shapes_are_checked(tmp_path):
    state = build(TINY_ST).state_dict()
    state['encoder.to_w.weight'] = torch.zeros(5, 5)
    with pytest.raises(CheckpointLayoutError, match=r'encoder\.to_w\.weight \(5, 5\)'):
        build_loaded(infer_network_options(state, 'odd.pth'), state, 'odd.pth')  # checked before it is built


@pytest.mark.parametrize('net_opt', [TINY_ST, TINY_GLEAN], ids=['st', 'glean'])
def test_safetensors_round_trip_keeps_weights_and_meta(tmp_path, net_opt):
    from safetensors import safe_open
    net = build(net_opt)
    meta = network_metadata(net_opt)
    write_safetensors(net.state_dict(), tmp_path / 'w.safetensors', meta)
    with safe_open(str(tmp_path / 'w.safetensors'), framework='pt') as f:
        assert HEADER_KEY in f.metadata() and f.metadata()['arch'] == net_opt['type']
    ckpt = read_checkpoint(tmp_path / 'w.safetensors')
    assert ckpt['meta'] == meta and ckpt['params_ema'].keys() == net.state_dict().keys()
    assert all(torch.equal(ckpt['params'][k], v) for k, v in net.state_dict().items())
    loaded, options = load_restorer(tmp_path / 'w.safetensors')
    assert options == network_options(meta)
    assert_same_output(net, loaded, net_opt.get('in_size', 32))


def test_foreign_safetensors_is_a_flat_state_dict(tmp_path):
    from safetensors.torch import save_file
    save_file({'a': torch.ones(2)}, str(tmp_path / 'x.safetensors'))
    assert list(read_checkpoint(tmp_path / 'x.safetensors')) == ['a']


@pytest.mark.parametrize('name, content, reason', [
    ('notes.pth', b'hello, not weights\n', "not a PyTorch checkpoint: it is a text file, starting 'hello, not"),
    ('notes.safetensors', b'{"a": 1}', "not a safetensors file: it is a text file, starting"),
    ('cut.safetensors', b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":', 'not a safetensors file or is truncated'),
])
def test_unreadable_files_give_a_reason(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointLayoutError, match=reason):
        read_checkpoint(tmp_path / name)
