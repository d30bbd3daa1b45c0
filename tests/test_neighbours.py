"""The plugin is a guest in every BasicSR process: other projects' runs (BasicSR's own models, GFP-GAN's and
Real-ESRGAN's train.py) end exactly as they do without it (DLST_PLUGIN_AUTOLOAD=0), findings aside, while a
plugin option file with a typo stops with exit code 2 from every launcher.

The option dicts are built here with the keys and values those projects' shipped option files use."""
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, face_crops, fill_option_paths, run

import dlst_plugin  # noqa: F401
from dlst_plugin.options import ownership
from dlst_plugin.options.check import check_options

LAUNCHERS = {'basicsr': 'basicsr.train', 'gfpgan': 'gfpgan.train', 'realesrgan': 'realesrgan.train'}
LOGGER = {'print_freq': 100, 'save_checkpoint_freq': 5e3, 'use_tb_logger': True,
          'wandb': {'project': None, 'resume_id': None}}


def gfpgan_options():
    """GFP-GAN 1.3.8's train_gfpgan_v1.yml, key for key (the values its own recipe sets)."""
    vgg = {'type': 'PerceptualLoss', 'layer_weights': {'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_4': 1, 'conv4_4': 1,
                                                       'conv5_4': 1},
           'vgg_type': 'vgg19', 'use_input_norm': True, 'perceptual_weight': 1.0, 'style_weight': 50,
           'range_norm': True, 'criterion': 'l1'}
    return {
        'name': 'train_GFPGANv1_512', 'model_type': 'GFPGANModel', 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'FFHQ', 'type': 'FFHQDegradationDataset', 'dataroot_gt': 'datasets/ffhq/ffhq_512',
                      'io_backend': {'type': 'disk'}, 'use_hflip': True, 'mean': [0.5] * 3, 'std': [0.5] * 3,
                      'out_size': 512, 'blur_kernel_size': 41, 'kernel_list': ['iso', 'aniso'],
                      'kernel_prob': [0.5, 0.5], 'blur_sigma': [0.1, 10], 'downsample_range': [0.8, 8],
                      'noise_range': [0, 20], 'jpeg_range': [60, 100], 'color_jitter_prob': 0.3,
                      'color_jitter_shift': 20, 'color_jitter_pt_prob': 0.3, 'gray_prob': 0.01,
                      'crop_components': True, 'component_path': 'FFHQ_eye_mouth_landmarks_512.pth',
                      'eye_enlarge_ratio': 1.4, 'use_shuffle': True, 'num_worker_per_gpu': 6,
                      'batch_size_per_gpu': 3, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {'name': 'validation', 'type': 'PairedImageDataset', 'dataroot_lq': 'val/input',
                    'dataroot_gt': 'val/reference', 'io_backend': {'type': 'disk'}, 'mean': [0.5] * 3,
                    'std': [0.5] * 3, 'scale': 1}},
        'network_g': {'type': 'GFPGANv1Clean', 'out_size': 512, 'num_style_feat': 512, 'channel_multiplier': 1,
                      'decoder_load_path': None, 'fix_decoder': True, 'num_mlp': 8, 'input_is_latent': True,
                      'different_w': True, 'narrow': 1, 'sft_half': True},
        'network_d': {'type': 'StyleGAN2Discriminator', 'out_size': 512, 'channel_multiplier': 1,
                      'resample_kernel': [1, 3, 3, 1]},
        'network_d_left_eye': {'type': 'FacialComponentDiscriminator'},
        'network_d_right_eye': {'type': 'FacialComponentDiscriminator'},
        'network_d_mouth': {'type': 'FacialComponentDiscriminator'},
        'network_identity': {'type': 'ResNetArcFace', 'block': 'IRBlock', 'layers': [2, 2, 2, 2], 'use_se': False},
        'path': {'pretrain_network_g': None, 'param_key_g': 'params_ema', 'strict_load_g': None,
                 'pretrain_network_d': None, 'pretrain_network_d_left_eye': None,
                 'pretrain_network_d_right_eye': None, 'pretrain_network_d_mouth': None,
                 'pretrain_network_identity': 'arcface_resnet18.pth', 'resume_state': None,
                 'ignore_resume_networks': ['network_identity']},
        'train': {'optim_g': {'type': 'Adam', 'lr': 2e-3}, 'optim_d': {'type': 'Adam', 'lr': 2e-3},
                  'optim_component': {'type': 'Adam', 'lr': 2e-3},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [600000, 700000], 'gamma': 0.5},
                  'total_iter': 800000, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 0.1, 'reduction': 'mean'},
                  'L1_opt': {'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'},
                  'pyramid_loss_weight': 1, 'remove_pyramid_loss': 50000, 'perceptual_opt': vgg,
                  'gan_opt': {'type': 'GANLoss', 'gan_type': 'wgan_softplus', 'loss_weight': 0.1},
                  'r1_reg_weight': 10, 'gan_component_opt': {'type': 'GANLoss', 'gan_type': 'vanilla',
                                                             'real_label_val': 1.0, 'fake_label_val': 0.0,
                                                             'loss_weight': 1.0},
                  'comp_style_weight': 200, 'identity_weight': 10, 'net_d_iters': 1, 'net_d_init_iters': 0,
                  'net_d_reg_every': 16},
        'val': {'val_freq': 5e3, 'save_img': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': LOGGER, 'dist_params': {'backend': 'nccl', 'port': 29500}, 'find_unused_parameters': True,
    }


def realesrgan_options():
    """Real-ESRGAN 0.3.0's train_realesrgan_x4plus.yml, key for key."""
    degradation = {'resize_prob': [0.2, 0.7, 0.1], 'resize_range': [0.15, 1.5], 'gaussian_noise_prob': 0.5,
                   'noise_range': [1, 30], 'poisson_scale_range': [0.05, 3], 'gray_noise_prob': 0.4,
                   'jpeg_range': [30, 95], 'second_blur_prob': 0.8, 'resize_prob2': [0.3, 0.4, 0.3],
                   'resize_range2': [0.3, 1.2], 'gaussian_noise_prob2': 0.5, 'noise_range2': [1, 25],
                   'poisson_scale_range2': [0.05, 2.5], 'gray_noise_prob2': 0.4, 'jpeg_range2': [30, 95]}
    kernels = {'blur_kernel_size': 21, 'kernel_list': ['iso', 'aniso', 'generalized_iso', 'generalized_aniso',
                                                       'plateau_iso', 'plateau_aniso'],
               'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], 'sinc_prob': 0.1, 'blur_sigma': [0.2, 3],
               'betag_range': [0.5, 4], 'betap_range': [1, 2]}
    return {
        'name': 'train_RealESRGANx4plus_400k_B12G4', 'model_type': 'RealESRGANModel', 'scale': 4, 'num_gpu': 'auto',
        'manual_seed': 0, 'l1_gt_usm': True, 'percep_gt_usm': True, 'gan_gt_usm': False, **degradation,
        'gt_size': 256, 'queue_size': 180,
        'datasets': {'train': {'name': 'DF2K+OST', 'type': 'RealESRGANDataset', 'dataroot_gt': 'datasets/DF2K',
                               'meta_info': 'meta_info.txt', 'io_backend': {'type': 'disk'}, **kernels,
                               'blur_kernel_size2': 21, 'kernel_list2': kernels['kernel_list'],
                               'kernel_prob2': kernels['kernel_prob'], 'sinc_prob2': 0.1, 'blur_sigma2': [0.2, 1.5],
                               'betag_range2': [0.5, 4], 'betap_range2': [1, 2], 'final_sinc_prob': 0.8,
                               'gt_size': 256, 'use_hflip': True, 'use_rot': False, 'use_shuffle': True,
                               'num_worker_per_gpu': 5, 'batch_size_per_gpu': 12, 'dataset_enlarge_ratio': 1,
                               'prefetch_mode': None}},
        'network_g': {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 23,
                      'num_grow_ch': 32},
        'network_d': {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 64, 'skip_connection': True},
        'path': {'pretrain_network_g': 'RealESRNet_x4plus.pth', 'param_key_g': 'params_ema', 'strict_load_g': True,
                 'resume_state': None},
        'train': {'ema_decay': 0.999, 'optim_g': {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                  'optim_d': {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [400000], 'gamma': 0.5},
                  'total_iter': 400000, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
                  'perceptual_opt': {'type': 'PerceptualLoss', 'layer_weights': {
                      'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_4': 1, 'conv4_4': 1, 'conv5_4': 1},
                      'vgg_type': 'vgg19', 'use_input_norm': True, 'perceptual_weight': 1.0, 'style_weight': 0,
                      'range_norm': False, 'criterion': 'l1'},
                  'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'real_label_val': 1.0, 'fake_label_val': 0.0,
                              'loss_weight': 0.1},
                  'net_d_iters': 1, 'net_d_init_iters': 0},
        'logger': LOGGER, 'dist_params': {'backend': 'nccl', 'port': 29500},
    }


def tof_test_options():
    """BasicSR 1.4.2's options/test/TOF/test_TOF_official.yml: a top-level save_img that BasicSR ignores."""
    return {'name': 'TOF_official', 'model_type': 'VideoBaseModel', 'scale': 4, 'num_gpu': 1, 'manual_seed': 0,
            'save_img': True,
            'datasets': {'test': {'name': 'Vid4', 'type': 'VideoTestVimeo90KDataset', 'dataroot_gt': 'Vid4/GT',
                                  'dataroot_lq': 'Vid4/BIx4', 'meta_info_file': 'meta_info_Vid4_GT.txt',
                                  'io_backend': {'type': 'disk'}, 'cache_data': False, 'num_frame': 7,
                                  'padding': 'reflection_circle'}},
            'network_g': {'type': 'TOFlow', 'adapt_official_weights': True},
            'path': {'pretrain_network_g': 'TOF_official.pth', 'strict_load_g': True},
            'val': {'save_img': False, 'suffix': None,
                    'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': True}}}}


@pytest.fixture(autouse=True)
def _forget_the_decision():
    yield
    ownership.reset()


@pytest.mark.parametrize('make', [gfpgan_options, realesrgan_options])
def test_other_projects_option_files_have_no_findings(make):
    import gfpgan  # noqa: F401  (registers GFPGANModel, FFHQDegradationDataset, the archs)
    import realesrgan  # noqa: F401
    opt = make()
    assert not ownership.plugin_types(opt)  # they name no type of the plugin: not the plugin's run
    assert check_options(opt, plugin_run=False) == []
    assert check_options(opt, plugin_run=True) == []  # even the strict check accepts them (strict_load_g: ~)


def test_a_finding_is_a_warning_for_others_and_allow_unknown_covers_value_checks():
    findings = check_options(tof_test_options(), is_train=False, plugin_run=False)
    assert len(findings) == 1 and findings[0].startswith('save_img: unknown key; known here: ')
    opt = gfpgan_options()
    opt['path']['strict_load_g'] = 'yes'
    assert check_options(opt, plugin_run=False) == ["path.strict_load_g: expected true or false, got the string "
                                                    "'yes'"]
    opt['allow_unknown'] = ['path.strict_load_g']
    assert check_options(opt, plugin_run=False) == []


def _write(opt, path):
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def _ending(proc):
    """What a run's end looks like: exit code and its last stderr line (the exception, for a traceback)."""
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    return proc.returncode, lines[-1] if lines else ''


@pytest.mark.slow
@pytest.mark.parametrize('launcher,make', [('gfpgan', gfpgan_options), ('realesrgan', realesrgan_options)])
def test_other_projects_runs_end_as_without_the_plugin(tmp_path, launcher, make):
    """Each through its own launcher: a run that stops at its resume state (before BasicSR writes anything)
    ends with the same exit code and error with the plugin and without it."""
    opt = make()
    opt['path']['resume_state'] = str(tmp_path / 'missing.state')
    path = _write(opt, tmp_path / 'o.yml')
    cmd = ['python', '-m', LAUNCHERS[launcher], '-opt', path]
    with_plugin, without = (run(cmd, cwd=tmp_path, check=False, DLST_PLUGIN_AUTOLOAD=flag) for flag in ('1', '0'))
    assert _ending(with_plugin) == _ending(without) and with_plugin.returncode != 0, with_plugin.stderr[-3000:]
    assert 'dlst-plugin option check' not in with_plugin.stderr  # nothing to report in their own files


@pytest.mark.slow
def test_a_basicsr_run_trains_to_the_same_weights_with_and_without_the_plugin(tmp_path):
    """python -m basicsr.train with BasicSR's own SRModel and PairedImageDataset (and a stray top-level key,
    a finding): exit 0 both ways, the same checkpoints, under BasicSR's own experiments root."""
    import basicsr
    root = Path(basicsr.__file__).resolve().parents[1] / 'experiments'
    face_crops(tmp_path / 'gt', size=32, count=4)
    shutil.copytree(tmp_path / 'gt', tmp_path / 'lq')
    names = {flag: f'dlst_neighbour_{flag}_{tmp_path.name}' for flag in ('1', '0')}
    try:
        weights = {}
        for flag, name in names.items():
            path = _write(_sr_options(tmp_path, name), tmp_path / f'{name}.yml')
            proc = run(['python', '-m', 'basicsr.train', '-opt', path], cwd=tmp_path, check=False,
                       DLST_PLUGIN_AUTOLOAD=flag)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert ('save_img: unknown key' in proc.stderr) == (flag == '1')  # the plugin warns, and that is all
            weights[flag] = torch.load(root / name / 'models' / 'net_g_2.pth', map_location='cpu', weights_only=True)
        assert all(torch.equal(v, weights['0']['params'][k]) for k, v in weights['1']['params'].items())
    finally:
        for name in names.values():
            shutil.rmtree(root / name, ignore_errors=True)


def _sr_options(folder, name):
    return {'name': name, 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0, 'save_img': True,
            'datasets': {'train': {'name': 'pairs', 'type': 'PairedImageDataset', 'dataroot_gt': str(folder / 'gt'),
                                   'dataroot_lq': str(folder / 'lq'), 'io_backend': {'type': 'disk'}, 'gt_size': 16,
                                   'use_hflip': True, 'use_rot': False, 'num_worker_per_gpu': 0,
                                   'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
            'network_g': {'type': 'SRVGGNetCompact', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_conv': 2,
                          'upscale': 1, 'act_type': 'prelu'},
            'path': {'pretrain_network_g': None, 'strict_load_g': None, 'resume_state': None},
            'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10],
                                                                             'gamma': 0.5},
                      'total_iter': 2, 'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
            'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}}


@pytest.mark.slow
@pytest.mark.parametrize('launcher', ['gfpgan', 'realesrgan'])
def test_a_plugin_option_file_with_a_typo_stops_every_launcher_with_exit_code_2(tmp_path, launcher):
    face_crops(tmp_path / 'faces', size=32, count=4)
    opt = fill_option_paths(REPO / 'tests' / 'options' / 'train_st_tiny.yml', tmp_path / 'st.yml', tmp_path / 'faces')
    Path(opt).write_text(Path(opt).read_text().replace('pixel_opt:', 'pixel_optt:'))
    proc = run(['python', '-m', LAUNCHERS[launcher], '-opt', opt], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith('error: ') or '\nerror: ' in proc.stderr
    assert 'train.pixel_optt: unknown key; did you mean pixel_opt?' in proc.stderr
    assert not (tmp_path / 'experiments').exists()  # the error came before anything was written
