"""SkipTransformerModel: losses, parameter groups, FreezeD, VGG start-up check, BasicSR training (on streamed
pairs) and validation, the test option file. Its resume is the torchrun run's (test_launchers.py); that ST
learns to restore faces, test_face_restoration_model.py's."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers import REPO, face_crops, noisy_batch, run, single_process_options, write_options
from tiny_restorers import save_degrader_checkpoint
from torch.nn import functional as F

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.models.skip_transformer_model import SkipTransformerModel

TINY = REPO / 'tests' / 'options' / 'train_st_tiny.yml'


def model_options(tmp_path, **train_updates):
    """The tiny option file as BasicSR's parser would hand it to the model (single CPU process)."""
    return single_process_options(TINY, tmp_path, **train_updates)


def batch(size=32, n=2, seed=0):
    return noisy_batch(n, size, seed)


def test_optimizer_groups_follow_paper_lrs(tmp_path):
    opt = model_options(tmp_path, optim_g={'type': 'Adam', 'lr': 5e-5, 'decoder_lr': 5e-6, 'betas': [0.5, 0.99]})
    model = SkipTransformerModel(opt)
    groups = {g['name']: g for g in model.optimizer_g.param_groups}
    assert {k: g['lr'] for k, g in groups.items()} == {'encoder': 5e-5, 'skip': 5e-5, 'decoder': 5e-6}
    assert all(g['betas'] == (0.5, 0.99) for g in groups.values())
    net = model.net_g
    assert {id(p) for p in groups['decoder']['params']} == {id(p) for p in net.param_groups()['decoder']}
    assert len(model.schedulers) == 2  # generator and discriminator, both CosineAnnealingRestartLR


def test_decoder_lr_defaults_to_a_tenth(tmp_path):
    model = SkipTransformerModel(model_options(tmp_path, optim_g={'type': 'Adam', 'lr': 1e-4}))
    lrs = {g['name']: g['lr'] for g in model.optimizer_g.param_groups}
    assert lrs['decoder'] == pytest.approx(1e-5) and lrs['skip'] == 1e-4


def test_step_logs_every_loss_and_keeps_frozen_weights(tmp_path):
    opt = model_options(tmp_path)
    opt['network_d']['num_frozen_blocks'] = 2
    model = SkipTransformerModel(opt)
    d = model.net_d
    frozen_before = [p.clone() for p in d.frozen_parameters()]
    trainable_before = [p.clone() for p in d.trainable_parameters()]
    mapping_before = [p.clone() for p in model.net_g.decoder.style_mlp.parameters()]
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert set(model.log_dict) >= {'l_g_pix', 'l_g_percep', 'l_g_gan', 'l_d_real', 'l_d_fake', 'out_d_real',
                                   'out_d_fake'}
    assert all(np.isfinite(v) for v in model.log_dict.values())
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, d.frozen_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(trainable_before, d.trainable_parameters()))
    assert all(not p.requires_grad for p in d.frozen_parameters())
    assert all(torch.equal(a, b) for a, b in zip(mapping_before, model.net_g.decoder.style_mlp.parameters()))


def test_visuals_map_the_images_from_minus_one_one_to_the_unit_range(tmp_path):
    """lq, result and gt go from the networks' [-1, 1] to the [0, 1] that BasicSR's tensor2img and metrics
    read: -1 is 0, 1 is 1."""
    model = SkipTransformerModel(model_options(tmp_path))
    data = batch()
    data['lq'][0, 0, 0, :2] = torch.tensor([-1.0, 1.0])
    model.feed_data(data)
    model.test()
    visuals = model.get_current_visuals()
    assert list(visuals) == ['lq', 'result', 'gt']
    for key, image in (('lq', data['lq']), ('result', model.output), ('gt', data['gt'])):
        torch.testing.assert_close(visuals[key], (image.detach().cpu() + 1) / 2, msg=key)
    assert visuals['lq'][0, 0, 0, :2].tolist() == [0.0, 1.0]
    assert all(0 <= visuals[k].min() and visuals[k].max() <= 1 for k in ('lq', 'gt'))


def test_missing_vgg_weights_stop_at_start_up_with_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv('DLST_WEIGHTS_DIR', str(tmp_path / 'weights'))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    opt = model_options(tmp_path)
    del opt['train']['perceptual_opt']['random_init']
    with pytest.raises(SystemExit) as exc:
        SkipTransformerModel(opt)
    message = str(exc.value)
    assert 'vgg16-397923af.pth' in message and str(tmp_path / 'weights') in message


def test_pretrained_discriminator_is_loaded(tmp_path):
    from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
    torch.manual_seed(3)
    d = PureStyleGAN2Discriminator(32, channel_multiplier=1, narrow=1 / 32)
    torch.save({'params': d.state_dict()}, tmp_path / 'd.pth')
    opt = model_options(tmp_path)
    opt['path']['pretrain_network_d'] = str(tmp_path / 'd.pth')
    model = SkipTransformerModel(opt)
    assert all(torch.equal(v, model.net_d.state_dict()[k]) for k, v in d.state_dict().items())


def _face_tensors(folder, size, count, seed):
    paths = face_crops(folder, size=size, count=count, seed=seed)
    imgs = np.stack([cv2.imread(str(p))[:, :, ::-1].astype(np.float32) / 255 for p in paths])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2) * 2 - 1


def _degrade(gt, generator, noise=0.15):
    """Blur (binomial 5x5) + Gaussian noise: a degraded copy of faces in [-1, 1]."""
    taps = torch.tensor([1., 4., 6., 4., 1.])
    kernel = (taps[:, None] * taps[None]) / 256
    blurred = F.conv2d(F.pad(gt, (2, 2, 2, 2), mode='reflect'), kernel.expand(3, 1, 5, 5), groups=3)
    return (blurred + noise * torch.randn(gt.shape, generator=generator)).clamp(-1, 1)


# That the ST learns to restore held-out faces through its training model is
# tests/test_face_restoration_model.py::test_each_arch_learns_to_restore_held_out_faces[st].


@pytest.fixture
def tiny_run(tmp_path):
    face_crops(tmp_path / 'faces', size=32, count=6, seed=0)
    face_crops(tmp_path / 'val', size=32, count=2, seed=1)
    val = {'name': 'val_faces', 'type': 'DegradedFaceDataset', 'dataroot_gt': str(tmp_path / 'val'),
           'io_backend': {'type': 'disk'}, 'out_size': 32, 'mean': [0.5] * 3, 'std': [0.5] * 3, 'seed': 7}
    metrics = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
               'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False}}
    return write_options(TINY, tmp_path / 'st.yml', {
        'datasets:train:dataroot_gt': str(tmp_path / 'faces'), 'datasets:val': val,
        'val': {'val_freq': 4, 'save_img': True, 'metrics': metrics}})


@pytest.mark.slow
def test_basicsr_train_trains_on_streamed_pairs_validates_and_saves(tmp_path, tiny_run):
    """python -m basicsr.train, half of each batch drawn by a degrader on the device: it trains, validates
    (PSNR, SSIM, images) and saves both networks, G with its metadata. (Resuming ST with its two optimizers and
    schedulers is the torchrun run's: test_launchers.py.)"""
    degrader = save_degrader_checkpoint(tmp_path / 'degrader.pth')
    opt = write_options(tiny_run, tiny_run, {'train:stream_pairs': {'degrader': str(degrader), 'ratio': 0.5},
                                             'datasets:train:degradation_on_device': True})
    proc = run(['python', '-m', 'basicsr.train', '-opt', opt], cwd=tmp_path)
    exp = tmp_path / 'experiments' / 'tiny_st'
    log = proc.stdout + proc.stderr
    assert 'End of training' in log and '# psnr' in log and '# ssim' in log, log[-3000:]
    assert 'Streamed pairs: each batch = 2 drawn by the degrader (second_order, pool off) + the 2 of the data ' \
           'loader' in log
    assert len(list((exp / 'visualization').rglob('*_4.png'))) == 2
    saved = torch.load(exp / 'models' / 'net_g_latest.pth', map_location='cpu', weights_only=True)
    assert set(saved) == {'params', 'params_ema', 'meta'} and saved['meta']['arch'] == 'SkipTransformer'
    assert (exp / 'models' / 'net_d_latest.pth').is_file()
    state = torch.load(exp / 'training_states' / '4.state', map_location='cpu', weights_only=True)
    assert state['iter'] == 4 and len(state['optimizers']) == 2


@pytest.mark.parametrize('name', ['train_dlst.yml', 'train_dlst_noattn.yml', 'test_dlst.yml'])
def test_option_files_build_the_paper_network(name):
    opt = yaml.safe_load((REPO / 'options' / name).read_text())
    net_opt = {k: v for k, v in opt['network_g'].items() if k not in ('type', 'decoder_load_path')}
    with torch.device('meta'):
        net = SkipTransformer(**net_opt)
    assert opt['model_type'] == 'SkipTransformerModel' and net.out_size == 512
    assert net.skip_resolutions == [8, 16, 32, 64, 128, 256]
    assert net.attention == (name != 'train_dlst_noattn.yml')
    if name.startswith('train'):
        train = opt['train']
        assert (train['optim_g']['lr'], train['optim_g']['decoder_lr'], train['optim_d']['lr']) == (5e-5, 5e-6, 5e-5)
        assert train['total_iter'] == 220000 and opt['datasets']['train']['batch_size_per_gpu'] == 8
        assert (train['pixel_opt']['loss_weight'], train['perceptual_opt']['loss_weight'],
                train['gan_opt']['loss_weight'], train['gan_opt']['gan_type']) == (1.0, 0.02, 0.02, 'vanilla')


@pytest.mark.slow
def test_test_option_restores_a_folder(tmp_path):
    """options/test_dlst.yml, shrunk to a 32 px network, restores every face of a folder: each written image is
    the network's output for that face (its EMA weights, evaluation mode)."""
    from basicsr.utils import img2tensor, tensor2img
    lq = face_crops(tmp_path / 'lq', size=32, count=3, seed=2)
    net_opt = dict(yaml.safe_load(TINY.read_text())['network_g'], skip_resolutions=[8, 16])
    torch.manual_seed(0)
    net = SkipTransformer(**{k: v for k, v in net_opt.items() if k != 'type'})
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, tmp_path / 'st.pth')
    opt = write_options(REPO / 'options' / 'test_dlst.yml', tmp_path / 'test.yml', {
        'datasets:test_1:dataroot_lq': str(tmp_path / 'lq'), 'network_g': net_opt,
        'path:pretrain_network_g': str(tmp_path / 'st.pth'), 'val:metrics': None, 'num_gpu': 0})
    run(['python', '-m', 'dlst_plugin.test', '-opt', opt], cwd=tmp_path)
    name = yaml.safe_load(Path(opt).read_text())['name']  # BasicSR's test names a result <face>_<name>.png
    out = {p.stem.removesuffix(f'_{name}'): p for p in (tmp_path / 'results').rglob('*.png')}
    assert sorted(out) == sorted(p.stem for p in lq)
    net.eval()
    with torch.no_grad():
        for path in lq:
            image = img2tensor(cv2.imread(str(path)).astype(np.float32) / 255, bgr2rgb=True, float32=True)
            expected = tensor2img((net(image[None] * 2 - 1) + 1) / 2)
            written = cv2.imread(str(out[path.stem]))
            assert written.shape == (32, 32, 3) and np.abs(written.astype(int) - expected).max() <= 1, path.name


@pytest.mark.slow
def test_training_without_vgg_file_exits_with_one_message(tmp_path):
    face_crops(tmp_path / 'faces', size=32, count=2, seed=0)
    opt = write_options(TINY, tmp_path / 'st.yml', {'datasets:train:dataroot_gt': str(tmp_path / 'faces'),
                                                    'train:perceptual_opt:random_init': False})
    proc = run(['python', '-m', 'dlst_plugin.train', '-opt', opt], cwd=tmp_path, check=False, timeout=120,
               DLST_WEIGHTS_DIR=tmp_path / 'weights', TORCH_HOME=tmp_path / 'torch_home')
    assert proc.returncode != 0
    assert 'vgg16-397923af.pth' in proc.stderr and str(tmp_path / 'weights') in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not list((tmp_path / 'experiments').rglob('*.pth'))
