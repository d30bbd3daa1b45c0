"""GLEANStyleGAN2: shapes, determinism, gradient flow, bank loading and freezing, the synthesis rgb_hook."""
import pytest
import torch

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.checkpoints import CheckpointLayoutError

BANK = dict(num_style_feat=16, num_mlp=2, narrow=1 / 32)


def tiny_glean(in_size=32, out_size=32, **kwargs):
    torch.manual_seed(0)
    return GLEANStyleGAN2(in_size=in_size, out_size=out_size, **{**BANK, **kwargs})


def images(size, batch=2, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize('in_size, out_size', [(32, 32), (16, 64)])
def test_output_shape_finite_and_deterministic_in_eval(in_size, out_size):
    net = tiny_glean(in_size, out_size).eval()
    x = images(in_size)
    with torch.no_grad():
        out, again = net(x), net(x)
    assert out.shape == (2, 3, out_size, out_size) and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)


def test_training_mode_draws_fresh_noise():
    net = tiny_glean()
    for layer in net.bank.style_convs:
        layer.weight.data.fill_(1.0)  # noise strength
    with torch.no_grad():
        assert not torch.equal(net(images(32)), net(images(32)))


@pytest.mark.parametrize('fix_bank', [True, False])
def test_gradients_reach_every_trainable_parameter(fix_bank):
    net = tiny_glean(16, 32, fix_bank=fix_bank)
    net(images(16)).mean().backward()
    named = dict(net.named_parameters())
    trainable = {name for name, p in named.items() if p.requires_grad}
    assert {id(p) for p in net.trainable_parameters()} == {id(named[n]) for n in trainable}
    no_grad = [n for n in trainable if named[n].grad is None or not torch.isfinite(named[n].grad).all()]
    assert not no_grad
    assert not any(p.requires_grad for p in net.bank.style_mlp.parameters())  # mapping: always frozen
    bank = {n for n in trainable if n.startswith('bank.')}
    groups = net.param_groups()
    assert {id(p) for p in groups['bank']} == {id(named[n]) for n in bank}
    assert {id(p) for p in groups['encoder']} == {id(named[n]) for n in trainable - bank}
    if fix_bank:
        assert not bank and groups['bank'] == []
    else:
        assert bank == {n for n in named if n.startswith('bank.') and not n.startswith('bank.style_mlp.')}
    assert GLEANStyleGAN2.LR_FACTORS == {'bank': 0.1}


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


def test_synthesis_rgb_hook():
    torch.manual_seed(0)
    gen = PureStyleGAN2Generator(32, **BANK).eval()
    latent = torch.randn(2, gen.num_latent, 16)
    seen = []

    def identity(resolution, skip):
        seen.append(resolution)
        return skip

    with torch.no_grad():
        plain = gen.synthesis(latent, gen.fixed_noise())
        same = gen.synthesis(latent, gen.fixed_noise(), rgb_hook=None)
        hooked = gen.synthesis(latent, gen.fixed_noise(), rgb_hook=identity)
        shifted = gen.synthesis(latent, gen.fixed_noise(), rgb_hook=lambda res, skip: skip + 0.5)
    assert torch.equal(plain, same) and torch.equal(plain, hooked)
    assert seen == [4, 8, 16, 32] and all(type(r) is int for r in seen)
    assert not torch.allclose(plain, shifted)


def test_built_through_basicsr_registry():
    from basicsr.archs import build_network
    net = build_network({'type': 'GLEANStyleGAN2', 'in_size': 16, 'out_size': 32, **BANK})
    assert isinstance(net, GLEANStyleGAN2) and (net.in_size, net.out_size) == (16, 32)
    with torch.no_grad():
        assert net.eval()(images(16, batch=1)).shape == (1, 3, 32, 32)
