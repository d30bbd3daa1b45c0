"""The general restorer model on the adversarial core: every Table 1 arch (ST, GLEAN, GFP-GAN) trains,
gradients reach exactly the trainable parameters, D stays out of the G step, EMA, options, learning."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, noisy_batch, single_process_options, subprocess_env
from restorer_configs import TINY_D, tiny_network
from test_skip_transformer_model import _degrade, _face_tensors

import dlst_plugin  # noqa: F401
from dlst_plugin.models.core_parts import TrainingOptionError, parse_optimizer
from dlst_plugin.models.face_restoration_model import FaceRestorationModel

TINY = REPO / 'tests' / 'options' / 'train_st_tiny.yml'
ARCHS = ('st', 'glean', 'gfpgan')


def model_options(tmp_path, arch, **train):
    opt = single_process_options(TINY, tmp_path, **train)
    opt.update(model_type='FaceRestorationModel', network_g=tiny_network(arch), network_d=dict(TINY_D))
    if arch != 'st':
        opt['train']['optim_g'].pop('decoder_lr', None)
    return opt


batch = noisy_batch


def optimised(optimizer):
    return [p for group in optimizer.param_groups for p in group['params']]


@pytest.mark.parametrize('arch', ARCHS)
def test_one_step_reaches_every_trainable_parameter_and_nothing_else(tmp_path, arch):
    model = FaceRestorationModel(model_options(tmp_path, arch))
    with_grad = {}
    for name, optimizer in (('g', model.optimizer_g), ('d', model.optimizer_d)):
        step = optimizer.step  # record, as the optimizer steps, which parameters hold a finite gradient

        def recording_step(*args, _name=name, _opt=optimizer, _step=step, **kwargs):
            with_grad[_name] = {id(p) for p in optimised(_opt) if p.grad is not None and torch.isfinite(p.grad).all()}
            return _step(*args, **kwargs)
        optimizer.step = recording_step
    model.feed_data(batch())
    model.optimize_parameters(1)
    for name, net, optimizer in (('g', model.bare_g, model.optimizer_g), ('d', model.bare_d, model.optimizer_d)):
        trainable = {id(p) for p in net.parameters() if p.requires_grad}
        assert {id(p) for p in optimised(optimizer)} == trainable
        assert with_grad[name] == trainable
    assert all(np.isfinite(v) for v in model.log_dict.values())
    assert model.output.shape == (2, 3, 32, 32)


def test_gfpgan_parameters_that_do_not_affect_the_image_are_frozen(tmp_path):
    model = FaceRestorationModel(model_options(tmp_path, 'gfpgan'))
    frozen = {name for name, p in model.bare_g.named_parameters() if not p.requires_grad}
    assert {n.split('.')[0] for n in frozen} == {'toRGB', 'stylegan_decoder'}
    assert all(n.startswith('stylegan_decoder.style_mlp.') for n in frozen if n.startswith('stylegan_decoder'))


def test_generator_step_computes_no_discriminator_gradient(tmp_path):
    opt = model_options(tmp_path, 'st')
    opt['network_d']['num_frozen_blocks'] = 2
    model = FaceRestorationModel(opt)
    d = model.bare_d
    seen = {}
    step = model.optimizer_g.step

    def g_step(*args, **kwargs):  # the G step's end: D has been through the adversarial term
        seen['d_grads'] = [p.grad for p in d.parameters()]
        seen['d_trainable_on'] = [p.requires_grad for p in d.trainable_parameters()]
        return step(*args, **kwargs)
    model.optimizer_g.step = g_step
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert all(g is None for g in seen['d_grads'])
    assert all(seen['d_trainable_on'])  # switched back on after the adversarial term
    assert not any(p.requires_grad for p in d.frozen_parameters())  # FreezeD blocks never switched on
    assert {'l_g_pix', 'l_g_percep', 'l_g_gan'} <= set(model.log_dict)


def test_ema_averages_trainable_parameters_and_keeps_frozen_ones(tmp_path):
    model = FaceRestorationModel(model_options(tmp_path, 'st', ema_decay=0.5))
    before = {k: v.clone() for k, v in model.net_g_ema.state_dict().items()}
    model.feed_data(batch())
    model.optimize_parameters(1)
    live, ema = dict(model.bare_g.named_parameters()), dict(model.net_g_ema.named_parameters())
    name = 'encoder.to_w.weight'
    torch.testing.assert_close(ema[name], 0.5 * before[name] + 0.5 * live[name])
    mapping = [k for k in ema if k.startswith('decoder.style_mlp.')]
    assert mapping and all(torch.equal(ema[k], before[k]) for k in mapping)


def test_optimizer_options_group_lrs_betas_and_unknown_groups():
    groups = {'encoder': [torch.nn.Parameter(torch.zeros(1))], 'bank': [torch.nn.Parameter(torch.zeros(1))]}
    kind, params, kwargs = parse_optimizer({'type': 'Adam', 'lr': 1e-4, 'betas': [0, 0.9]}, groups, {'bank': 0.1})
    assert kind == 'Adam' and kwargs == {'betas': (0.0, 0.9)}
    assert {g['name']: g['lr'] for g in params} == pytest.approx({'encoder': 1e-4, 'bank': 1e-5})
    _, params, _ = parse_optimizer({'type': 'Adam', 'lr': 1e-4, 'bank_lr': 3e-4}, groups, {'bank': 0.1})
    assert {g['name']: g['lr'] for g in params}['bank'] == 3e-4
    with pytest.raises(TrainingOptionError, match=r'optim_g\.decoder_lr: .*groups: encoder, bank'):
        parse_optimizer({'type': 'Adam', 'lr': 1e-4, 'decoder_lr': 1e-5}, groups)


def test_glean_bank_group_defaults_to_a_tenth_when_not_fixed(tmp_path):
    opt = model_options(tmp_path, 'glean')
    opt['network_g']['fix_bank'] = False
    model = FaceRestorationModel(opt)
    lrs = {g['name']: g['lr'] for g in model.optimizer_g.param_groups}
    assert lrs == pytest.approx({'encoder': 1e-3, 'bank': 1e-4})


def test_gfpgan_arch_is_imported_on_demand_and_a_missing_package_names_the_extra():
    code = ("import sys, dlst_plugin; from basicsr.archs import build_network; assert 'gfpgan' not in sys.modules; "
            "net = build_network(%r); print(type(net).__module__)" % tiny_network('gfpgan'))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 0 and 'gfpgan.archs' in proc.stdout, proc.stderr[-2000:]
    code = ("import sys; sys.modules['gfpgan'] = None; import dlst_plugin; from basicsr.archs import build_network;"
            " build_network({'type': 'GFPGANv1Clean', 'out_size': 32})")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode != 0 and 'pip install "dlst-plugin[baselines]"' in proc.stderr


def test_gfpgan_decoder_loads_a_basicsr_prior_through_the_safe_reader(tmp_path):
    from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
    from dlst_plugin.checkpoints.stylegan2_layouts import to_gfpgan_clean
    from dlst_plugin.loading.networks import build_restorer
    torch.manual_seed(0)
    prior = PureStyleGAN2Generator(32, num_style_feat=32, num_mlp=2, channel_multiplier=1, narrow=1 / 16)
    torch.save({'params_ema': prior.state_dict()}, tmp_path / 'prior.pth')
    net = build_restorer(dict(tiny_network('gfpgan'), decoder_load_path=str(tmp_path / 'prior.pth')))
    expected = to_gfpgan_clean(prior.state_dict(), 0.01)
    assert all(torch.allclose(v, expected[k]) for k, v in net.stylegan_decoder.state_dict().items())
    torch.save({'params_ema': {'x': torch.zeros(1)}}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='bad.pth'):
        build_restorer(dict(tiny_network('gfpgan'), decoder_load_path=str(tmp_path / 'bad.pth')))


# per arch: (iterations, network_g overrides); the tiny ST needs more width to learn in few iterations.
# Held-out L2 / identity L2 measured with these: ST 0.53, GLEAN 0.52, GFP-GAN 0.54 (GLEAN: 0.47 at 300)
LEARNING = {'st': (150, {'narrow': 1 / 16, 'num_style_feat': 64, 'num_mlp': 1, 'skip_resolutions': [8, 16, 32]}),
            'glean': (200, {}), 'gfpgan': (300, {})}


@pytest.mark.slow
@pytest.mark.parametrize('arch', ARCHS)
def test_each_arch_learns_to_restore_held_out_faces(tmp_path, arch, one_thread):
    """A few hundred iterations through the general model (L2 only, batch 8, every group at lr 3e-3)
    bring the L2 of held-out crops (other crops, other noise) well below the degraded input's, for
    every Table 1 arch."""
    torch.manual_seed(0)
    train = _face_tensors(tmp_path / 'train', 32, 24, seed=0)
    held_gt = _face_tensors(tmp_path / 'held', 32, 8, seed=1)
    held_lq = _degrade(held_gt, torch.Generator().manual_seed(99))
    iters, network = LEARNING[arch]
    group_lrs = {'decoder_lr': 3e-3} if arch == 'st' else {}
    opt = model_options(tmp_path, arch, ema_decay=0, optim_g={'type': 'Adam', 'lr': 3e-3, 'betas': [0.9, 0.99],
                                                              **group_lrs},
                        scheduler={'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                                   'eta_min': 1e-4})
    opt['network_g'].update(network)
    for key in ('perceptual_opt', 'gan_opt'):
        opt['train'].pop(key)
    model = FaceRestorationModel(opt)
    g = torch.Generator().manual_seed(0)
    for it in range(1, iters + 1):
        gt = train[torch.randint(0, len(train), (8, ), generator=g)]
        model.feed_data({'lq': _degrade(gt, g), 'gt': gt})
        model.optimize_parameters(it)
        model.update_learning_rate(it)
    model.feed_data({'lq': held_lq, 'gt': held_gt})
    model.test()
    restored = torch.nn.functional.mse_loss(model.output, held_gt).item()
    identity = torch.nn.functional.mse_loss(held_lq, held_gt).item()
    assert restored < 0.6 * identity, f'{arch}: held-out L2 {restored:.4f} vs identity {identity:.4f}'
