"""GLEANStyleGAN2: shapes, determinism, gradient flow, bank loading and freezing, MMagic's structure and
forward order, the in_size == out_size extension, and the options of the former network."""
import logging

import pytest
import torch

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.errors import CheckpointLayoutError

BANK = dict(num_style_feat=16, num_mlp=2, narrow=1 / 32)
TRUNK = dict(rrdb_channels=8, num_rrdbs=2, rrdb_growth_channels=4)


def tiny_glean(in_size=32, out_size=32, **kwargs):
    torch.manual_seed(0)
    return GLEANStyleGAN2(in_size=in_size, out_size=out_size, **{**BANK, **TRUNK, **kwargs})


def images(size, batch=2, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def glean_by_hand(net, x):
    """MMagic's GLEANStyleGANv2.forward written out step by step on ``net``'s modules (in_size < out_size):
    encoder features, fusion into the bank's feature before each up-sampling conv from 4 px to in_size,
    bank features above in_size into the decoder."""
    feats, out = [], x
    for block in net.encoder:
        out = block(out)
        feats.append(out)
    feats = feats[::-1]
    latent, feats = feats[0].view(x.shape[0], -1, net.num_style_feat), feats[1:]
    bank, noise = net.bank, net.bank.fixed_noise()
    out = bank.style_conv1(bank.constant_input(x.shape[0]), latent[:, 0], noise=noise[0])
    index, kept = 1, []
    for up, conv, n1, n2 in zip(bank.style_convs[::2], bank.style_convs[1::2], noise[1::2], noise[2::2]):
        if out.shape[2] <= net.in_size:
            out = net.fusion_out[(index - 1) // 2](torch.cat([out, feats[(index - 1) // 2]], 1))
        out = conv(up(out, latent[:, index], noise=n1), latent[:, index + 1], noise=n2)
        if out.shape[2] > net.in_size:
            kept.append(out)
        index += 2
    hr = feats[-1]
    for i, block in enumerate(net.decoder):
        hr = block(torch.cat([hr, kept[i - 1]], 1) if i else hr)
    return hr


@pytest.mark.parametrize('in_size, out_size', [(32, 32), (16, 64), (4, 8)])
def test_output_shape_finite_and_deterministic(in_size, out_size):
    net = tiny_glean(in_size, out_size)
    x = images(in_size)
    with torch.no_grad():
        out, again = net(x), net.train()(x)  # the bank's stored noise, in training too (MMagic's)
    assert out.shape == (2, 3, out_size, out_size) and out.dtype == x.dtype
    assert torch.isfinite(out).all() and out.std() > 0
    assert torch.equal(out, again)


def test_forward_is_mmagics_order():
    net = tiny_glean(8, 32).eval()
    for layer in net.bank.style_convs:
        layer.weight.data.fill_(0.5)  # noise strength: the stored noise must be the one used
    x = images(8)
    with torch.no_grad():
        assert (net(x) - glean_by_hand(net, x)).abs().max() <= 1e-6


def test_structure_is_mmagics():
    """Module widths as MMagic builds them, from the bank's channel table (in 8 px, out 32 px)."""
    net = tiny_glean(8, 32)
    ch = {4: 16, 8: 16, 16: 16, 32: 16}  # narrow 1/32 of StyleGAN2's 512
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith('bank.')}
    assert shapes['encoder.0.0.conv_first.weight'] == (8, 3, 3, 3)
    assert shapes['encoder.0.0.body.1.rdb3.conv5.weight'] == (8, 8 + 4 * 4, 3, 3)
    assert shapes['encoder.0.1.weight'] == (ch[8], 8, 3, 3)
    assert shapes['encoder.1.0.weight'] == (ch[4], ch[8], 3, 3)
    assert shapes['encoder.1.2.weight'] == (ch[4], ch[4], 3, 3)
    assert shapes['encoder.2.3.weight'] == (net.bank.num_latent * 16, 16 * ch[4])  # 4 px: conv, flatten, linear
    assert [shapes[f'fusion_out.{i}.weight'] for i in range(2)] == [(ch[4], 2 * ch[4], 3, 3), (ch[8], 2 * ch[8], 3, 3)]
    assert shapes['fusion_skip.1.weight'] == (3, ch[8] + 3, 3, 3)
    assert shapes['decoder.0.upsample_conv.weight'] == (4 * ch[16], ch[8], 3, 3)
    assert shapes['decoder.1.upsample_conv.weight'] == (4 * ch[32], 2 * ch[16], 3, 3)
    assert shapes['decoder.2.0.weight'] == (64, 2 * ch[32], 3, 3) and shapes['decoder.2.2.weight'] == (3, 64, 3, 3)
    assert 'fusion_out.2.weight' not in shapes and 'decoder.3.0.weight' not in shapes


def test_equal_sizes_hand_the_banks_output_size_feature_to_the_head():
    """The plugin's extension (MMagic refuses in_size == out_size): fusion up to in_size / 2, the head sees the
    encoder's and the bank's out_size features."""
    net = tiny_glean(16, 16)
    assert net.fusion_resolutions == [4, 8] and net.bank_feature_resolutions == [16]
    assert tuple(net.decoder[0][0].weight.shape) == (64, 2 * 16, 3, 3)
    x = images(16)
    with torch.no_grad():
        before = net(x)
        net.bank.style_convs[-1].modulated_conv.weight.add_(0.5)  # the bank's last conv reaches the output
        assert not torch.allclose(before, net(x))


@pytest.mark.parametrize('fix_bank', [True, False])
def test_gradients_reach_every_trainable_parameter(fix_bank):
    net = tiny_glean(16, 32, fix_bank=fix_bank)
    net(images(16)).mean().backward()
    named = dict(net.named_parameters())
    trainable = {name for name, p in named.items() if p.requires_grad}
    assert {id(p) for p in net.trainable_parameters()} == {id(named[n]) for n in trainable}
    no_grad = [n for n in trainable if named[n].grad is None or not torch.isfinite(named[n].grad).all()]
    assert not no_grad
    never = ('bank.style_mlp.', 'bank.to_rgb', 'fusion_skip.')  # never reach the output: always frozen
    assert not any(named[n].requires_grad for n in named if n.startswith(never))
    bank = {n for n in trainable if n.startswith('bank.')}
    groups = net.param_groups()
    assert {id(p) for p in groups['bank']} == {id(named[n]) for n in bank}
    assert {id(p) for p in groups['encoder']} == {id(named[n]) for n in trainable - bank}
    if fix_bank:
        assert not bank and groups['bank'] == []
    else:
        assert bank == {n for n in named if n.startswith(('bank.style_conv', 'bank.constant_input'))}
    assert GLEANStyleGAN2.LR_FACTORS == {'bank': 0.1}


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for use_checkpoint in (False, True):
        net = tiny_glean(8, 16, use_checkpoint=use_checkpoint)
        net(images(8)).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.trainable_parameters()]))
    assert net.use_checkpoint and torch.allclose(grads[0], grads[1], atol=1e-6)


def test_bank_loads_checkpoint_strictly(tmp_path):
    torch.manual_seed(3)
    saved = PureStyleGAN2Generator(32, **BANK).state_dict()
    path = tmp_path / 'bank.pth'
    torch.save({'params_ema': saved}, path)
    state = tiny_glean(bank_load_path=str(path)).bank.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_bank_rejects_mismatched_checkpoint(tmp_path):
    path = tmp_path / 'wide.pth'
    torch.save({'params_ema': PureStyleGAN2Generator(32, **{**BANK, 'narrow': 1 / 16}).state_dict()}, path)
    with pytest.raises(CheckpointLayoutError):
        tiny_glean(bank_load_path=str(path))


@pytest.mark.parametrize('shape', [(1, 3, 64, 64), (1, 1, 16, 16), (3, 16, 16)])
def test_bad_input_names_expected_size(shape):
    message = (r'GLEANStyleGAN2\(in_size=16\) expects images of shape \(batch, 3, 16, 16\) in \[-1, 1\]; got '
               + r'\(' + ', '.join(map(str, shape)) + r'\)\. Resize or align faces to 16x16 first\.')
    with pytest.raises(ValueError, match=message):
        tiny_glean(16, 32)(torch.zeros(shape))


def test_sizes_are_checked():
    with pytest.raises(ValueError, match='in_size'):
        GLEANStyleGAN2(in_size=24, out_size=32, **BANK)
    with pytest.raises(ValueError, match='must not exceed'):
        GLEANStyleGAN2(in_size=64, out_size=32, **BANK)


def test_options_of_the_former_network_say_what_changed(caplog):
    with caplog.at_level(logging.WARNING):
        net = tiny_glean(16, 16, num_first_blocks=1, encoder_narrow=1)  # the shipped Table 1 files' values
    assert 'num_first_blocks=1 is ignored' in caplog.text and 'num_rrdbs' in caplog.text
    assert 'num_first_blocks' not in net.hyperparameters
    with pytest.raises(ValueError, match=r"encoder_narrow=0.5 is no longer supported: the encoder's widths are the "
                                         r"bank's"):
        tiny_glean(16, 16, encoder_narrow=0.5)


def test_hyperparameters_hold_every_constructor_argument():
    net = tiny_glean(8, 16)
    assert net.hyperparameters == {'in_size': 8, 'out_size': 16, **BANK, 'channel_multiplier': 2, 'lr_mlp': 0.01,
                                   **TRUNK, 'bank_load_path': None, 'bank_layout': 'auto',
                                   'bank_channel_order': None, 'fix_bank': True, 'use_checkpoint': False}


def test_built_through_basicsr_registry():
    from basicsr.archs import build_network
    net = build_network({'type': 'GLEANStyleGAN2', 'in_size': 16, 'out_size': 32, **BANK, **TRUNK})
    assert isinstance(net, GLEANStyleGAN2) and (net.in_size, net.out_size) == (16, 32)
    with torch.no_grad():
        assert net.eval()(images(16, batch=1)).shape == (1, 3, 32, 32)
