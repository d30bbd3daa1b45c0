"""What reaches an arch's constructor, and where the plugin's loaders find a restorer's weights: the keys the
plugin reads itself (GFP-GAN's ``decoder_channel_order``) never reach GFP-GAN; a network an MMagic editor saved is
found at the top level as well as in mmengine's ``state_dict``, by ``load_restorer`` and spandrel alike."""
import pytest
import torch
import yaml
from restorer_configs import tiny_network
from tiny_restorers import TINY_ST, build

from dlst_plugin.errors import short_reason
from dlst_plugin.loading.networks import load_restorer, restorer_weights
from dlst_plugin.loading.shapes import check_shapes, constructor_options


def write_option_file(path, network):
    path.write_text(yaml.safe_dump({'name': 'restore', 'network_g': network}))
    return path


def test_check_shapes_takes_gfpgan_clean_options_with_the_decoder_channel_order():
    net_opt = dict(tiny_network('gfpgan'), decoder_channel_order='bgr')
    state = build(tiny_network('gfpgan')).state_dict()
    check_shapes(net_opt, state, 'gfpgan.pth')  # raised "unexpected keyword argument" before


def test_restore_style_load_of_gfpgan_clean_with_an_option_file_setting_the_channel_order(tmp_path):
    net_opt = tiny_network('gfpgan')
    net = build(net_opt)
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'gfpgan.pth')
    opt = write_option_file(tmp_path / 'train_gfpgan.yml', dict(net_opt, decoder_channel_order='bgr',
                                                                decoder_load_path='prior_not_read.pth'))
    loaded, options = load_restorer(tmp_path / 'gfpgan.pth', opt)
    assert options['decoder_channel_order'] == 'bgr' and options['decoder_load_path'] is None
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x, randomize_noise=False)[0], net(x, randomize_noise=False)[0])


def test_constructor_options_drop_what_the_plugin_reads_and_keep_what_the_arch_takes():
    gfpgan = dict(tiny_network('gfpgan'), decoder_channel_order='bgr', decoder_load_path='prior.pth')
    assert not {'type', 'decoder_channel_order', 'decoder_load_path'} & set(constructor_options(gfpgan))
    assert not {'decoder_channel_order', 'decoder_load_path'} & set(constructor_options(gfpgan, init_files=True))
    st = dict(TINY_ST, decoder_channel_order='bgr', decoder_load_path='prior.pth')
    assert constructor_options(st)['decoder_channel_order'] == 'bgr'  # SkipTransformer reads it itself
    assert 'decoder_load_path' not in constructor_options(st)  # a checkpoint's weights replace the prior
    assert constructor_options(st, init_files=True)['decoder_load_path'] == 'prior.pth'  # training reads it


@pytest.mark.parametrize('layout', ['top level', 'state_dict', 'params'])
def test_a_network_an_mmagic_editor_saved_is_found_wherever_the_weights_sit(tmp_path, layout):
    import spandrel

    from dlst_plugin.integrations.spandrel import install
    install()
    net = build(TINY_ST)
    body = {'generator_ema.' + k: v for k, v in net.state_dict().items()}
    ckpt = {'top level': body, 'state_dict': {'state_dict': body}, 'params': {'params': body}}[layout]
    state, meta = restorer_weights(ckpt, 'iter_5000.pth')
    assert meta is None and set(state) == set(net.state_dict())
    torch.save(ckpt, tmp_path / 'iter_5000.pth')
    loaded, options = load_restorer(tmp_path / 'iter_5000.pth')
    model = spandrel.ModelLoader().load_from_file(tmp_path / 'iter_5000.pth')
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        assert options['type'] == 'SkipTransformer' and torch.equal(loaded(x), net(x))
        assert torch.equal(model.model(x), net(x))


def test_a_bare_plugin_checkpoint_keeps_its_meta():
    from dlst_plugin.checkpoints.meta import network_metadata
    net = build(TINY_ST)
    state, meta = restorer_weights({'params_ema': net.state_dict(), 'meta': network_metadata(TINY_ST)}, 'net.pth')
    assert meta is not None and meta['arch'] == 'SkipTransformer' and set(state) == set(net.state_dict())


def test_a_misspelt_channel_order_of_a_gfpgan_clean_prior_is_refused(tmp_path):
    from basicsr.archs import build_network

    import dlst_plugin  # noqa: F401
    from dlst_plugin.loading.priors import load_clean_decoder
    net = build_network(tiny_network('gfpgan'))
    torch.save({'params_ema': net.stylegan_decoder.state_dict()}, tmp_path / 'clean.pth')  # gfpgan_clean layout
    with pytest.raises(ValueError, match=r"network_g\.decoder_channel_order must be 'rgb' or 'bgr'.*'brg'"):
        load_clean_decoder(net, tmp_path / 'clean.pth', 'brg')


def test_a_bgr_gfpgan_clean_prior_is_swapped_and_an_rgb_one_loads_as_it_is(tmp_path):
    from basicsr.archs import build_network

    import dlst_plugin  # noqa: F401
    from dlst_plugin.loading.priors import load_clean_decoder
    prior = build_network(tiny_network('gfpgan')).stylegan_decoder.state_dict()
    torch.save({'params_ema': prior}, tmp_path / 'clean.pth')
    as_rgb, as_bgr = (build_network(tiny_network('gfpgan')) for _ in range(2))
    load_clean_decoder(as_rgb, tmp_path / 'clean.pth')
    load_clean_decoder(as_bgr, tmp_path / 'clean.pth', 'bgr')
    assert all(torch.equal(v, prior[k]) for k, v in as_rgb.stylegan_decoder.state_dict().items())
    rgb_weight = 'to_rgbs.0.modulated_conv.weight'
    assert torch.equal(as_bgr.stylegan_decoder.state_dict()[rgb_weight], prior[rgb_weight].flip(1))


def test_face_restorer_takes_its_sizes_from_the_network_unless_given():
    from dlst_plugin.inference.face_restorer import FaceRestorer
    net = build(TINY_ST)
    restorer = FaceRestorer(net)
    assert (restorer.in_size, restorer.face_size) == (32, 32)
    restorer = FaceRestorer(net, face_size=64, in_size=16)
    assert (restorer.in_size, restorer.face_size) == (16, 64)


def test_short_reason_is_one_line_within_the_limit():
    assert short_reason(RuntimeError('first line\nsecond line')) == 'first line'
    assert short_reason(EOFError()) == 'EOFError'
    assert short_reason(ValueError('x' * 300), 20) == 'x' * 17 + '...'
