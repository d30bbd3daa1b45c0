"""CoupledStyleGAN2: shared frozen mapping, frozen red and trainable green synthesis (paper 3.2.2)."""
import pytest
import torch

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.coupled_stylegan2_arch import CoupledCodes, CoupledStyleGAN2
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.errors import CheckpointLayoutError

TINY = dict(out_size=16, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=1 / 32)


def tiny(**kw):
    torch.manual_seed(0)
    return CoupledStyleGAN2(**TINY, **kw)


def test_red_and_green_outputs_are_identical_at_initialisation():
    net = tiny(mixing_prob=0.5, truncation=0.7)
    clean, degraded = net.generate(net.draw_codes(4, torch.Generator().manual_seed(1)))
    assert clean.shape == (4, 3, 16, 16)
    assert clean.std() > 0
    assert torch.equal(clean, degraded)


def test_all_three_parts_load_one_pretrained_checkpoint(tmp_path):
    torch.manual_seed(3)
    pretrained = PureStyleGAN2Generator(**TINY)
    path = tmp_path / 'stylegan2.pth'
    torch.save({'params_ema': pretrained.state_dict()}, path)
    net = CoupledStyleGAN2(**TINY, pretrained=str(path))
    z = torch.randn(2, 16)
    noise = [torch.randn(2, 1, r, r) for r in net.noise_sizes()]
    expected = pretrained.synthesis(pretrained.latents_from_styles([pretrained.mapping(z)]), noise)
    clean, degraded = net(z, noise)
    assert torch.allclose(clean, expected, atol=1e-6)
    assert torch.equal(clean, degraded)


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    path = tmp_path / 'd.pth'
    torch.save({'params': PureStyleGAN2Discriminator(16, channel_multiplier=1, narrow=1 / 32).state_dict()}, path)
    with pytest.raises(CheckpointLayoutError, match='generator'):
        CoupledStyleGAN2(**TINY, pretrained=str(path))


def test_only_the_green_network_is_trainable():
    net = tiny()
    green = {id(p) for p in net.green.parameters()}
    assert {id(p) for p in net.trainable_parameters()} == green
    assert all(p.requires_grad for p in net.trainable_parameters())
    assert net.frozen_parameters() and not any(p.requires_grad for p in net.frozen_parameters())
    assert not any(name.startswith('green.style_mlp') for name, _ in net.named_parameters())  # one mapping only
    _, degraded = net(torch.randn(2, 16))
    degraded.mean().backward()
    assert all(p.grad is None for p in net.frozen_parameters())


def test_same_seed_same_codes_whatever_the_batch_layout():
    net = tiny(mixing_prob=0.5)
    one_by_one = CoupledCodes.cat([net.draw_codes(1, torch.Generator().manual_seed(s)) for s in (5, 6)])
    again = CoupledCodes.cat([net.draw_codes(1, torch.Generator().manual_seed(s)) for s in (5, 6)])
    assert torch.equal(one_by_one.z, again.z) and all(torch.equal(a, b) for a, b in zip(one_by_one.noise, again.noise))
    alone = net.generate(net.draw_codes(1, torch.Generator().manual_seed(6)))[1]
    assert torch.allclose(net.generate(one_by_one)[1][1:], alone, atol=1e-5)  # batching changes float rounding only


def test_style_mixing_switches_codes_at_the_inject_index():
    net = tiny(mixing_prob=1.0)
    codes = net.draw_codes(3, torch.Generator().manual_seed(2))
    assert (codes.inject_index < net.num_latent).all()
    latent = net.latents(codes.z, codes.inject_index)
    w = net.red.mapping(codes.z[:, 1])
    for b, k in enumerate(codes.inject_index.tolist()):
        assert torch.allclose(latent[b, k:], w[b].expand(net.num_latent - k, -1), atol=1e-6)
        assert not torch.allclose(latent[b, k - 1], w[b], atol=1e-3)


def test_truncation_pulls_latents_towards_the_mean():
    net = tiny(truncation=0.5)
    z = torch.randn(3, 16)
    full = net.latents(z, truncation=1.0)
    half = net.latents(z)
    assert torch.allclose(half - net.mean_latent(), 0.5 * (full - net.mean_latent()), atol=1e-5)
    with pytest.raises(ValueError, match='truncation'):
        tiny(truncation=0)
