"""Strict option files: every problem of a file in one message, exit code 2, before anything is read or built."""
import copy

import pytest
import yaml
from helpers import REPO, face_crops, fill_option_paths, run

import dlst_plugin  # noqa: F401
from dlst_plugin.errors import ConfigError
from dlst_plugin.options import ownership
from dlst_plugin.options.check import check_command_line, check_options
from dlst_plugin.options.schema import OptionsError

OPTIONS = REPO / 'tests' / 'options'
SHIPPED = sorted((REPO / 'options').glob('*.yml')) + sorted((REPO / 'options' / 'table1').glob('*.yml'))
TINY = sorted(OPTIONS.glob('*.yml'))
DEMO = sorted((REPO / 'dlst_plugin' / 'assets').glob('demo_*.yml'))
DEMO_NUMBERS = ('total_iter', 'save_checkpoint_freq', 'val_freq')  # FILLED_BY_DEMO with a number


def _load(path):
    return yaml.safe_load(path.read_text())


def _problems(opt, is_train=True):
    with pytest.raises(OptionsError) as err:
        check_options(opt, is_train, source='o.yml')
    return err.value.problems, str(err.value)


def _st(**changes):
    """The tiny Skip-Transformer options with ``changes`` ({'a.b': value}; value None deletes the key)."""
    opt = _load(OPTIONS / 'train_st_tiny.yml')
    for dotted, value in changes.items():
        *parents, last = dotted.split('.')
        node = opt
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return opt


def _renamed(opt, dotted, new_name):
    *parents, last = dotted.split('.')
    node = opt
    for key in parents:
        node = node[key]
    node[new_name] = node.pop(last)
    return opt


@pytest.mark.parametrize('path', SHIPPED + TINY, ids=lambda p: f'{p.parent.name}/{p.name}')
def test_shipped_and_test_option_files_pass(path):
    assert check_options(_load(path), is_train=not path.name.startswith('test_'), source=str(path)) == []


@pytest.mark.parametrize('path', DEMO, ids=lambda p: p.name)
def test_demo_option_files_pass_once_the_demo_fills_them(path):
    opt = _load(path)
    for block in [opt['train'], opt['logger'], opt.get('val') or {}]:
        for key in DEMO_NUMBERS:
            if block.get(key) == 'FILLED_BY_DEMO':
                block[key] = 10
    assert check_options(opt, source=str(path)) == []  # data roots stay FILLED_BY_DEMO: present is checked


@pytest.mark.parametrize('dotted,wrong,expected', [
    ('train.pixel_opt', 'pixel_optt', 'train.pixel_optt: unknown key; did you mean pixel_opt?'),
    ('train.ema_decay', 'ema_decayy', 'train.ema_decayy: unknown key; did you mean ema_decay?'),
    ('manual_seed', 'manual_seedd', 'manual_seedd: unknown key; did you mean manual_seed?'),
    ('train.total_iter', 'total_iters', 'train.total_iter: missing (required)'),
    ('logger.save_checkpoint_freq', 'save_checkpoint_frq', 'logger.save_checkpoint_freq: missing (required)'),
])
def test_misspelt_keys_are_named(dotted, wrong, expected):
    problems, _ = _problems(_renamed(_st(), dotted, wrong))
    assert expected in problems


@pytest.mark.parametrize('dotted,value,expected', [
    ('datasets.train.batch_size_per_gpu', '2', "expected an integer, got the string '2' (remove the quotes)"),
    ('train.optim_g.lr', '1e-4', "got the string '1e-4' (YAML reads 1e-4 as a string: write 1.0e-4)"),
    ('logger.print_freq', 'often', "expected a whole number, got the string 'often'"),
    ('train.ema_decay', 1.0, 'must be in [0, 1) (0 = no EMA), got 1.0'),
    ('train.optim_d.lr', 0, 'must be > 0, got 0'),
    ('train.total_iter', 0, 'must be > 0, got 0'),
    ('datasets.train.batch_size_per_gpu', 0, 'must be >= 1, got 0'),
    ('datasets.train.dataroot_gt', None, 'missing (required)'),
    ('datasets.train.degradation_on_devic', True, 'unknown key; did you mean degradation_on_device?'),
    ('datasets.train.type', 'DegradedFaceDatset', "unknown dataset type 'DegradedFaceDatset'; did you mean "
                                                   'DegradedFaceDataset?'),
    ('network_g.attentoin', True, "SkipTransformer takes no argument 'attentoin'; did you mean attention?"),
    ('train.gan_opt.gan_typ', 'vanilla', "GANLoss takes no argument 'gan_typ'; did you mean gan_type?"),
    ('train.scheduler.type', 'Cosine', 'must be one of MultiStepLR, MultiStepRestartLR, CosineAnnealingRestartLR'),
    ('model_type', 'SkipTransformerModell', "unknown model type 'SkipTransformerModell'; did you mean "
                                            'SkipTransformerModel?'),
])
def test_wrong_values_are_named(dotted, value, expected):
    problems, _ = _problems(_st(**{dotted: value}))
    assert any(p.startswith(dotted) and expected in p for p in problems), problems


def test_every_problem_comes_in_one_message_with_the_escape_hatch():
    opt = _renamed(_renamed(_st(**{'datasets.train.batch_size_per_gpu': '2'}), 'train.pixel_opt', 'pixel_optt'),
                   'manual_seed', 'manual_seedd')
    problems, message = _problems(opt)
    assert len(problems) == 3 and message.count('\n  - ') == 3
    assert 'allow_unknown: [manual_seedd, train.pixel_optt]' in message
    opt['allow_unknown'] = ['manual_seedd', 'train.pixel_optt']
    problems, message = _problems(opt)
    assert problems == ["datasets.train.batch_size_per_gpu: expected an integer, got the string '2' (remove the "
                        "quotes)"] and 'allow_unknown' not in message
    assert issubclass(OptionsError, ConfigError) and OptionsError.exit_code == 2


def test_basicsr_models_use_their_own_key_lists():
    sr = _renamed(_load(OPTIONS / 'train_tiny_sr.yml'), 'train.ema_decay', 'ema_decayy')
    problems, _ = _problems(sr)
    assert 'train.ema_decayy: unknown key; did you mean ema_decay?' in problems
    sr = _load(OPTIONS / 'train_tiny_sr.yml')
    sr['network_d'] = {'type': 'PureStyleGAN2Discriminator', 'out_size': 32}
    assert any(p.startswith('network_d: SRModel builds no network_d') for p in _problems(sr)[0])


def _stylegan2():
    """BasicSR's own StyleGAN2 recipe (options/train/StyleGAN/train_StyleGAN2_256_Cmul2_FFHQ.yml), shrunk."""
    return {
        'name': 'stylegan2', 'model_type': 'StyleGAN2Model', 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {'train': {'name': 'FFHQ', 'type': 'FFHQDataset', 'dataroot_gt': 'ffhq.lmdb',
                               'io_backend': {'type': 'lmdb'}, 'use_hflip': True, 'mean': [0.5] * 3, 'std': [0.5] * 3,
                               'use_shuffle': True, 'num_worker_per_gpu': 3, 'batch_size_per_gpu': 3,
                               'dataset_enlarge_ratio': 100, 'prefetch_mode': None}},
        'network_g': {'type': 'StyleGAN2Generator', 'out_size': 256, 'num_style_feat': 512, 'num_mlp': 8,
                      'channel_multiplier': 2, 'resample_kernel': [1, 3, 3, 1], 'lr_mlp': 0.01},
        'network_d': {'type': 'StyleGAN2Discriminator', 'out_size': 256, 'channel_multiplier': 2,
                      'resample_kernel': [1, 3, 3, 1]},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 2e-3}, 'optim_d': {'type': 'Adam', 'lr': 2e-3},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [600000], 'gamma': 0.5},
                  'total_iter': 800000, 'warmup_iter': -1,
                  'gan_opt': {'type': 'GANLoss', 'gan_type': 'wgan_softplus', 'loss_weight': 1.0},
                  'r1_reg_weight': 10, 'path_batch_shrink': 2, 'path_reg_weight': 2, 'net_g_reg_every': 4,
                  'net_d_reg_every': 16, 'mixing_prob': 0.9, 'net_d_iters': 1, 'net_d_init_iters': 0},
        'val': {'val_freq': 5e3, 'save_img': True},
        'logger': {'print_freq': 100, 'save_checkpoint_freq': 5e3, 'use_tb_logger': True,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }


def test_basicsr_stylegan2_recipe_passes_and_its_required_keys_are_required():
    check_options(_stylegan2())
    opt = _stylegan2()
    del opt['train']['path_batch_shrink'], opt['val']
    opt['train']['optim_g']['betas'] = [0, 0.99]
    opt['train']['ema_decay'] = 0.999
    problems, _ = _problems(opt)
    assert problems[0] == 'val: missing (required)' and problems[1].startswith('train.ema_decay: unknown key')
    assert problems[2:] == ['train.path_batch_shrink: missing (required)',
                            'train.optim_g.betas: unknown key (StyleGAN2Model reads only type and lr here)']


def test_plugin_gan_settings_must_agree():
    problems, _ = _problems(_st(**{'train.gan_opt': None}))
    assert any(p.startswith('network_d: is set but train.gan_opt is not') for p in problems)
    dl = _load(OPTIONS / 'train_dl_tiny.yml')
    del dl['train']['gan_opt']
    assert 'train.gan_opt: missing: DegradationLearningModel learns from the adversarial term' in _problems(dl)[0]


def test_gfpgan_arch_is_checked_against_its_constructor():
    opt = _load(REPO / 'options' / 'table1' / 'gfpgan_dl.yml')
    opt['network_g']['sft_halff'] = True
    assert any(p.startswith("network_g.sft_halff: GFPGANv1Clean takes no argument 'sft_halff'")
               for p in _problems(opt)[0])


def test_test_runs_need_val_and_test_datasets():
    opt = _load(REPO / 'options' / 'test_dlst.yml')
    del opt['val']['save_img']
    opt['datasets']['probe'] = opt['datasets']['test_1']
    problems, _ = _problems(opt, is_train=False)
    assert 'val.save_img: missing (required)' in problems
    assert any(p.startswith('datasets.probe: a test run reads datasets named test_') for p in problems)


def test_force_yml_overrides_are_checked(tmp_path):
    path = tmp_path / 'o.yml'
    path.write_text((OPTIONS / 'train_st_tiny.yml').read_text())
    with pytest.raises(OptionsError) as err:
        check_command_line(['-opt', str(path), '--force_yml', 'train:total_iter=0', 'train:nothere:x=1'], True)
    ownership.reset()
    assert err.value.problems == ['--force_yml train:nothere:x=1: train.nothere is not in the option file',
                                  'train.total_iter: must be > 0, got 0']


def test_force_yml_below_a_value_that_is_no_block_is_named(tmp_path):
    from dlst_plugin.options.file import apply_force_yml
    opt = {'train': {'total_iter': 5}}
    assert apply_force_yml(opt, ['train:total_iter:x=1', 'train:ema_decay=0.5']) == [
        '--force_yml train:total_iter:x=1: train.total_iter is not a block of keys']
    assert opt == {'train': {'total_iter': 5, 'ema_decay': 0.5}}


@pytest.mark.slow
def test_typos_stop_basicsr_train_with_exit_code_2_before_anything_runs(tmp_path):
    face_crops(tmp_path / 'faces', size=32, count=4)
    opt = fill_option_paths(OPTIONS / 'train_tiny_sr.yml', tmp_path / 'o.yml', tmp_path / 'faces',
                            {'datasets:train:batch_size_per_gpu': '2'})
    text = opt.read_text().replace('pixel_opt:', 'pixel_optt:').replace('manual_seed:', 'manual_seedd:')
    opt.write_text(text.replace('ema_decay:', 'ema_decayy:').replace('save_checkpoint_freq:', 'save_checkpoint_frq:'))
    proc = run(['python', '-m', 'basicsr.train', '-opt', opt], cwd=tmp_path, check=False, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    for line in ('manual_seedd: unknown key', 'train.pixel_optt: unknown key', 'train.ema_decayy: unknown key',
                 'logger.save_checkpoint_freq: missing', "batch_size_per_gpu: expected an integer, got the string '2'"):
        assert line in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'experiments').exists()
    test_opt = tmp_path / 't.yml'
    test_opt.write_text((REPO / 'options' / 'test_dlst.yml').read_text().replace('save_img:', 'save_imgg:'))
    proc = run(['python', '-m', 'dlst_plugin.test', '-opt', test_opt], cwd=tmp_path, check=False, timeout=300)
    assert proc.returncode == 2 and 'val.save_imgg: unknown key; did you mean save_img?' in proc.stderr
    assert not (tmp_path / 'results').exists()


def test_copy_of_options_is_not_changed_by_the_check():
    opt = _st()
    before = copy.deepcopy(opt)
    check_options(opt)
    assert opt == before


def test_the_plugins_own_read_of_an_option_file_runs_no_python_objects(tmp_path):
    from dlst_plugin.options.file import PythonTag, read_option_file
    made = tmp_path / 'made'
    path = tmp_path / 'o.yml'
    path.write_text(f"payload: !!python/object/apply:os.makedirs ['{made}']\n"
                    'plugin: !!python/name:dlst_plugin.compat.apply\n')
    opt = read_option_file(path)
    assert isinstance(opt['payload'], PythonTag) and not made.exists()
    assert opt['plugin'] is dlst_plugin.compat.apply  # imports, as BasicSR's own load does next


def test_help_says_option_files_are_trusted_like_code(monkeypatch):
    from helpers import call_main

    from dlst_plugin import train
    monkeypatch.setattr('sys.argv', ['dlst-train'])
    code, out, _ = call_main(train.main, ['--help'])
    assert code == 0 and 'trusted like code' in out and 'allow_unknown' in out and 'weights_only=True' in out
