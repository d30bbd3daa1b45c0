"""StyleGAN2 checkpoint layouts -> BasicSR layout (dlst_plugin.checkpoints.reading, docs/design.md#stylegan2).

Every foreign layout is built here from a tiny randomly initialised network by renaming keys the
way the other project names them, so the importer is checked against an independent spelling.
"""
import argparse
import math
import re

import pytest
import torch
from torch.nn import functional as F

from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.checkpoints.stylegan2_layouts import load_stylegan2_state
from dlst_plugin.errors import CheckpointLayoutError
from dlst_plugin.loading.priors import load_into
from dlst_plugin.loading.shapes import infer_discriminator_config, infer_generator_config

TINY_G = dict(out_size=16, num_style_feat=16, num_mlp=2, narrow=1 / 32)
TINY_D = dict(out_size=16, narrow=1 / 32)
BLUR = torch.tensor([1., 3., 3., 1.])
BLUR = BLUR[None] * BLUR[:, None] / 64


def randomised(module, seed):
    """Every parameter and buffer random, so a key mapped to the wrong place changes the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.normal_(0, 0.5)
    return module.eval()


def rosinality_generator_state(generator):
    """The state dict rosinality's ``Generator`` would have with these weights (model.py names)."""
    out = {}
    for key, value in generator.state_dict().items():
        if key.startswith('style_mlp.'):
            key = 'style.' + key[len('style_mlp.'):]
        elif key == 'constant_input.weight':
            key = 'input.input'
        elif key.startswith('noises.noise'):
            key = 'noises.noise_' + key[len('noises.noise'):]
        else:
            key = key.replace('style_conv1.', 'conv1.').replace('style_convs.', 'convs.')
            key = key.replace('.modulated_conv.', '.conv.')
            key = re.sub(r'^(conv1|convs\.\d+)\.weight$', r'\1.noise.weight', key)
        out[key] = value.clone()
    for i in range(len(generator.to_rgbs)):
        out[f'convs.{2 * i}.conv.blur.kernel'] = BLUR * 4
        out[f'to_rgbs.{i}.upsample.kernel'] = BLUR * 4
    return out


def rosinality_discriminator_state(discriminator):
    out = {'convs.' + k[len('conv_body.'):] if k.startswith('conv_body.') else k: v.clone()
           for k, v in discriminator.state_dict().items()}
    for i in range(1, len(discriminator.conv_body)):
        out[f'convs.{i}.conv2.0.kernel'] = BLUR.clone()
        out[f'convs.{i}.skip.0.kernel'] = BLUR.clone()
    return out


def images(generator, seed=1):
    torch.manual_seed(seed)
    z = torch.randn(2, generator.num_style_feat)
    noise = generator.make_noise()
    with torch.no_grad():
        return generator([z], noise=noise)[0]


def test_basicsr_prefers_params_ema(tmp_path):
    ema, raw = randomised(PureStyleGAN2Generator(**TINY_G), 0), randomised(PureStyleGAN2Generator(**TINY_G), 1)
    torch.save({'params': raw.state_dict(), 'params_ema': ema.state_dict()}, tmp_path / 'g.pth')
    state, layout = load_stylegan2_state(tmp_path / 'g.pth')
    assert layout == 'basicsr'
    assert torch.equal(state['constant_input.weight'], ema.constant_input.weight)


def test_bare_state_dict_loads_strictly(tmp_path):
    source = randomised(PureStyleGAN2Generator(**TINY_G), 0)
    torch.save(source.state_dict(), tmp_path / 'g.pth')
    target = PureStyleGAN2Generator(**TINY_G).eval()
    assert load_into(target, tmp_path / 'g.pth') == 'basicsr'
    assert torch.allclose(images(target), images(source))


def test_rosinality_generator_gives_the_same_image(tmp_path):
    source = randomised(PureStyleGAN2Generator(**TINY_G), 0)
    torch.save({'g_ema': rosinality_generator_state(source), 'g': {}, 'args': argparse.Namespace(size=16)},
               tmp_path / 'ros.pt')
    target = randomised(PureStyleGAN2Generator(**TINY_G), 5)
    assert load_into(target, tmp_path / 'ros.pt') == 'rosinality'
    assert torch.allclose(images(target), images(source), atol=1e-6)


def test_rosinality_discriminator_gives_the_same_logits(tmp_path):
    source = randomised(PureStyleGAN2Discriminator(**TINY_D), 0)
    torch.save({'d': rosinality_discriminator_state(source)}, tmp_path / 'ros.pt')
    target = randomised(PureStyleGAN2Discriminator(**TINY_D), 5)
    assert load_into(target, tmp_path / 'ros.pt') == 'rosinality'
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(target(x), source(x), atol=1e-6)


def test_generator_inside_a_gfpgan_restorer_is_found(tmp_path):
    source = randomised(PureStyleGAN2Generator(**TINY_G), 0)
    restorer = {f'stylegan_decoder.{k}': v for k, v in source.state_dict().items()}
    restorer['conv_body_first.weight'] = torch.zeros(4, 3, 1, 1)  # the restorer's own encoder
    torch.save({'params_ema': {f'module.{k}': v for k, v in restorer.items()}}, tmp_path / 'gfpgan.pth')
    target = PureStyleGAN2Generator(**TINY_G).eval()
    assert load_into(target, tmp_path / 'gfpgan.pth') == 'basicsr'
    assert torch.allclose(images(target), images(source))


def test_unknown_layout_lists_its_keys(tmp_path):
    torch.save({'encoder.0.weight': torch.zeros(2), 'head.bias': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointLayoutError, match=r'unknown StyleGAN2 generator layout.*encoder\.0\.weight'):
        load_stylegan2_state(tmp_path / 'other.pth')


def test_shape_mismatch_names_the_key(tmp_path):
    torch.save({'params_ema': PureStyleGAN2Generator(**TINY_G).state_dict()}, tmp_path / 'g.pth')
    wider = PureStyleGAN2Generator(**{**TINY_G, 'narrow': 1 / 16})
    before = wider.constant_input.weight.clone()
    with pytest.raises(CheckpointLayoutError, match=r'shape mismatches.*constant_input\.weight \(1, 16, 4, 4\)'):
        load_into(wider, tmp_path / 'g.pth')
    assert torch.equal(wider.constant_input.weight, before)  # nothing half loaded


def test_missing_key_is_listed(tmp_path):
    state = PureStyleGAN2Generator(**TINY_G).state_dict()
    del state['to_rgbs.1.bias']
    torch.save({'params_ema': state}, tmp_path / 'g.pth')
    with pytest.raises(CheckpointLayoutError, match=r'missing keys \(1\): to_rgbs\.1\.bias'):
        load_into(PureStyleGAN2Generator(**TINY_G), tmp_path / 'g.pth')


def test_generator_file_read_as_discriminator_says_what_it_holds(tmp_path):
    torch.save({'params': PureStyleGAN2Generator(**TINY_G).state_dict()}, tmp_path / 'g.pth')
    with pytest.raises(CheckpointLayoutError, match=r'no StyleGAN2 discriminator, only a generator \(basicsr\)'):
        load_stylegan2_state(tmp_path / 'g.pth', kind='discriminator')


def test_explicit_layout_overrides_detection(tmp_path):
    clean = clean_layout_state(PureStyleGAN2Generator(**TINY_G))
    torch.save(clean, tmp_path / 'clean.pth')
    with pytest.raises(CheckpointLayoutError, match=r'unexpected keys.*style_conv1\.bias'):
        load_into(PureStyleGAN2Generator(**TINY_G), tmp_path / 'clean.pth', layout='basicsr')


@pytest.mark.parametrize('content', [b'hello, not a checkpoint\n', b'truncated'], ids=['text', 'truncated'])
def test_non_checkpoint_file_is_named(tmp_path, content):
    path = tmp_path / 'bad.pth'
    if content == b'truncated':
        torch.save({'params': {'w': torch.zeros(64)}}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(CheckpointLayoutError, match=r'bad\.pth is not a PyTorch checkpoint'):
        load_stylegan2_state(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointLayoutError, match='nothing.pth: no such file'):
        load_stylegan2_state(tmp_path / 'nothing.pth')


@pytest.mark.parametrize('config', [
    dict(out_size=16, num_style_feat=16, num_mlp=2, channel_multiplier=2, narrow=1 / 32),
    dict(out_size=256, num_style_feat=64, num_mlp=3, channel_multiplier=1, narrow=0.125),
    dict(out_size=128, num_style_feat=512, num_mlp=8, channel_multiplier=2, narrow=1),
])
def test_infer_generator_config(config):
    with torch.device('meta'):  # shapes only, no weights allocated
        state = PureStyleGAN2Generator(**config).state_dict()
    assert infer_generator_config(state) == config


@pytest.mark.parametrize('config', [
    dict(out_size=16, channel_multiplier=2, narrow=1 / 32),
    dict(out_size=512, channel_multiplier=1, narrow=0.25),
])
def test_infer_discriminator_config(config):
    with torch.device('meta'):
        state = PureStyleGAN2Discriminator(**config).state_dict()
    assert infer_discriminator_config(state) == config


# --- GFP-GAN StyleGAN2GeneratorClean ---------------------------------------------------------
def clean_layout_state(generator):
    """GFP-GAN clean key names (``style_mlp`` Linear layers at odd indices, StyleConv bias (1, C, 1, 1))
    with random values; the shapes come from ``generator``."""
    out = {}
    for key, value in generator.state_dict().items():
        mlp = re.fullmatch(r'style_mlp\.(\d+)\.(weight|bias)', key)
        if mlp:
            key = f'style_mlp.{2 * int(mlp[1]) - 1}.{mlp[2]}'
        elif key.endswith('.activate.bias'):
            key, value = key.replace('.activate.bias', '.bias'), value.view(1, -1, 1, 1)
        out[key] = torch.randn(value.shape) * 0.5
    return out


def test_clean_layout_math_without_gfpgan(tmp_path):
    """Hand-written clean formulas at 4 px, where no up-sampling is involved: same values."""
    config = dict(out_size=4, num_style_feat=8, num_mlp=2, narrow=1 / 64)
    clean = clean_layout_state(PureStyleGAN2Generator(**config))
    torch.save({'params_ema': clean}, tmp_path / 'clean.pth')
    ours = PureStyleGAN2Generator(**config).eval()
    assert load_into(ours, tmp_path / 'clean.pth') == 'gfpgan_clean'

    torch.manual_seed(3)
    z, noise = torch.randn(1, 8), torch.randn(1, 1, 4, 4)
    w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for idx in (1, 3):
        w = F.leaky_relu(F.linear(w, clean[f'style_mlp.{idx}.weight'], clean[f'style_mlp.{idx}.bias']), 0.2)
    style = F.linear(w, clean['style_conv1.modulated_conv.modulation.weight'],
                     clean['style_conv1.modulated_conv.modulation.bias'])
    weight = clean['style_conv1.modulated_conv.weight'][0] * style[0, None, :, None, None]
    weight = weight * torch.rsqrt(weight.pow(2).sum([1, 2, 3], keepdim=True) + 1e-8)
    feat = F.conv2d(clean['constant_input.weight'], weight, padding=1) * math.sqrt(2)
    feat = F.leaky_relu(feat + clean['style_conv1.weight'] * noise + clean['style_conv1.bias'], 0.2)
    rgb_style = F.linear(w, clean['to_rgb1.modulated_conv.modulation.weight'],
                         clean['to_rgb1.modulated_conv.modulation.bias'])
    rgb = F.conv2d(feat, clean['to_rgb1.modulated_conv.weight'][0] * rgb_style[0, None, :, None, None])
    rgb = rgb + clean['to_rgb1.bias']
    with torch.no_grad():
        assert torch.allclose(ours.mapping(z), w, rtol=1e-4, atol=1e-5)
        assert torch.allclose(ours([z], noise=[noise])[0], rgb, rtol=1e-4, atol=1e-5)


def test_gfpgan_clean_generator_values_carry_over(tmp_path):
    clean_arch = pytest.importorskip('gfpgan.archs.stylegan2_clean_arch')
    config = dict(out_size=32, num_style_feat=32, num_mlp=2, narrow=0.125)
    clean = randomised(clean_arch.StyleGAN2GeneratorClean(**config), 0)
    torch.save({'params_ema': clean.state_dict()}, tmp_path / 'clean.pth')
    ours = randomised(PureStyleGAN2Generator(**config), 1)
    assert load_into(ours, tmp_path / 'clean.pth') == 'gfpgan_clean'

    torch.manual_seed(2)
    z, noise = torch.randn(2, 32), clean.make_noise()
    features = {}

    def keep(resolution, feature):
        features[f'ours{resolution}'] = feature.clone()
        return feature

    clean.style_conv1.register_forward_hook(lambda m, i, out: features.__setitem__('clean4', out.clone()))
    clean.to_rgb1.register_forward_hook(lambda m, i, out: features.__setitem__('clean_rgb4', out.clone()))
    ours.to_rgb1.register_forward_hook(lambda m, i, out: features.__setitem__('ours_rgb4', out.clone()))
    with torch.no_grad():
        w = clean.get_latent(z.clone())
        assert torch.allclose(ours.mapping(z), w, rtol=1e-4, atol=1e-5)
        for mine, theirs in zip(ours.to_rgbs, clean.to_rgbs):
            assert torch.allclose(mine.modulated_conv.modulation(w), theirs.modulated_conv.modulation(w), atol=1e-5)
        clean([z], noise=noise)
        latent = ours.latents_from_styles([ours.mapping(z)])
        ours.synthesis(latent, noise, feature_hook=keep)
    assert torch.allclose(features['ours4'], features['clean4'], rtol=1e-4, atol=1e-5)
    assert torch.allclose(features['ours_rgb4'], features['clean_rgb4'], rtol=1e-4, atol=1e-5)
