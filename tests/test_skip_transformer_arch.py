"""SkipTransformer architecture (docs/design.md#skip-transformer): shapes, options, attention, skip wiring,
decoder loading."""
import math

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch.nn import functional as F

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.archs.skip_transformer_blocks import PatchSelfAttention, ResidualConvBlock
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator

TINY = dict(out_size=32, num_style_feat=32, num_mlp=2, narrow=1 / 32)


def tiny_st(**kwargs):
    torch.manual_seed(0)
    return SkipTransformer(**{**TINY, **kwargs})


def images(size=32, batch=2, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def attention_modules(net):
    return [m for m in net.modules() if isinstance(m, PatchSelfAttention)]


def test_registered_and_restores_same_shape_deterministically_in_eval():
    net = ARCH_REGISTRY.get('SkipTransformer')(**TINY).eval()
    x = images()
    with torch.no_grad():
        out, again = net(x), net(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, again)


def test_training_mode_draws_fresh_noise():
    net = tiny_st()
    for layer in net.decoder.style_convs:
        layer.weight.data.fill_(1.0)  # noise strength
    with torch.no_grad():
        assert not torch.equal(net(images()), net(images()))


@pytest.mark.parametrize('shape', [(1, 3, 64, 64), (1, 1, 32, 32), (3, 32, 32)])
def test_bad_input_names_expected_size(shape):
    with pytest.raises(ValueError, match=r'\(batch, 3, 32, 32\)'):
        tiny_st()(torch.zeros(shape))


def test_out_size_must_be_power_of_two():
    with pytest.raises(ValueError, match='out_size'):
        SkipTransformer(out_size=48)


def test_default_layout_at_512_follows_paper():
    """Encoder: full-res stage of 4 residual blocks, 7 downsampling stages, attention only at
    32-4 px; six skip layers at 8-256, transformer blocks only at <= 32 px. Built on the meta
    device: no 512 px weights are allocated."""
    with torch.device('meta'):
        net = SkipTransformer(512)
    assert sum(isinstance(m, ResidualConvBlock) for m in net.encoder.first) == 4
    attn_stages = [s.body.attention is not None for s in net.encoder.stages]
    assert attn_stages == [False, False, False, True, True, True, True]
    assert net.skip_resolutions == [8, 16, 32, 64, 128, 256]
    assert {r: net.skips[str(r)].body.attention is not None for r in net.skip_resolutions} == {
        8: True, 16: True, 32: True, 64: False, 128: False, 256: False}
    assert net.patch_sizes[32] == 4 and net.patch_sizes[16] == 2 and net.patch_sizes[8] == 1
    assert net.encoder.to_w.out_features == 512
    assert net.decoder.channels['64'] == 256  # channel_multiplier 1, as GFP-GAN's 512 px prior


def test_attention_false_removes_every_attention_module():
    assert len(attention_modules(tiny_st())) == 3 + 2  # encoder stages 16, 8, 4; skips 8, 16 (32 = out_size)
    assert attention_modules(tiny_st(attention=False)) == []


def test_skip_resolutions_option_and_bad_value():
    net = tiny_st(skip_resolutions=[16, 32])
    assert sorted(net.skips.keys()) == ['16', '32']
    with pytest.raises(ValueError, match='skip_resolutions'):
        tiny_st(skip_resolutions=[64])


def test_patch_size_option_and_bad_value():
    net = tiny_st(patch_sizes={16: 4})
    assert net.skips['16'].body.attention.patch_size == 4
    with pytest.raises(ValueError, match='patch_sizes'):
        tiny_st(patch_sizes={16: 3})


def test_attention_is_standard_scaled_dot_product_over_patches():
    torch.manual_seed(0)
    attn = PatchSelfAttention(4, patch_size=2)
    x = torch.randn(2, 4, 8, 8)
    q, k, v = (F.pixel_unshuffle(conv(x), 2).flatten(2).transpose(1, 2) for conv in (attn.to_q, attn.to_k, attn.to_v))
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)  # (2, 16 tokens, 16)
    assert q.shape == (2, 16, 16)
    merged = F.pixel_shuffle((weights @ v).transpose(1, 2).reshape(2, 16, 4, 4), 2)
    torch.testing.assert_close(attn(x), attn.proj(merged), rtol=1e-4, atol=1e-5)


def test_skip_layers_feed_the_decoder():
    """Fresh skip layers add zero (the pretrained decoder starts unchanged); once their output
    conv is non-zero the restored image depends on them."""
    net = tiny_st().eval()
    x = images()
    with torch.no_grad():
        _, w = net.encoder(x)
        plain = net.decoder.synthesis(w[:, None].expand(-1, net.decoder.num_latent, -1), net.decoder.fixed_noise())
        torch.testing.assert_close(net(x), plain)
        torch.nn.init.normal_(net.skips['16'].out.weight)
        assert (net(x) - plain).abs().max() > 1e-3


def test_gradients_reach_encoder_skips_and_decoder_but_not_mapping():
    net = tiny_st()
    net(images()).square().mean().backward()
    assert net.encoder.first[0][0].weight.grad.abs().sum() > 0
    assert net.skips['8'].out.weight.grad.abs().sum() > 0
    assert net.decoder.to_rgbs[-1].modulated_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.decoder.style_mlp.parameters())


def test_param_groups_partition_trainable_parameters():
    net = tiny_st()
    groups = net.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in net.parameters())
    frozen = tiny_st(fix_decoder=True)
    assert frozen.param_groups()['decoder'] == []
    assert not any(p.requires_grad for p in frozen.decoder.parameters())


def test_decoder_load_path_reads_basicsr_checkpoint(tmp_path):
    torch.manual_seed(5)
    prior = PureStyleGAN2Generator(32, num_style_feat=32, num_mlp=2, channel_multiplier=1, narrow=1 / 32)
    torch.save({'params_ema': prior.state_dict()}, tmp_path / 'prior.pth')
    net = tiny_st(decoder_load_path=str(tmp_path / 'prior.pth'))
    for key, value in prior.state_dict().items():
        assert torch.equal(net.decoder.state_dict()[key], value), key


def test_decoder_load_path_with_wrong_size_names_keys(tmp_path):
    prior = PureStyleGAN2Generator(64, num_style_feat=32, num_mlp=2, channel_multiplier=1, narrow=1 / 32)
    torch.save({'params_ema': prior.state_dict()}, tmp_path / 'prior64.pth')
    with pytest.raises(ValueError, match='unexpected keys'):
        tiny_st(decoder_load_path=str(tmp_path / 'prior64.pth'))


def test_encoder_narrow_scales_encoder_only():
    net = tiny_st(encoder_narrow=2)
    assert net.encoder.first[0][0].out_channels == 2 * net.decoder.channels['32']
    assert net.skips['16'].out.out_channels == net.decoder.channels['16']


def test_runs_in_bfloat16():
    net = tiny_st().eval().to(torch.bfloat16)
    with torch.no_grad():
        out = net(images().to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_traces_to_torchscript_with_the_same_output():
    import warnings
    net = tiny_st().eval()
    x = images(batch=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about shape constants: the input size is fixed
        traced = torch.jit.trace(net, x, check_trace=False)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x))


def skip_outputs_count(net):
    with torch.no_grad():  # the skip output convs start at zero: give them weights so attention counts
        for layer in net.skips.values():
            layer.out.weight.normal_(0, 0.05)
    return net


def test_patch_sizes_travel_in_the_state_dict():
    trained = skip_outputs_count(tiny_st(patch_sizes={8: 2, 16: 4}))
    state = trained.state_dict()
    assert state['attention_patch_sizes'].tolist() == [1, 2, 4, 4]  # p at 4, 8, 16, 32 px
    rebuilt = tiny_st()  # built with the default sizes, as a weights-only loader builds it
    rebuilt.load_state_dict(state, strict=True)
    assert rebuilt.patch_sizes[8] == 2 and {m.patch_size for m in attention_modules(rebuilt)} == {1, 2, 4}
    assert rebuilt.hyperparameters['patch_sizes'] == {8: 2, 16: 4}
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(images()), trained.eval()(images()))


def test_state_dict_saved_before_the_buffer_keeps_the_networks_sizes():
    trained = skip_outputs_count(tiny_st(patch_sizes={16: 4}))
    old = {k: v for k, v in trained.state_dict().items() if k != 'attention_patch_sizes'}
    default = tiny_st()
    default.load_state_dict(old, strict=True)  # strict: the missing buffer is not an error
    assert default.patch_sizes[16] == 2 and default.attention_patch_sizes.tolist() == [1, 1, 2, 4]
    from_options = tiny_st(patch_sizes={16: 4})  # built from the option file that trained it
    from_options.load_state_dict(old, strict=True)
    with torch.no_grad():
        assert torch.equal(from_options.eval()(images()), trained.eval()(images()))
        assert not torch.equal(default.eval()(images()), trained.eval()(images()))


def test_bad_patch_sizes_in_a_state_dict_are_refused():
    state = tiny_st().state_dict()
    state['attention_patch_sizes'] = torch.tensor([1, 3, 2, 4])
    with pytest.raises(ValueError, match=r'patch_sizes\[8\] = 3'):
        tiny_st().load_state_dict(state)


def test_hyperparameters_hold_the_constructor_arguments_normalised():
    hp = tiny_st(patch_sizes={'8': 1, '16': 4}).hyperparameters
    assert hp['patch_sizes'] == {16: 4}  # the default entry dropped, keys as ints
    assert hp['skip_resolutions'] == [8, 16]  # the default written out
    assert {k: hp[k] for k in TINY} == TINY and hp['decoder_channel_order'] is None and hp['attention'] is True
