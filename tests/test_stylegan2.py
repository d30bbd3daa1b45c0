"""Pure-PyTorch StyleGAN2: same layout and outputs as BasicSR's, FreezeD, noise, dtypes."""
import pytest
import torch
from stylegan2_reference import route_fused_act_through_torch

from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.archs.stylegan2_ops import upfirdn2d

TINY = dict(num_style_feat=32, num_mlp=2, channel_multiplier=1, narrow=0.0625)


@pytest.fixture
def basicsr_sg2(monkeypatch):
    return route_fused_act_through_torch(monkeypatch)


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.5 + (1.0 if p.ndim == 1 and p.numel() > 1 else 0.0)
    return module


@pytest.mark.parametrize('up,down,pad', [(1, 1, (1, 1)), (1, 1, (2, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)),
                                         (2, 1, (1, 1)), (1, 1, (-1, 2))])
def test_upfirdn2d_matches_basicsr_native(up, down, pad):
    from basicsr.ops.upfirdn2d.upfirdn2d import upfirdn2d_native
    x = torch.randn(2, 3, 9, 9)
    k = torch.tensor([1., 3., 3., 1.])
    k = torch.outer(k, torch.tensor([1., 2., 3., 1.]))  # asymmetric: checks the flip
    ref = upfirdn2d_native(x, k, up, up, down, down, pad[0], pad[1], pad[0], pad[1])
    assert torch.allclose(upfirdn2d(x, k, up=up, down=down, pad=pad), ref, atol=1e-5)


@pytest.mark.parametrize('batch', [1, 3])
def test_generator_loads_basicsr_checkpoint_and_matches(basicsr_sg2, batch):
    ref = _randomise(basicsr_sg2.StyleGAN2Generator(32, **TINY), 0).eval()
    ours = PureStyleGAN2Generator(32, **TINY).eval()
    ours.load_state_dict({'params_ema': ref.state_dict()}['params_ema'], strict=True)
    z = [torch.randn(batch, 32)]
    with torch.no_grad():
        expected, _ = ref(z, randomize_noise=False)
        got, _ = ours(z, randomize_noise=False)
    assert (got - expected).abs().max().item() <= 1e-4


def test_generator_matches_with_style_mixing_and_truncation(basicsr_sg2):
    ref = _randomise(basicsr_sg2.StyleGAN2Generator(16, **TINY), 1).eval()
    ours = PureStyleGAN2Generator(16, **TINY).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    z = [torch.randn(2, 32), torch.randn(2, 32)]
    noise = ours.make_noise()
    with torch.no_grad():
        mean = ours.mean_latent(64)
        kw = dict(noise=noise, truncation=0.7, truncation_latent=mean, inject_index=3)
        assert (ours(z, **kw)[0] - ref(z, **kw)[0]).abs().max().item() <= 1e-4


def test_discriminator_loads_basicsr_checkpoint_and_matches(basicsr_sg2):
    ref = _randomise(basicsr_sg2.StyleGAN2Discriminator(32, channel_multiplier=1, narrow=0.0625), 2).eval()
    ours = PureStyleGAN2Discriminator(32, channel_multiplier=1, narrow=0.0625).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-4


def test_gradients_match_basicsr(basicsr_sg2):
    ref = _randomise(basicsr_sg2.StyleGAN2Generator(16, **TINY), 3)
    ours = PureStyleGAN2Generator(16, **TINY)
    ours.load_state_dict(ref.state_dict())
    z = [torch.randn(2, 32)]
    ref(z, randomize_noise=False)[0].square().mean().backward()
    ours(z, randomize_noise=False)[0].square().mean().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5), name


def test_fixed_noise_is_deterministic_and_random_noise_is_not():
    g = PureStyleGAN2Generator(16, **TINY).eval()
    z = [torch.randn(1, 32)]
    with torch.no_grad():
        a, b = g(z, randomize_noise=False)[0], g(z, randomize_noise=False)[0]
        g.style_conv1.weight.data.fill_(1.0)  # make the noise visible
        c, d = g(z)[0], g(z)[0]
    assert torch.equal(a, b)
    assert not torch.equal(c, d)


def test_caller_supplied_noise_is_used():
    g = PureStyleGAN2Generator(16, **TINY).eval()
    for conv in [g.style_conv1, *g.style_convs]:
        conv.weight.data.fill_(1.0)
    z = [torch.randn(1, 32)]
    noise = g.make_noise()
    with torch.no_grad():
        same = g(z, noise=noise)[0], g(z, noise=[n.clone() for n in noise])[0]
        other = g(z, noise=g.make_noise())[0]
    assert torch.equal(*same)
    assert not torch.allclose(same[0], other)


def test_bfloat16_inference_on_cpu_tracks_float32():
    g = PureStyleGAN2Generator(32, **TINY).eval()
    z = [torch.randn(2, 32)]
    with torch.no_grad():
        ref = g(z, randomize_noise=False)[0]
        low = g.to(torch.bfloat16)([z[0].bfloat16()], randomize_noise=False)[0]
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason='float16 inference is a GPU feature (no GPU in CI)')
def test_float16_inference_on_gpu_tracks_float32():
    g = PureStyleGAN2Generator(32, **TINY).eval().cuda()
    z = [torch.randn(2, 32, device='cuda')]
    with torch.no_grad():
        ref = g(z, randomize_noise=False)[0]
        low = g.half()([z[0].half()], randomize_noise=False)[0]
    assert (low.float() - ref).norm() / ref.norm() < 0.01


def test_freezed_blocks_stay_bit_identical_and_out_of_optimizer():
    d = PureStyleGAN2Discriminator(32, channel_multiplier=1, narrow=0.0625, num_frozen_blocks=2)
    frozen = {n: p.detach().clone() for n, p in d.named_parameters() if n.startswith(('conv_body.0.', 'conv_body.1.'))}
    assert frozen and all(not d.get_parameter(n).requires_grad for n in frozen)
    opt = torch.optim.Adam(d.trainable_parameters(), lr=0.1)
    in_opt = {id(p) for group in opt.param_groups for p in group['params']}
    assert not in_opt & {id(d.get_parameter(n)) for n in frozen}
    trained_before = d.final_linear[1].weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        d(torch.randn(4, 3, 32, 32)).mean().backward()
        opt.step()
    for n, before in frozen.items():
        assert torch.equal(d.get_parameter(n), before), n
    assert not torch.equal(d.final_linear[1].weight, trained_before)


def test_freezed_default_depth_covers_blocks_above_32px():
    assert PureStyleGAN2Discriminator.blocks_above(512, 32) == 5  # from-RGB + 512, 256, 128, 64 blocks
    assert PureStyleGAN2Discriminator.blocks_above(32, 32) == 1


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match='out_size must be a power of two'):
        PureStyleGAN2Generator(48, **TINY)
    d = PureStyleGAN2Discriminator(32, channel_multiplier=1, narrow=0.0625)
    with pytest.raises(ValueError, match='expects 32x32'):
        d(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='num_frozen_blocks'):
        d.freeze_blocks(99)
