"""Each BasicSR 1.4.2 patch in dlst_plugin/compat.py, one test each."""
import os
import os.path as osp
import sys

import pytest
import torch
import torch.distributed as dist
from helpers import REPO, free_port, run, write_options

import dlst_plugin  # noqa: F401
from dlst_plugin.errors import CheckpointLayoutError

TINY_SR = REPO / 'tests' / 'options' / 'train_tiny_sr.yml'


def test_functional_tensor_alias_serves_rgb_to_grayscale():
    import torchvision.transforms.functional_tensor as ft
    from torchvision.transforms import _functional_tensor as real
    assert ft.rgb_to_grayscale is real.rgb_to_grayscale


def test_startup_hook_imports_plugin_with_basicsr(tmp_path):
    code = 'import sys, basicsr; print("dlst_plugin" in sys.modules)'
    assert run(['python', '-c', code], cwd=tmp_path).stdout.strip() == 'True'
    assert run(['python', '-c', code], cwd=tmp_path, DLST_PLUGIN_AUTOLOAD='0').stdout.strip() == 'False'


def test_startup_hook_stays_light(tmp_path):
    code = 'import sys; print(any(m in sys.modules for m in ("torch", "basicsr", "dlst_plugin")))'
    assert run(['python', '-c', code], cwd=tmp_path).stdout.strip() == 'False'


@pytest.fixture
def single_process_group(monkeypatch):
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    from basicsr.utils.dist_util import init_dist
    init_dist('pytorch')
    yield
    dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback; with a GPU NCCL is the right choice')
def test_init_dist_uses_gloo_without_gpu(single_process_group):
    assert dist.get_backend() == 'gloo'


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_model_to_device_wraps_ddp_on_cpu(single_process_group):
    from basicsr.models.base_model import BaseModel
    from torch.nn.parallel import DistributedDataParallel
    model = BaseModel.__new__(BaseModel)
    model.opt, model.device = {'dist': True, 'num_gpu': 0}, torch.device('cpu')
    net = model.model_to_device(torch.nn.Linear(2, 2))
    assert isinstance(net, DistributedDataParallel)
    assert net(torch.ones(1, 2)).shape == (1, 2)


def _parse(tmp_path, monkeypatch, root, extra=''):
    opt_file = write_options(TINY_SR, tmp_path / 'o.yml', {'name': 'probe', 'num_gpu': 0})
    if extra:
        opt_file.write_text(opt_file.read_text().replace('path:\n', f'path:\n  {extra}\n'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['x', '-opt', str(opt_file)])
    from basicsr.utils.options import parse_options
    return parse_options(root, is_train=True)[0]


def test_parse_options_moves_experiments_out_of_site_packages(tmp_path, monkeypatch):
    import basicsr
    site_root = osp.abspath(osp.join(osp.dirname(basicsr.__file__), osp.pardir))
    opt = _parse(tmp_path, monkeypatch, site_root)
    assert opt['path']['experiments_root'] == osp.join(str(tmp_path), 'experiments', 'probe')


def test_parse_options_honours_experiments_root(tmp_path, monkeypatch):
    opt = _parse(tmp_path, monkeypatch, str(tmp_path), extra=f'experiments_root: {tmp_path}/runs/a')
    assert opt['path']['experiments_root'] == f'{tmp_path}/runs/a'
    assert opt['path']['models'] == f'{tmp_path}/runs/a/models'
    assert opt['path']['tb_logger'] == f'{tmp_path}/runs/a/tb_logger'


def test_auto_resume_reads_configured_root_onto_cpu(tmp_path):
    from basicsr import train
    states = tmp_path / 'exp' / 'training_states'
    states.mkdir(parents=True)
    from collections import Counter
    torch.save({'iter': 7, 'epoch': 1, 'optimizers': [], 'schedulers': [{'milestones': Counter({3: 1})}]},
               states / '7.state')
    torch.save({'iter': 3, 'epoch': 0, 'optimizers': [], 'schedulers': []}, states / '3.state')
    (tmp_path / 'exp' / 'models').mkdir()
    for it in (3, 7):
        torch.save({'params': {'w': torch.zeros(1)}}, tmp_path / 'exp' / 'models' / f'net_g_{it}.pth')
    opt = {'auto_resume': True, 'name': 'x', 'network_g': {}, 'path': {'training_states': str(states),
                                                       'models': str(tmp_path / 'exp' / 'models')}}
    state = train.load_resume_state(opt)
    assert state['iter'] == 7
    assert opt['path']['resume_state'].endswith('7.state')
    assert opt['path']['pretrain_network_g'].endswith(os.path.join('models', 'net_g_7.pth'))


def test_parse_options_runs_python_tags_of_the_option_file_once(tmp_path, monkeypatch):
    """The plugin reads the option file before BasicSR (to check it, for path.experiments_root) with a loader
    that evaluates no !!python/object tag: only BasicSR's own load runs it (os.makedirs would fail twice)."""
    made = tmp_path / 'made_by_the_option_file'
    opt_file = write_options(TINY_SR, tmp_path / 'o.yml', {'name': 'probe', 'num_gpu': 0,
                                                           'allow_unknown': ['payload']})
    opt_file.write_text(opt_file.read_text() + f"payload: !!python/object/apply:os.makedirs ['{made}']\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['x', '-opt', str(opt_file)])
    from basicsr.utils.options import parse_options
    parse_options(str(tmp_path), is_train=True)
    assert made.is_dir()


def _model():
    from basicsr.models.base_model import BaseModel
    return BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False, 'path': {}})


def test_load_network_runs_no_code_even_with_torch_unsafe_default(tmp_path, monkeypatch):
    marker = tmp_path / 'code_ran'

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker), ))

    crafted = tmp_path / 'crafted.pth'
    torch.save({'params': Payload()}, crafted)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(CheckpointLayoutError, match='crafted.pth') as err:
        _model().load_network(torch.nn.Linear(2, 2), str(crafted))
    assert not marker.exists()
    assert 'os.makedirs' in str(err.value) or 'posix.makedirs' in str(err.value)


@pytest.mark.parametrize('content', [b'not a checkpoint\n', b''], ids=['text', 'empty'])
def test_load_network_names_a_file_that_is_no_checkpoint(tmp_path, content):
    bad = tmp_path / 'net_g.pth'
    bad.write_bytes(content)
    with pytest.raises(CheckpointLayoutError) as err:
        _model().load_network(torch.nn.Linear(2, 2), str(bad))
    message = str(err.value)
    assert str(bad) in message and 'expected a network checkpoint saved by BasicSR' in message
    assert '\n' not in message


def test_load_network_reads_params_and_falls_back_from_params_ema(tmp_path):
    net = torch.nn.Linear(2, 2)
    torch.save({'params': {f'module.{k}': v for k, v in net.state_dict().items()}}, tmp_path / 'n.pth')
    other = torch.nn.Linear(2, 2)
    _model().load_network(other, str(tmp_path / 'n.pth'), param_key='params_ema')
    assert torch.equal(other.weight, net.weight)


def test_a_lock_failure_on_rank_0_is_the_verdict_every_rank_learns(tmp_path, monkeypatch, capsys,
                                                                   single_process_group):
    """An OSError on rank 0 while taking the lock (a full disk writing the holder line) must not escape before
    the verdict is broadcast, or the other ranks would wait forever: every rank exits with code 2."""
    from dlst_plugin import compat, run_control

    def acquire(self):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(run_control.ExperimentLock, 'acquire', acquire)
    opt = {'rank': 0, 'dist': True, 'path': {'experiments_root': str(tmp_path / 'experiments' / 'run')}}
    with pytest.raises(SystemExit) as stop:
        compat._guard_training_run(opt)
    assert stop.value.code == 2
    assert 'error: cannot take the lock' in capsys.readouterr().err
