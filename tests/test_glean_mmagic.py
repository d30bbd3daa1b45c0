"""GLEAN checkpoints saved by MMagic (``GLEANStyleGANv2`` inside its ``SRGAN`` editor) give the same image as the
same weights loaded natively: through the arch, ``load_restorer`` (dlst-restore, dlst-evaluate's restorers),
``dlst-restore`` itself and the spandrel adapter. The MMagic files are written here from MMagic's key names and
shapes (its modules spelled out below); scripts/check_against_mmagic.py runs MMagic itself."""
import cv2
import numpy as np
import pytest
import torch
from helpers import call_main
from test_checkpoints_mmagic import mmagic_generator_state

from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.stylegan2_layers import stylegan2_channels
from dlst_plugin.checkpoints.glean_mmagic import LEGACY_SIGNATURE
from dlst_plugin.loading.networks import RestoreSetupError, load_restorer

CONFIG = dict(in_size=16, out_size=32, num_style_feat=16, num_mlp=2, channel_multiplier=2, narrow=1 / 32,
              rrdb_channels=8, num_rrdbs=2, rrdb_growth_channels=4)


def mmagic_glean_shapes(in_size, out_size, channels, rrdb, num_rrdbs, growth, num_latent, style):
    """{key: shape} of MMagic's GLEANStyleGANv2 outside its bank, spelled from its module definitions."""
    shapes = {'encoder.0.0.conv_first.weight': (rrdb, 3, 3, 3), 'encoder.0.0.conv_body.weight': (rrdb, rrdb, 3, 3),
              'encoder.0.1.weight': (channels[in_size], rrdb, 3, 3)}
    for i in range(num_rrdbs):
        for j in (1, 2, 3):
            for k in range(5):
                shapes[f'encoder.0.0.body.{i}.rdb{j}.conv{k + 1}.weight'] = (rrdb if k == 4 else growth,
                                                                           rrdb + k * growth, 3, 3)
    encoder_res = [in_size >> i for i in range(in_size.bit_length() - 2)]  # in_size ... 4
    for index, res in enumerate(encoder_res, start=1):
        if res > 4:
            shapes[f'encoder.{index}.0.weight'] = (channels[res // 2], channels[res], 3, 3)
            shapes[f'encoder.{index}.2.weight'] = (channels[res // 2], channels[res // 2], 3, 3)
        else:
            shapes[f'encoder.{index}.0.weight'] = (channels[4], channels[4], 3, 3)
            shapes[f'encoder.{index}.3.weight'] = (num_latent * style, 16 * channels[4])
    for index, res in enumerate(encoder_res[::-1]):
        shapes[f'fusion_out.{index}.weight'] = (channels[res], 2 * channels[res], 3, 3)
        shapes[f'fusion_skip.{index}.weight'] = (3, channels[res] + 3, 3, 3)
    decoder_res = [in_size << i for i in range((out_size // in_size).bit_length())]
    for index, res in enumerate(decoder_res):
        width = channels[res] * (1 if res == in_size else 2)
        if res < out_size:
            shapes[f'decoder.{index}.upsample_conv.weight'] = (4 * channels[res * 2], width, 3, 3)
        else:
            shapes[f'decoder.{index}.0.weight'] = (64, width, 3, 3)
            shapes[f'decoder.{index}.2.weight'] = (3, 64, 3, 3)
    shapes.update({key[:-len('weight')] + 'bias': (shape[0], ) for key, shape in list(shapes.items())})
    return shapes


def native():
    torch.manual_seed(0)
    net = GLEANStyleGAN2(**CONFIG).eval()
    with torch.no_grad():
        for layer in net.bank.style_convs:
            layer.weight.fill_(0.3)  # noise strength (0 at init): the stored noise must travel too
    return net


def mmagic_state(net):
    """``net``'s weights with MMagic's names: the bank as MMagic's StyleGANv2Generator under ``generator.``."""
    state = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith('bank.')}
    state.update({'generator.' + k: v for k, v in mmagic_generator_state(net.bank).items()})
    return state


def srgan_save(state, prefix='generator.'):
    """What MMagic's CheckpointHook keeps of its SRGAN editor once stripped of logs and optimizer state."""
    body = {prefix + k: v for k, v in state.items()}
    body['discriminator.convs.0.0.conv.weight_orig'] = torch.zeros(16, 3, 1, 1)
    return {'meta': {'iter': 5000, 'mmengine_version': '0.10.7', 'experiment_name': 'glean'}, 'state_dict': body}


def faces(batch=2):
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_native_keys_and_shapes_are_mmagics():
    net = native()
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith('bank.')}
    channels = stylegan2_channels(2, 1 / 32)
    assert ours == mmagic_glean_shapes(16, 32, channels, 8, 2, 4, net.bank.num_latent, 16)


@pytest.mark.parametrize('prefix', ['generator.', 'generator_ema.', 'generator_ema.module.'])
def test_mmagic_save_restores_the_same_image(tmp_path, prefix):
    net = native()
    torch.save(srgan_save(mmagic_state(net), prefix), tmp_path / 'glean_mmagic.pth')
    loaded, options = load_restorer(tmp_path / 'glean_mmagic.pth')
    assert options == {'type': 'GLEANStyleGAN2', **{k: v for k, v in CONFIG.items()}}
    with torch.no_grad():
        assert torch.equal(loaded(faces()), net(faces()))


def test_bare_module_state_dict_loads(tmp_path):
    net = native()
    torch.save(mmagic_state(net), tmp_path / 'module.pth')
    loaded, _ = load_restorer(tmp_path / 'module.pth')
    with torch.no_grad():
        assert torch.equal(loaded(faces()), net(faces()))


def test_spandrel_reads_the_mmagic_save(tmp_path):
    import spandrel

    from dlst_plugin.integrations.spandrel import install
    install()
    net = native()
    torch.save(srgan_save(mmagic_state(net)), tmp_path / 'glean_mmagic.pth')
    model = spandrel.ModelLoader().load_from_file(tmp_path / 'glean_mmagic.pth')
    assert model.architecture.id == 'GLEANStyleGAN2' and model.scale == 2
    x = (faces() + 1) / 2
    with torch.no_grad():
        assert torch.equal(model.model(faces()), net(faces()))
        assert model(x).shape == (2, 3, 32, 32)


def test_dlst_restore_gives_the_same_faces_as_the_native_checkpoint(tmp_path):
    from dlst_plugin.checkpoints.meta import network_metadata
    from dlst_plugin.cli.restore import main
    net = native()
    torch.save(srgan_save(mmagic_state(net)), tmp_path / 'glean_mmagic.pth')
    torch.save({'params_ema': net.state_dict(), 'meta': network_metadata({'type': 'GLEANStyleGAN2', **CONFIG})},
               tmp_path / 'glean_native.pth')
    (tmp_path / 'in').mkdir()
    face = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'in' / 'face.png'), face)
    restored = {}
    for name in ('mmagic', 'native'):
        code, _, err = call_main(main, ['-i', tmp_path / 'in', '-o', tmp_path / name, '--model',
                                        tmp_path / f'glean_{name}.pth', '--aligned', '--device', 'cpu'])
        assert code == 0, err
        restored[name] = {p.relative_to(tmp_path / name): cv2.imread(str(p)) for p in (tmp_path / name).rglob('*.png')}
    assert restored['mmagic'] and restored['mmagic'].keys() == restored['native'].keys()
    assert all(np.array_equal(image, restored['native'][key]) for key, image in restored['mmagic'].items())


def test_former_plugin_glean_checkpoint_says_what_changed(tmp_path):
    state = {key: torch.zeros(1) for key in LEGACY_SIGNATURE}
    torch.save({'params_ema': state}, tmp_path / 'old_glean.pth')
    with pytest.raises(RestoreSetupError, match=r"old_glean\.pth was saved by dlst-plugin's former GLEANStyleGAN2 "
                                                r".*now is MMagic's GLEANStyleGANv2"):
        load_restorer(tmp_path / 'old_glean.pth')


@pytest.mark.parametrize('arch', ['st', 'glean'])
def test_plugin_network_trained_in_mmagics_editor_loads(tmp_path, arch):
    """options/mmagic/ trains the plugin's own networks in MMagic's SRGAN: its save keeps them under generator."""
    import spandrel
    from tiny_restorers import TINY_GLEAN, TINY_ST, build

    from dlst_plugin.integrations.spandrel import install
    install()
    net_opt = {'st': TINY_ST, 'glean': TINY_GLEAN}[arch]
    net = build(net_opt)
    torch.save(srgan_save(net.state_dict()), tmp_path / 'iter_5000.pth')
    loaded, options = load_restorer(tmp_path / 'iter_5000.pth')
    assert options['type'] == net_opt['type']
    model = spandrel.ModelLoader().load_from_file(tmp_path / 'iter_5000.pth')
    size = net_opt.get('in_size', net_opt['out_size'])
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x)) and torch.equal(model.model(x), net(x))
