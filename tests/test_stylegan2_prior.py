"""options/train_stylegan2_prior.yml: BasicSR's StyleGAN2Model on the plugin's pure StyleGAN2 networks trains a
face prior whose checkpoints load, without conversion, where the degrader and the restorer expect a prior."""
import pytest
import torch
import yaml
from helpers import REPO, run, write_options

from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.loading.priors import load_into

PRIOR_OPT = REPO / 'options' / 'train_stylegan2_prior.yml'
SIZE_KEYS = ('out_size', 'num_style_feat', 'num_mlp', 'channel_multiplier', 'narrow')
TINY_G = {'out_size': 32, 'num_style_feat': 32, 'num_mlp': 2, 'channel_multiplier': 1, 'narrow': 0.0625}
ITERS = 4


def read(path):
    return yaml.safe_load(path.read_text())


def test_the_prior_recipe_has_the_sizes_the_degrader_and_restorer_load():
    prior = read(PRIOR_OPT)
    dl, st = read(REPO / 'options' / 'train_dl.yml'), read(REPO / 'options' / 'train_dlst.yml')
    for key in SIZE_KEYS:
        assert prior['network_g'][key] == dl['network_g'][key] == st['network_g'][key], key
    for key in ('out_size', 'channel_multiplier', 'narrow'):
        assert prior['network_d'][key] == dl['network_d'][key] == st['network_d'][key], key
    assert prior['model_type'] == 'StyleGAN2Model'
    assert prior['network_g']['type'] == 'PureStyleGAN2Generator'
    assert prior['network_d']['type'] == 'PureStyleGAN2Discriminator'
    assert prior['datasets']['train']['type'] == 'DegradedFaceDataset'
    assert prior['train']['path_batch_shrink'] == 2  # StyleGAN2Model reads it without a default


@pytest.fixture(scope='module')
def prior_run(tmp_path_factory):
    """A 32 px, tiny-width prior trained for a few iterations (both lazy regularisations included)."""
    from helpers import face_crops
    tmp = tmp_path_factory.mktemp('prior')
    face_crops(tmp / 'faces', size=48, count=8)
    net_d = {k: TINY_G[k] for k in ('out_size', 'channel_multiplier', 'narrow')}
    opt = write_options(PRIOR_OPT, tmp / 'prior.yml', {
        'name': 'tiny_prior', 'num_gpu': 0,
        'datasets:train:dataroot_gt': str(tmp / 'faces'), 'datasets:train:io_backend': {'type': 'disk'},
        'datasets:train:out_size': 32, 'datasets:train:num_worker_per_gpu': 0,
        'datasets:train:batch_size_per_gpu': 2, **{f'network_g:{k}': v for k, v in TINY_G.items()},
        **{f'network_d:{k}': v for k, v in net_d.items()}, 'train:total_iter': ITERS,
        'train:net_g_reg_every': 2, 'train:net_d_reg_every': 2, 'val:val_freq': ITERS,
        'logger:print_freq': 1, 'logger:save_checkpoint_freq': ITERS, 'logger:use_tb_logger': False})
    proc = run(['python', '-m', 'dlst_plugin.train', '-opt', opt], cwd=tmp, timeout=600)
    models = tmp / 'experiments' / 'tiny_prior' / 'models'
    return proc, models / f'net_g_{ITERS}.pth', models / f'net_d_{ITERS}.pth'


@pytest.mark.slow  # a training launch
def test_a_tiny_prior_trains_with_both_regularisations_and_saves(prior_run):
    proc, net_g, net_d = prior_run
    log = next(net_g.parents[1].glob('train_*.log')).read_text()
    assert 'l_d_r1' in log and 'l_g_path' in log  # R1 and path-length regularisation ran
    g = torch.load(net_g, weights_only=True)
    assert set(g) == {'params', 'params_ema'}
    assert 'params' in torch.load(net_d, weights_only=True)


def holds_the_prior(module, net_g):
    """Every tensor of the prior's EMA generator is in ``module``, unchanged."""
    state = module.state_dict()
    return all(torch.equal(state[k], v) for k, v in torch.load(net_g, weights_only=True)['params_ema'].items())


@pytest.mark.slow  # a training launch
def test_the_prior_loads_as_the_degraders_red_and_green_networks(prior_run):
    _, net_g, _ = prior_run
    coupled = CoupledStyleGAN2(**TINY_G, pretrained=str(net_g))
    assert holds_the_prior(coupled.red, net_g)
    codes = coupled.draw_codes(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean, degraded = coupled.generate(codes)
    assert torch.equal(clean, degraded)  # green starts as a copy of the prior


@pytest.mark.slow  # a training launch
def test_the_prior_loads_as_the_skip_transformer_decoder(prior_run):
    _, net_g, _ = prior_run
    st = SkipTransformer(**TINY_G, decoder_load_path=str(net_g))
    assert holds_the_prior(st.decoder, net_g)


@pytest.mark.slow  # a training launch
def test_the_prior_discriminator_loads_into_the_plugin_discriminator(prior_run):
    _, _, net_d = prior_run
    d = PureStyleGAN2Discriminator(32, channel_multiplier=1, narrow=0.0625)
    assert load_into(d, net_d) == 'basicsr'
    saved = torch.load(net_d, weights_only=True)['params']
    assert all(torch.equal(d.state_dict()[k], v) for k, v in saved.items())
