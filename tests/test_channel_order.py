"""Colour order of StyleGAN2 priors: a prior trained on BGR images (its ToRGB swapped by hand here, as MMagic's BGR
training leaves it) reads right with ``channel_order: bgr`` on every loader, and an MMagic training save read
without the option is warned about, naming the option."""
import logging
import types

import pytest
import torch
from test_checkpoints import TINY_D, TINY_G, images, randomised
from test_checkpoints_mmagic import mmagic_discriminator_state, mmagic_generator_state, wrapped

from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2
from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.cli.convert_stylegan2 import main as convert_main
from dlst_plugin.loading.priors import load_into

BANK = dict(num_style_feat=16, num_mlp=2, narrow=1 / 32)


def bgr_generator_state(generator):
    """``generator``'s weights as the same network trained on BGR images would hold them: ToRGB outputs reversed."""
    state = {k: v.clone() for k, v in generator.state_dict().items()}
    for key in state:
        layer, _, name = key.rpartition('.modulated_conv.weight') if 'modulated_conv.weight' in key else \
            key.rpartition('.bias')
        if layer.startswith(('to_rgb1', 'to_rgbs.')) and layer.count('.') <= 1 and not name:
            state[key] = state[key].flip(1)
    return state


def bgr_discriminator_state(discriminator):
    state = {k: v.clone() for k, v in discriminator.state_dict().items()}
    state['conv_body.0.0.weight'] = state['conv_body.0.0.weight'].flip(1)  # from-RGB conv: input channels
    return state


@pytest.fixture
def rgb():
    return randomised(PureStyleGAN2Generator(**TINY_G), 0)


@pytest.fixture
def bgr_file(rgb, tmp_path):
    path = tmp_path / 'bgr_prior.pth'
    torch.save({'params_ema': bgr_generator_state(rgb)}, path)
    return path


def same_weights(module, reference):
    reference = reference.state_dict()
    return all(torch.equal(value, reference[key]) for key, value in module.state_dict().items())


def test_hand_swapped_prior_draws_bgr_and_bgr_option_reads_it_back(rgb, bgr_file):
    as_is, swapped = PureStyleGAN2Generator(**TINY_G).eval(), PureStyleGAN2Generator(**TINY_G).eval()
    load_into(as_is, bgr_file, channel_order='rgb')
    load_into(swapped, bgr_file, channel_order='bgr')
    assert torch.allclose(images(as_is), images(rgb).flip(1), atol=1e-6)  # the hand-made prior draws BGR
    assert torch.equal(images(swapped), images(rgb)) and same_weights(swapped, rgb)


def test_restorer_and_degrader_loaders_take_the_option(rgb, bgr_file):
    st = SkipTransformer(out_size=16, **BANK, decoder_load_path=str(bgr_file), decoder_channel_order='bgr')
    glean = GLEANStyleGAN2(in_size=8, out_size=16, **BANK, rrdb_channels=4, num_rrdbs=1, rrdb_growth_channels=4,
                           bank_load_path=str(bgr_file), bank_channel_order='bgr')
    degrader = CoupledStyleGAN2(out_size=16, **BANK, pretrained=str(bgr_file), pretrained_channel_order='bgr')
    for network in (st.decoder, glean.bank, degrader.red):
        assert same_weights(network, rgb)
    assert torch.equal(degrader.green.to_rgb1.bias, rgb.to_rgb1.bias)


def test_gfpgan_decoder_takes_the_option(rgb, tmp_path):
    from restorer_configs import tiny_network

    from dlst_plugin.loading.networks import build_restorer
    net_opt = dict(tiny_network('gfpgan'), out_size=16, num_style_feat=16, narrow=1 / 32)
    prior = randomised(PureStyleGAN2Generator(**TINY_G, channel_multiplier=1), 0)
    torch.save({'params_ema': prior.state_dict()}, tmp_path / 'rgb.pth')
    torch.save({'params_ema': bgr_generator_state(prior)}, tmp_path / 'bgr.pth')
    from_rgb = build_restorer(dict(net_opt, decoder_load_path=str(tmp_path / 'rgb.pth')))
    from_bgr = build_restorer(dict(net_opt, decoder_load_path=str(tmp_path / 'bgr.pth'), decoder_channel_order='bgr'))
    assert same_weights(from_bgr.stylegan_decoder, from_rgb.stylegan_decoder)


def test_discriminator_from_path_channel_order_d(tmp_path):
    from dlst_plugin.models.adversarial_core import AdversarialModel
    rgb = randomised(PureStyleGAN2Discriminator(**TINY_D), 1)
    torch.save({'params': bgr_discriminator_state(rgb)}, tmp_path / 'bgr_d.pth')
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    model = types.SimpleNamespace(opt={'path': {'channel_order_d': 'bgr'}}, logger=logging.getLogger('test'))
    loaded = PureStyleGAN2Discriminator(**TINY_D).eval()
    AdversarialModel.load_discriminator(model, loaded, tmp_path / 'bgr_d.pth')
    with torch.no_grad():
        assert same_weights(loaded, rgb) and torch.equal(loaded(x), rgb(x))
        as_is = PureStyleGAN2Discriminator(**TINY_D).eval()
        load_into(as_is, tmp_path / 'bgr_d.pth')
        assert torch.allclose(as_is(x.flip(1)), rgb(x), atol=1e-5)  # it expects BGR input


def test_convert_command_swaps_generator_and_discriminator(rgb, tmp_path, capsys):
    d = randomised(PureStyleGAN2Discriminator(**TINY_D), 1)
    torch.save({'params_ema': bgr_generator_state(rgb), 'params_d': bgr_discriminator_state(d)}, tmp_path / 'in.pth')
    argv = ['-i', str(tmp_path / 'in.pth'), '-o', str(tmp_path / 'out.pth'), '--channel-order', 'bgr']
    assert convert_main(argv) == 0
    printed = capsys.readouterr().out
    assert '6 colour-swapped' in printed and '1 colour-swapped' in printed  # 3 ToRGBs x 2; D's first conv
    written = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert all(torch.equal(written['params_ema'][k], v) for k, v in rgb.state_dict().items())
    assert all(torch.equal(written['params_d'][k], v) for k, v in d.state_dict().items())


def mmagic_training_save(generator, discriminator):
    """An MMagic 1.x training save as mmengine writes it, stripped of its logs and optimizer state."""
    ema = mmagic_generator_state(generator)
    state = {'generator_ema.steps': torch.tensor(10), **wrapped(ema, 'generator_ema.module.'),
             **wrapped(ema, 'generator.'), **wrapped(mmagic_discriminator_state(discriminator), 'discriminator.')}
    return {'meta': {'iter': 10, 'mmengine_version': '0.10.7'}, 'state_dict': state}


@pytest.mark.parametrize('how', ['decoder', 'discriminator', 'convert'])
def test_mmagic_training_save_without_the_option_warns_naming_it(rgb, tmp_path, caplog, how):
    d = randomised(PureStyleGAN2Discriminator(**TINY_D), 1)
    torch.save(mmagic_training_save(rgb, d), tmp_path / 'mmagic_train.pth')
    with caplog.at_level(logging.WARNING):
        if how == 'decoder':
            SkipTransformer(out_size=16, **BANK, decoder_load_path=str(tmp_path / 'mmagic_train.pth'))
            option = 'network_g.decoder_channel_order'
        elif how == 'discriminator':
            model = types.SimpleNamespace(opt={'path': {}}, logger=logging.getLogger('test'))
            from dlst_plugin.models.adversarial_core import AdversarialModel
            AdversarialModel.load_discriminator(model, PureStyleGAN2Discriminator(**TINY_D),
                                                tmp_path / 'mmagic_train.pth')
            option = 'path.channel_order_d'
        else:
            assert convert_main([str(tmp_path / 'mmagic_train.pth'), str(tmp_path / 'out.pth')]) == 0
            option = '--channel-order'
    assert 'mmagic_train.pth' in caplog.text and f'set {option}: bgr' in caplog.text
    assert 'mmengine 0.10.7' in caplog.text


def test_converted_official_weights_and_an_explicit_option_are_not_warned_about(rgb, tmp_path, caplog):
    torch.save({'state_dict': wrapped(mmagic_generator_state(rgb), 'generator_ema.')}, tmp_path / 'official.pth')
    d = randomised(PureStyleGAN2Discriminator(**TINY_D), 1)
    torch.save(mmagic_training_save(rgb, d), tmp_path / 'mmagic_train.pth')
    with caplog.at_level(logging.WARNING):
        load_into(PureStyleGAN2Generator(**TINY_G), tmp_path / 'official.pth')
        load_into(PureStyleGAN2Generator(**TINY_G), tmp_path / 'mmagic_train.pth', channel_order='rgb')
    assert not caplog.records


def test_a_bad_value_names_the_option(bgr_file):
    with pytest.raises(ValueError, match="network_g.bank_channel_order must be 'rgb' or 'bgr'.*got 'brg'"):
        GLEANStyleGAN2(in_size=8, out_size=16, **BANK, num_rrdbs=0, bank_load_path=str(bgr_file),
                       bank_channel_order='brg')


def test_option_check_accepts_the_channel_order_keys():
    from helpers import REPO
    from restorer_configs import tiny_network

    from dlst_plugin.options.check import check_options, read_option_file
    opt = read_option_file(REPO / 'options' / 'train_dlst.yml')
    opt['network_g']['decoder_channel_order'] = 'bgr'
    opt['path']['channel_order_d'] = 'bgr'
    check_options(opt, is_train=True, source='train_dlst.yml')
    opt['network_g'] = dict(tiny_network('gfpgan'), decoder_channel_order='bgr')  # read by the plugin, not GFP-GAN
    check_options(opt, is_train=True, source='train_dlst.yml')
