"""MMagic (mmediting) StyleGANv2 checkpoints -> BasicSR layout (dlst_plugin.checkpoints.reading).

The MMagic files are written here from tiny randomly initialised networks by spelling every key
the way MMagic's StyleGAN2Generator / StyleGAN2Discriminator name them (equalised-lr weights as
``weight_orig``, linear biases beside ``linear``, FIR kernels stored as buffers), wrapped the
ways its checkpoints come: ``generator_ema.`` (converted official weights), ``generator_ema.module.``
next to an EMA step counter (1.x training saves), mmengine's ``state_dict``.
"""
import math
import sys
import types

import pytest
import torch
from helpers import call_main
from test_checkpoints import BLUR, TINY_D, TINY_G, images, randomised
from torch.nn import functional as F

from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.checkpoints.reading import read_checkpoint
from dlst_plugin.checkpoints.stylegan2_layouts import convert_network, detect_layout, load_stylegan2_state
from dlst_plugin.cli.convert_stylegan2 import main as convert_main
from dlst_plugin.errors import CheckpointLayoutError
from dlst_plugin.loading.priors import load_into


def mmagic_generator_state(generator):
    """Keys as MMagic's StyleGAN2Generator.state_dict() lists them: its own noise buffers first."""
    ours = generator.state_dict()
    out = {f'injected_noise_{key[len("noises.noise"):]}': value.clone()
           for key, value in ours.items() if key.startswith('noises.')}
    for key, value in ours.items():
        parts = key.split('.')
        if parts[0] == 'noises':
            continue
        if parts[0] == 'style_mlp':  # index 0 is the pixel norm on both sides
            name = f'style_mapping.{parts[1]}.' + ('linear.weight_orig' if parts[2] == 'weight' else 'bias')
        elif key == 'constant_input.weight':
            name = 'constant_input.input'
        else:
            block = {'style_conv1': 'conv1', 'style_convs': 'convs'}.get(parts[0], parts[0])
            layer = '.'.join([block] + parts[1:2]) if parts[0] in ('style_convs', 'to_rgbs') else block
            rest = '.'.join(parts[2:] if parts[0] in ('style_convs', 'to_rgbs') else parts[1:])
            rest = {'weight': 'noise_injector.weight', 'activate.bias': 'activate.bias', 'bias': 'bias',
                    'modulated_conv.weight': 'conv.weight_orig',
                    'modulated_conv.modulation.weight': 'conv.style_modulation.linear.weight_orig',
                    'modulated_conv.modulation.bias': 'conv.style_modulation.bias'}[rest]
            name = f'{layer}.{rest}'
        out[name] = value.clone()
    for i in range(len(generator.to_rgbs)):  # up-sampling FIR kernels, gain 4
        out[f'convs.{2 * i}.conv.blur.kernel'] = BLUR * 4
        out[f'to_rgbs.{i}.upsample.kernel'] = BLUR * 4
    return out


def mmagic_discriminator_state(discriminator):
    """Keys of MMagic's StyleGAN2Discriminator: ConvDownLayer = [Blur,] EqualizedLRConvModule
    (``.conv.weight_orig``) [, bias + leaky ReLU]; EqualLinearActModule = ``.linear.weight_orig`` + ``.bias``."""
    out = {}
    for key, value in discriminator.state_dict().items():
        head, _, tail = key.partition('.')
        if head == 'conv_body':
            head = 'convs'
        if tail.endswith('.weight'):
            tail = tail[:-len('weight')] + ('linear.weight_orig' if head == 'final_linear' else 'conv.weight_orig')
        out[f'{head}.{tail}'] = value.clone()
    for i in range(1, len(discriminator.conv_body)):  # down-sampling FIR kernels of each ResBlock
        out[f'convs.{i}.conv2.0.kernel'] = BLUR.clone()
        out[f'convs.{i}.skip.0.kernel'] = BLUR.clone()
    return out


def wrapped(state, prefix):
    return {prefix + key: value for key, value in state.items()}


def training_save(ema, live, discriminator):
    """An MMagic 1.x training checkpoint as mmengine writes it (objects left out)."""
    state = {'generator_ema.steps': torch.tensor(1200), **wrapped(ema, 'generator_ema.module.'),
             **wrapped(live, 'generator.'), **wrapped(discriminator, 'discriminator.')}
    return {'meta': {'iter': 1200}, 'state_dict': state}


def scores(discriminator, seed=2):
    torch.manual_seed(seed)
    with torch.no_grad():
        return discriminator(torch.randn(4, 3, 16, 16))


def test_key_spelling_matches_mmagic_counts():
    """The test's MMagic spelling has MMagic's tensors: ours plus one blur and one up-sampling kernel
    per resolution above 4 px (generator), two kernels per ResBlock (discriminator)."""
    g, d = PureStyleGAN2Generator(**TINY_G), PureStyleGAN2Discriminator(**TINY_D)
    g_state, d_state = mmagic_generator_state(g), mmagic_discriminator_state(d)
    assert len(g_state) == len(g.state_dict()) + 2 * len(g.to_rgbs)
    assert len(d_state) == len(d.state_dict()) + 2 * (len(d.conv_body) - 1)
    assert next(iter(g_state)) == 'injected_noise_0'
    assert {'conv1.noise_injector.weight', 'style_mapping.2.bias', 'to_rgbs.1.conv.style_modulation.bias',
            'convs.3.conv.style_modulation.linear.weight_orig', 'to_rgb1.bias'} <= set(g_state)
    assert {'convs.0.0.conv.weight_orig', 'convs.0.1.bias', 'convs.2.conv2.1.conv.weight_orig', 'convs.2.conv2.2.bias',
            'convs.1.skip.1.conv.weight_orig', 'final_conv.1.bias', 'final_linear.1.linear.weight_orig'} <= set(d_state)
    assert detect_layout(g_state) == [('mmagic', 'generator')]  # not also taken for rosinality
    assert detect_layout(d_state) == [('mmagic', 'discriminator')]


@pytest.mark.parametrize('wrapping', ['official', 'training_save'])
def test_generator_gives_the_same_image_as_basicsr_layout(tmp_path, wrapping):
    source = randomised(PureStyleGAN2Generator(**TINY_G), 0)
    mm = mmagic_generator_state(source)
    if wrapping == 'official':
        obj = wrapped(mm, 'generator_ema.')
    else:
        obj = training_save(mm, mm, mmagic_discriminator_state(PureStyleGAN2Discriminator(**TINY_D)))
    torch.save(obj, tmp_path / 'mmagic.pth')
    torch.save({'params_ema': source.state_dict()}, tmp_path / 'basicsr.pth')
    from_mmagic = randomised(PureStyleGAN2Generator(**TINY_G), 5)
    from_basicsr = randomised(PureStyleGAN2Generator(**TINY_G), 6)
    assert load_into(from_mmagic, tmp_path / 'mmagic.pth') == 'mmagic'
    assert load_into(from_basicsr, tmp_path / 'basicsr.pth') == 'basicsr'
    assert (images(from_mmagic) - images(from_basicsr)).abs().max() <= 1e-5
    for key, value in source.state_dict().items():  # stored noise buffers carried over too
        assert torch.equal(from_mmagic.state_dict()[key], value), key


def test_discriminator_gives_the_same_score_as_basicsr_layout(tmp_path):
    source = randomised(PureStyleGAN2Discriminator(**TINY_D), 0)
    torch.save(wrapped(mmagic_discriminator_state(source), 'discriminator.'), tmp_path / 'mmagic.pth')
    torch.save({'params_d': source.state_dict()}, tmp_path / 'basicsr.pth')
    from_mmagic = randomised(PureStyleGAN2Discriminator(**TINY_D), 5)
    from_basicsr = randomised(PureStyleGAN2Discriminator(**TINY_D), 6)
    assert load_into(from_mmagic, tmp_path / 'mmagic.pth') == 'mmagic'
    assert load_into(from_basicsr, tmp_path / 'basicsr.pth') == 'basicsr'
    assert (scores(from_mmagic) - scores(from_basicsr)).abs().max() <= 1e-5


def test_ema_generator_is_preferred_and_discriminator_found_in_the_same_file(tmp_path):
    ema, live = randomised(PureStyleGAN2Generator(**TINY_G), 0), randomised(PureStyleGAN2Generator(**TINY_G), 1)
    disc = randomised(PureStyleGAN2Discriminator(**TINY_D), 2)
    obj = training_save(mmagic_generator_state(ema), mmagic_generator_state(live), mmagic_discriminator_state(disc))
    conversion = convert_network(obj, 'generator')
    assert (conversion.layout, conversion.source) == ('mmagic', "'state_dict', prefix 'generator_ema.module.'")
    assert torch.equal(conversion.state['constant_input.weight'], ema.constant_input.weight)
    assert len(conversion.dropped) == 2 * len(ema.to_rgbs)

    del_ema = {k: v for k, v in obj['state_dict'].items() if not k.startswith('generator_ema.')}
    conversion = convert_network({'state_dict': del_ema}, 'generator')  # no EMA copy: the live generator
    assert conversion.source == "'state_dict', prefix 'generator.'"
    assert torch.equal(conversion.state['constant_input.weight'], live.constant_input.weight)

    torch.save(obj, tmp_path / 'train.pth')
    target = randomised(PureStyleGAN2Discriminator(**TINY_D), 3)
    assert load_into(target, tmp_path / 'train.pth') == 'mmagic'
    assert torch.equal(scores(target), scores(disc))
    _, layout = load_stylegan2_state(tmp_path / 'train.pth', kind='discriminator')
    assert layout == 'mmagic'


def test_prior_inside_a_glean_restorer_and_mean_latent(tmp_path):
    source = randomised(PureStyleGAN2Generator(**TINY_G), 0)
    prior = {**mmagic_generator_state(source), 'w_avg': torch.arange(16.)}  # update_mean_latent_with_ema
    restorer = {**wrapped(prior, 'generator.generator.'), 'generator.encoder.0.weight': torch.zeros(4, 3, 3, 3)}
    conversion = convert_network({'state_dict': restorer}, 'generator')
    assert (conversion.layout, conversion.source) == ('mmagic', "'state_dict', prefix 'generator.generator.'")
    assert torch.equal(conversion.extras['latent_avg'], torch.arange(16.))
    assert 'w_avg' not in conversion.state and 'latent_avg' not in conversion.state
    torch.save({'state_dict': restorer}, tmp_path / 'glean.pth')
    target = randomised(PureStyleGAN2Generator(**TINY_G), 5)
    assert load_into(target, tmp_path / 'glean.pth') == 'mmagic'
    assert torch.equal(images(target), images(source))


def test_mmagic_formulas_at_4px(tmp_path):
    """MMagic's forward written out by hand from its tensors (4 px, no up-sampling involved):
    ``weight_orig`` scaled by 1/sqrt(fan_in) (times lr_mul in the mapping), linear biases times
    lr_mul, noise added before the fused bias + leaky ReLU * sqrt(2), demodulation eps 1e-8."""
    config = dict(out_size=4, num_style_feat=8, num_mlp=2, narrow=1 / 64)
    torch.manual_seed(0)
    mm = {k: torch.randn(v.shape) * 0.5 for k, v in mmagic_generator_state(PureStyleGAN2Generator(**config)).items()}
    torch.save(wrapped(mm, 'generator_ema.'), tmp_path / 'mm.pth')
    ours = randomised(PureStyleGAN2Generator(**config), 1)
    assert load_into(ours, tmp_path / 'mm.pth') == 'mmagic'

    lr, z, noise = 0.01, torch.randn(1, 8), torch.randn(1, 1, 4, 4)
    w = z / (z.norm(dim=1, keepdim=True) / math.sqrt(8) + 1e-6)
    for i in (1, 2):
        w = F.leaky_relu(w @ (mm[f'style_mapping.{i}.linear.weight_orig'] * lr / math.sqrt(8)).t()
                         + mm[f'style_mapping.{i}.bias'] * lr, 0.2) * math.sqrt(2)

    def modulated(layer, x, demodulate):
        style = w @ (mm[f'{layer}.conv.style_modulation.linear.weight_orig'] / math.sqrt(8)).t()
        style = style + mm[f'{layer}.conv.style_modulation.bias']
        weight = mm[f'{layer}.conv.weight_orig'][0]
        weight = weight / math.sqrt(weight[0].numel()) * style[0, None, :, None, None]
        if demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([1, 2, 3], keepdim=True) + 1e-8)
        return F.conv2d(x, weight, padding=weight.shape[-1] // 2)

    feat = modulated('conv1', mm['constant_input.input'], True) + mm['conv1.noise_injector.weight'] * noise
    feat = F.leaky_relu(feat + mm['conv1.activate.bias'].view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    rgb = modulated('to_rgb1', feat, False) + mm['to_rgb1.bias']
    with torch.no_grad():
        assert torch.allclose(ours.mapping(z), w, rtol=1e-4, atol=1e-5)
        assert torch.allclose(ours([z], noise=[noise])[0], rgb, rtol=1e-4, atol=1e-5)


def test_missing_key_is_named_and_nothing_loaded(tmp_path):
    state = mmagic_generator_state(PureStyleGAN2Generator(**TINY_G))
    del state['convs.1.noise_injector.weight']
    torch.save(wrapped(state, 'generator_ema.'), tmp_path / 'g.pth')
    target = PureStyleGAN2Generator(**TINY_G)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointLayoutError, match=r'(?s)mmagic generator.*missing keys \(1\): style_convs\.1\.'):
        load_into(target, tmp_path / 'g.pth')
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())


def test_wrong_shape_and_unknown_key_are_named(tmp_path):
    state = mmagic_discriminator_state(PureStyleGAN2Discriminator(**TINY_D))
    state['final_linear.1.linear.weight_orig'] = torch.zeros(4, 16)  # a conditional discriminator's head
    state['mapping.fc0.weight'] = torch.zeros(4, 4)
    torch.save({'state_dict': wrapped(state, 'discriminator.')}, tmp_path / 'd.pth')
    with pytest.raises(CheckpointLayoutError) as err:
        load_into(PureStyleGAN2Discriminator(**TINY_D), tmp_path / 'd.pth')
    assert 'final_linear.1.weight (4, 16) vs (1, 16)' in str(err.value)
    assert 'unexpected keys (1): mapping.fc0.weight' in str(err.value)


def test_generator_bias_inside_linear_is_not_taken_for_ours(tmp_path):
    """A key MMagic never writes (a bias inside ``linear``) keeps its name and is reported."""
    state = mmagic_generator_state(PureStyleGAN2Generator(**TINY_G))
    state['style_mapping.1.linear.bias'] = state.pop('style_mapping.1.bias')
    torch.save(wrapped(state, 'generator_ema.'), tmp_path / 'g.pth')
    with pytest.raises(CheckpointLayoutError, match=r'missing keys \(1\): style_mlp\.1\.bias.*\n.*unexpected keys '
                       r'\(1\): style_mapping\.1\.linear\.bias'):
        load_into(PureStyleGAN2Generator(**TINY_G), tmp_path / 'g.pth')


def test_convert_command_writes_both_networks(tmp_path):
    g, d = randomised(PureStyleGAN2Generator(**TINY_G), 0), randomised(PureStyleGAN2Discriminator(**TINY_D), 1)
    ema = {**mmagic_generator_state(g), 'w_avg': torch.ones(16)}
    torch.save(training_save(ema, mmagic_generator_state(g), mmagic_discriminator_state(d)), tmp_path / 'mm.pth')
    code, out, err = call_main(convert_main, [tmp_path / 'mm.pth', tmp_path / 'out.pth'])
    assert code == 0, err
    assert "generator: mmagic layout in 'state_dict', prefix 'generator_ema.module.'" in out
    assert 'constant_input.input -> constant_input.weight' in out and '4 fixed buffers dropped' in out
    assert 'latent_avg kept beside it' in out
    assert "discriminator: mmagic layout in 'state_dict', prefix 'discriminator.'" in out
    assert 'out_size=16, num_style_feat=16, num_mlp=2' in out
    written = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert set(written) == {'params_ema', 'params_d', 'latent_avg'}
    g2, d2 = PureStyleGAN2Generator(**TINY_G).eval(), PureStyleGAN2Discriminator(**TINY_D).eval()
    g2.load_state_dict(written['params_ema'], strict=True)
    d2.load_state_dict(written['params_d'], strict=True)
    assert torch.equal(images(g2), images(g)) and torch.equal(scores(d2), scores(d))


@pytest.mark.parametrize('kind', ['generator', 'discriminator'])
def test_convert_command_one_kind(tmp_path, kind):
    g, d = PureStyleGAN2Generator(**TINY_G), PureStyleGAN2Discriminator(**TINY_D)
    obj = {**wrapped(mmagic_generator_state(g), 'generator_ema.'),
           **wrapped(mmagic_discriminator_state(d), 'discriminator.')}
    torch.save(obj, tmp_path / 'official.pth')
    code, _, err = call_main(convert_main, [tmp_path / 'official.pth', tmp_path / 'out.pth', '--kind', kind,
                                            '--layout', 'mmagic'])
    assert code == 0, err
    written = torch.load(tmp_path / 'out.pth', weights_only=True)
    key = 'params_ema' if kind == 'generator' else 'params'
    assert set(written) == {key}
    network = g if kind == 'generator' else d
    assert load_into(type(network)(**(TINY_G if kind == 'generator' else TINY_D)), tmp_path / 'out.pth') == 'basicsr'


def test_broken_mmagic_file_stops_the_command(tmp_path):
    state = mmagic_generator_state(PureStyleGAN2Generator(**TINY_G))
    state['to_rgbs.0.bias'] = torch.zeros(1, 4, 1, 1)
    torch.save(wrapped(state, 'generator_ema.'), tmp_path / 'g.pth')
    code, _, err = call_main(convert_main, [tmp_path / 'g.pth', tmp_path / 'out.pth'])
    assert code == 1 and 'to_rgbs.0.bias (1, 4, 1, 1) vs (1, 3, 1, 1)' in err
    assert not (tmp_path / 'out.pth').exists()


def test_mmengine_training_objects_get_a_resave_hint(tmp_path, monkeypatch):
    """mmengine saves pickle log objects beside the weights; they are not loaded, and the error says
    how to keep only the weights."""
    for name in ('mmengine', 'mmengine.logging', 'mmengine.logging.history_buffer'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    HistoryBuffer = type('HistoryBuffer', (), {'__module__': 'mmengine.logging.history_buffer'})
    monkeypatch.setattr(sys.modules['mmengine.logging.history_buffer'], 'HistoryBuffer', HistoryBuffer,
                        raising=False)
    torch.save({'message_hub': {'loss': HistoryBuffer()}, 'state_dict': {}}, tmp_path / 'iter_1200.pth')
    with pytest.raises(CheckpointLayoutError, match=r"mmengine\.logging\.history_buffer\.HistoryBuffer.*'state_dict'"):
        read_checkpoint(tmp_path / 'iter_1200.pth')
