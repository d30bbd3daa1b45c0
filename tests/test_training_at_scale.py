"""The core's scale features: mixed precision (bf16, fp16 with scalers and R1), gradient checkpointing,
accumulation, the non-finite guard and clipping, channels-last, compile, fixed validation inputs. That DDP on
two CPU processes copies no gradients (no grad-stride warning) is the torchrun run's (test_launchers.py)."""
import pytest
import torch
from helpers import REPO, noisy_batch, single_process_options
from restorer_configs import TINY_D, tiny_network

import dlst_plugin  # noqa: F401
from dlst_plugin.errors import ConfigError
from dlst_plugin.models.face_restoration_model import FaceRestorationModel
from dlst_plugin.models.step_control import TrainingDivergedError

ST_TINY = REPO / 'tests' / 'options' / 'train_st_tiny.yml'
DL_TINY = REPO / 'tests' / 'options' / 'train_dl_tiny.yml'


def options(path, tmp_path, **train):
    return single_process_options(path, tmp_path, **train)


batch = noisy_batch


def build(opt):
    from basicsr.models import build_model
    torch.manual_seed(0)
    return build_model(opt)


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
@pytest.mark.parametrize('which', ['st', 'dl'])
def test_mixed_precision_steps_are_finite_and_checkpoints_stay_float32(tmp_path, which, dtype):
    opt = options(ST_TINY if which == 'st' else DL_TINY, tmp_path, use_amp=True, amp_dtype=dtype,
                  **({'net_d_reg_every': 1} if which == 'dl' else {'ema_decay': 0.9}))
    model = build(opt)
    assert (model.step_control.scalers['g'] is not None) == (dtype == 'float16')
    for it in range(1, 5):
        model.feed_data(batch(seed=it))
        model.optimize_parameters(it)
    # the last step is finite (float16: the first ones may be the scaler's calibration, skipped, not counted)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values()), model.log_dict
    if which == 'dl':
        assert 'l_d_r1' in model.log_dict  # R1 through autograd.grad under autocast (and the fp16 scaler)
    model.save(0, 4)
    saved = torch.load(tmp_path / 'models' / 'net_g_4.pth', map_location='cpu', weights_only=True)
    assert {v.dtype for key in ('params', 'params_ema') if key in saved for v in saved[key].values()
            if v.is_floating_point()} == {torch.float32}
    assert model.log_dict['nonfinite_steps'] == 0


def test_gradient_checkpointing_gives_the_plain_gradients():
    from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
    from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for cls, kwargs in ((SkipTransformer, {k: v for k, v in tiny_network('st').items() if k != 'type'}),
                        (GLEANStyleGAN2, {k: v for k, v in tiny_network('glean').items() if k != 'type'})):
        grads = []
        for use_checkpoint in (False, True):
            torch.manual_seed(0)
            net = cls(**kwargs, use_checkpoint=use_checkpoint)
            torch.manual_seed(1)  # same training-mode noise in both runs
            net(x).square().mean().backward()
            grads.append({n: p.grad for n, p in net.named_parameters() if p.requires_grad})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


def _accumulation_model(tmp_path, accum):
    opt = options(ST_TINY, tmp_path, accum_iter=accum, ema_decay=0.5,
                  optim_g={'type': 'SGD', 'lr': 0.1}, optim_d={'type': 'SGD', 'lr': 0.1})
    opt['train'].pop('scheduler')
    opt['network_g']['fix_decoder'] = True  # no noise strength to train: the decoder's random noise stays out
    opt['network_d']['stddev_group'] = 1  # minibatch-stddev groups are per micro-batch (documented)
    return build(opt)


def test_two_accumulated_batches_of_4_update_like_one_batch_of_8(tmp_path):
    data = batch(n=8, seed=3)
    one = _accumulation_model(tmp_path / 'one', 1)
    one.feed_data(data)
    one.optimize_parameters(1)
    two = _accumulation_model(tmp_path / 'two', 2)
    for it, part in ((1, slice(0, 4)), (2, slice(4, 8))):
        two.feed_data({k: v[part] for k, v in data.items()})
        two.optimize_parameters(it)
        if it == 1:  # no step yet: weights and EMA untouched
            assert all(torch.equal(a, b) for a, b in zip(two.bare_g.parameters(), _accumulation_model(
                tmp_path / 'fresh', 2).bare_g.parameters()))
    for net in ('bare_g', 'bare_d', 'net_g_ema'):
        for (name, a), b in zip(getattr(one, net).named_parameters(), getattr(two, net).parameters()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=f'{net}.{name}')


def test_non_finite_steps_are_skipped_counted_and_stop_the_run(tmp_path):
    model = build(options(ST_TINY, tmp_path, max_nonfinite_steps=3, grad_clip=1.0))
    before = [p.clone() for p in model.bare_g.parameters()]
    bad = batch()
    bad['lq'][0, 0, 0, 0] = float('nan')
    for it in (1, 2):
        model.feed_data(bad)
        model.optimize_parameters(it)
    assert all(torch.equal(a, b) for a, b in zip(before, model.bare_g.parameters()))
    assert model.log_dict['nonfinite_steps'] >= 2
    model.feed_data(batch())
    model.optimize_parameters(3)  # a good step resets the count in a row
    assert any(not torch.equal(a, b) for a, b in zip(before, model.bare_g.parameters()))
    with pytest.raises(TrainingDivergedError, match='in a row'):
        for it in range(4, 8):
            model.feed_data(bad)
            model.optimize_parameters(it)


def test_float16_overflow_is_a_skipped_step_the_ema_does_not_see(tmp_path):
    """A finite loss whose float16-scaled gradients overflow: the GradScaler skips the step; the core counts it
    as a non-finite step (no EMA update) and max_nonfinite_steps stops a run that keeps overflowing."""
    model = build(options(ST_TINY, tmp_path, use_amp=True, amp_dtype='float16', ema_decay=0.5, max_nonfinite_steps=3))
    scaler = model.step_control.scalers['g']
    scaler._init_scale = 2.0**120  # float16 gradients of any real loss overflow at this scale (and at half of it)
    ema_before = [p.clone() for p in model.net_g_ema.parameters()]
    for it in (1, 2):
        model.feed_data(batch(seed=it))
        model.optimize_parameters(it)
        assert torch.isfinite(torch.tensor(model.log_dict['l_g_pix']))  # the loss itself was finite
    assert model.log_dict['nonfinite_steps'] >= 2 and model.step_control.overflowed['g'] == 2
    assert all(torch.equal(a, b) for a, b in zip(ema_before, model.net_g_ema.parameters()))
    with pytest.raises(TrainingDivergedError, match='float16 overflows'):
        model.feed_data(batch(seed=3))
        model.optimize_parameters(3)


def test_a_finite_explosion_above_max_loss_is_caught_and_named(tmp_path):
    """train.max_loss: a finite loss above it is a skipped step; checkpoints are not written during a run of
    skipped steps, and the stop message names the last checkpoint saved before the first skipped one."""
    model = build(options(ST_TINY, tmp_path, max_loss=50.0, max_nonfinite_steps=2))
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert model.save(0, 1) is True
    exploding = batch()
    exploding['gt'] = exploding['gt'] * 1e3  # a finite L2 loss far above max_loss
    model.feed_data(exploding)
    weights = [p.clone() for p in model.bare_g.parameters()]
    model.optimize_parameters(2)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.bare_g.parameters()))  # the step was skipped
    assert model.save(0, 2) is False  # in a run of skipped steps: not written
    assert not (tmp_path / 'models' / 'net_g_2.pth').exists() and (tmp_path / 'models' / 'net_g_1.pth').exists()
    with pytest.raises(TrainingDivergedError, match=r'above train.max_loss \(50\), from iteration 2 .*iteration 1 '
                                                    r'\(.*net_g_1.pth\)'):
        model.optimize_parameters(3)


def test_grad_clip_bounds_the_gradient_norm_of_each_network(tmp_path):
    model = build(options(ST_TINY, tmp_path, grad_clip=1e-3))
    norms = {}
    for name, optimizer in (('g', model.optimizer_g), ('d', model.optimizer_d)):
        step = optimizer.step

        def recording(*args, _name=name, _opt=optimizer, _step=step, **kwargs):
            grads = [p.grad for group in _opt.param_groups for p in group['params'] if p.grad is not None]
            norms[_name] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
            return _step(*args, **kwargs)
        optimizer.step = recording
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert norms['g'] <= 1e-3 * 1.001 and norms['d'] <= 1e-3 * 1.001


def test_channels_last_puts_networks_and_inputs_in_channels_last(tmp_path):
    model = build(options(ST_TINY, tmp_path, channels_last=True))
    conv = model.bare_d.conv_body[1].conv1[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    model.feed_data(batch())
    assert model.lq.is_contiguous(memory_format=torch.channels_last)
    model.optimize_parameters(1)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())


def test_channels_last_with_an_arch_that_cannot_is_a_clear_error(tmp_path):
    opt = options(ST_TINY, tmp_path, channels_last=True)
    opt.update(model_type='FaceRestorationModel', network_g=tiny_network('gfpgan'), network_d=dict(TINY_D))
    opt['train']['optim_g'].pop('decoder_lr')
    with pytest.raises(ConfigError, match=r'train\.channels_last: network_g \(GFPGANv1Clean\)'):
        FaceRestorationModel(opt)


@pytest.mark.parametrize('native', [True, False])
def test_channels_last_default_follows_bf16_amp_on_a_native_bf16_cpu(tmp_path, monkeypatch, native):
    from dlst_plugin import devices
    monkeypatch.setattr(devices, 'cpu_has_native_bf16', lambda: native)
    model = build(options(ST_TINY, tmp_path, use_amp=True, amp_dtype='bfloat16'))
    conv = model.bare_d.conv_body[1].conv1[0].weight
    assert model.channels_last is native and conv.is_contiguous(memory_format=torch.channels_last) is native
    model.feed_data(batch())
    assert model.lq.is_contiguous(memory_format=torch.channels_last) is native
    fp32 = build(options(ST_TINY, tmp_path / 'fp32'))  # no AMP: contiguous on any CPU (its backward is slower)
    assert fp32.channels_last is False


def test_channels_last_default_keeps_an_arch_that_cannot_contiguous(tmp_path, monkeypatch):
    from dlst_plugin import devices
    monkeypatch.setattr(devices, 'cpu_has_native_bf16', lambda: True)
    opt = options(ST_TINY, tmp_path, use_amp=True, amp_dtype='bfloat16')
    opt.update(model_type='FaceRestorationModel', network_g=tiny_network('gfpgan'), network_d=dict(TINY_D))
    opt['train']['optim_g'].pop('decoder_lr')
    model = FaceRestorationModel(opt)  # GFP-GAN's arch flattens with .view: no error, contiguous
    assert model.channels_last is False
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())


class FlatteningDiscriminator(torch.nn.Module):
    """A tiny discriminator that flattens its features with ``.view`` (as BasicSR's StyleGAN2Discriminator):
    it cannot take channels-last input."""

    def __init__(self, out_size=32):
        super().__init__()
        self.out_size = out_size
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.linear = torch.nn.Linear(4 * (out_size // 2)**2, 1)

    def forward(self, x):
        feat = torch.nn.functional.leaky_relu(self.conv(x), 0.2)
        return self.linear(feat.view(feat.shape[0], -1))


def _with_flattening_d(tmp_path, **train):
    from basicsr.utils.registry import ARCH_REGISTRY
    if 'FlatteningDiscriminator' not in ARCH_REGISTRY:
        ARCH_REGISTRY.register(FlatteningDiscriminator)
    opt = options(ST_TINY, tmp_path, **train)
    opt['network_d'] = {'type': 'FlatteningDiscriminator', 'out_size': 32}
    return opt


def test_channels_last_default_keeps_contiguous_for_a_discriminator_that_cannot(tmp_path, monkeypatch, caplog):
    """``~`` checks the discriminator too (built on the meta device) before choosing channels-last: a D that
    flattens with .view keeps the run contiguous, with a log line naming it, instead of a ConfigError about a
    key the user never set."""
    from dlst_plugin import devices
    monkeypatch.setattr(devices, 'cpu_has_native_bf16', lambda: True)
    import logging
    records, handler = [], logging.Handler(logging.INFO)
    handler.emit = records.append
    caplog.set_level('INFO', logger='basicsr')
    logging.getLogger('basicsr').addHandler(handler)  # BasicSR's logger does not propagate (caplog misses it)
    try:
        model = build(_with_flattening_d(tmp_path, use_amp=True, amp_dtype='bfloat16'))
    finally:
        logging.getLogger('basicsr').removeHandler(handler)
    assert model.channels_last is False
    assert any('keeps contiguous memory (network_d cannot take channels-last input' in r.getMessage() for r in records)
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())


def test_channels_last_true_with_a_discriminator_that_cannot_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r'train\.channels_last: network_d \(FlatteningDiscriminator\)'):
        build(_with_flattening_d(tmp_path, channels_last=True))


def test_compile_option_trains_and_saves_plain_keys(tmp_path):
    model = build(options(ST_TINY, tmp_path, compile=True, compile_backend='eager'))
    assert type(model.net_g).__name__ == 'OptimizedModule'
    model.feed_data(batch())
    model.optimize_parameters(1)
    model.save(0, 1)
    saved = torch.load(tmp_path / 'models' / 'net_g_1.pth', map_location='cpu', weights_only=True)['params']
    assert not any(k.startswith('_orig_mod.') for k in saved)


def test_validation_inputs_are_the_same_at_every_validation(faces_dir):
    from dlst_plugin.data.degraded_face_dataset import DegradedFaceDataset
    block = {'dataroot_gt': str(faces_dir), 'io_backend': {'type': 'disk'}, 'out_size': 32, 'seed': 0}
    val = DegradedFaceDataset(dict(block, phase='val'))
    assert torch.equal(val[0]['lq'], val[0]['lq']) and torch.equal(val[3]['lq'], val[3]['lq'])
    train = DegradedFaceDataset(dict(block, phase='train'))
    assert not torch.equal(train[0]['lq'], train[0]['lq'])  # training draws anew


def test_minibatch_stddev_with_an_indivisible_batch_uses_the_largest_dividing_group(caplog):
    from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator, stddev_group_size
    assert [stddev_group_size(b, 4) for b in (8, 4, 2, 6, 5)] == [4, 4, 2, 3, 1]
    d = PureStyleGAN2Discriminator(16, narrow=1 / 32)
    x = torch.randn(6, 3, 16, 16)
    with caplog.at_level('WARNING'):
        out = d(x)
    assert out.shape == (6, 1) and 'groups of 3' in caplog.text
