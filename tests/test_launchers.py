"""End to end: every way users launch training/testing works on a CPU-only machine."""
import glob
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from helpers import REPO, face_crops, fill_option_paths, run, write_options

pytestmark = pytest.mark.slow
TEMPLATE = REPO / 'tests' / 'options' / 'train_tiny_sr.yml'


OPTIONS = REPO / 'tests' / 'options'


@pytest.fixture
def tiny_opt(tmp_path):
    face_crops(tmp_path / 'faces', size=32, count=8)
    return fill_option_paths(TEMPLATE, tmp_path / 'train.yml', tmp_path / 'faces')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_basicsr_train_entry_finds_plugin_and_writes_under_cwd(tmp_path, tiny_opt):
    proc = run(['python', '-m', 'basicsr.train', '-opt', tiny_opt], cwd=tmp_path)
    exp = tmp_path / 'experiments' / 'tiny_sr'
    assert (exp / 'models' / 'net_g_latest.pth').is_file(), proc.stdout + proc.stderr
    assert 'End of training' in proc.stdout + proc.stderr


def test_dlst_train_console_script_and_dlst_test(tmp_path, tiny_opt):
    exe = shutil.which('dlst-train')
    assert exe, 'dlst-train is not on PATH: install the package (scripts/install.sh)'
    run([exe, '-opt', tiny_opt], cwd=tmp_path)
    weights = tmp_path / 'experiments' / 'tiny_sr' / 'models' / 'net_g_latest.pth'
    assert weights.is_file()
    test_opt = write_options(tiny_opt, tmp_path / 'test.yml', {
        'name': 'tiny_sr_test', 'path:pretrain_network_g': str(weights), 'val:save_img': True, 'val:suffix': None,
        'val:metrics:psnr:type': 'calculate_psnr', 'val:metrics:psnr:crop_border': 0,
        'datasets:test_1': {'name': 'faces', 'type': 'DegradedFaceDataset', 'dataroot_gt': str(tmp_path / 'faces'),
                            'io_backend': {'type': 'disk'}, 'out_size': 32, 'mean': [0.5] * 3, 'std': [0.5] * 3}})
    _drop_key(test_opt, 'datasets', 'train')
    run(['python', '-m', 'dlst_plugin.test', '-opt', test_opt], cwd=tmp_path)
    assert len(glob.glob(str(tmp_path / 'results' / 'tiny_sr_test' / 'visualization' / 'faces' / '*.png'))) == 8


def _drop_key(path, *keys):
    import yaml
    opt = yaml.safe_load(Path(path).read_text())
    node = opt
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    Path(path).write_text(yaml.safe_dump(opt, sort_keys=False))


@pytest.mark.parametrize('kind', ['crafted', 'text'])
def test_unusable_pretrained_network_is_one_line_and_runs_no_code(tmp_path, tiny_opt, kind):
    """path.pretrain_network_g of BasicSR's own SRModel is read with weights_only=True even when torch's
    default is switched off: a crafted pickle runs nothing, a text file is named, no traceback."""
    marker = tmp_path / 'code_ran'
    bad = tmp_path / f'{kind}.pth'
    if kind == 'text':
        bad.write_text('these are not weights\n')
    else:
        run(['python', '-c', 'import os, sys, torch\n'
             'class P:\n    def __reduce__(self): return (os.makedirs, (sys.argv[2], ))\n'
             'torch.save({"params": P()}, sys.argv[1])', bad, marker], cwd=tmp_path)
    opt = write_options(tiny_opt, tmp_path / 'pretrained.yml', {'path:pretrain_network_g': str(bad)})
    proc = run(['python', '-m', 'dlst_plugin.train', '-opt', opt], cwd=tmp_path, check=False,
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    assert proc.returncode == 2, proc.stderr[-3000:]  # a weights file that cannot be used: nothing was done
    error = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(error) == 1 and str(bad) in error[0] and 'expected a network checkpoint' in error[0]
    assert 'Traceback' not in proc.stderr and not marker.exists()


def test_missing_option_file_is_one_line(tmp_path):
    proc = run(['python', '-m', 'dlst_plugin.train', '-opt', 'nope.yml'], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert 'option file not found: nope.yml' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_experiments_root_option_is_honoured(tmp_path, tiny_opt):
    target = tmp_path / 'elsewhere' / 'run1'
    opt = write_options(tiny_opt, tmp_path / 'custom.yml', {'path:experiments_root': str(target),
                                                            'train:total_iter': 2})
    run(['python', '-m', 'dlst_plugin.train', '-opt', opt], cwd=tmp_path)
    assert (target / 'models' / 'net_g_latest.pth').is_file()
    assert not (tmp_path / 'experiments').exists()


def test_experiments_root_given_by_force_yml_is_honoured(tmp_path, tiny_opt):
    target = tmp_path / 'forced' / 'run1'
    opt = write_options(tiny_opt, tmp_path / 'custom.yml', {'train:total_iter': 2})
    run(['python', '-m', 'basicsr.train', '-opt', opt, '--force_yml', f'path:experiments_root={target}'], cwd=tmp_path)
    assert (target / 'models' / 'net_g_latest.pth').is_file()
    assert not (tmp_path / 'experiments').exists()


def test_torchrun_two_cpu_processes_train_and_auto_resume(tmp_path, tiny_opt):
    """Both ranks read different samples; rank 0 alone logs and saves; --auto_resume
    continues from the last state with iteration, optimizer and scheduler restored."""
    face_crops(tmp_path / 'faces16', size=32, count=16)  # 4 iterations x 2 ranks x batch 2: one epoch
    opt = write_options(tiny_opt, tmp_path / 'dist.yml', {
        'datasets:train:type': 'IndexRecordingDataset', 'datasets:train:dataroot_gt': str(tmp_path / 'faces16'),
        'probe': '!!python/name:dist_probe.register', 'allow_unknown': ['probe']})
    text = Path(opt).read_text().replace("'!!python/name:dist_probe.register'", '!!python/name:dist_probe.register')
    Path(opt).write_text(text)
    torchrun = ['python', '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={_free_port()}',
                '-m', 'dlst_plugin.train', '-opt', opt, '--launcher', 'pytorch']
    run(torchrun, cwd=tmp_path, PYTHONPATH=f'{REPO}{os.pathsep}{REPO / "tests"}')
    # the first 8 reads of each rank are its 4 batches of epoch 0 (BasicSR prefetches one more batch)
    seen = [set((tmp_path / f'indices_rank{r}.txt').read_text().split()[:8]) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 8
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    exp = tmp_path / 'experiments' / 'tiny_sr'
    assert len(list(exp.glob('train_tiny_sr_*.log'))) == 1
    assert (exp / 'training_states' / '4.state').is_file()

    proc = run(torchrun + ['--auto_resume', '--force_yml', 'train:total_iter=8'], cwd=tmp_path,
               PYTHONPATH=f'{REPO}{os.pathsep}{REPO / "tests"}')
    log = sorted(exp.glob('train_tiny_sr_*.log'))[-1].read_text()
    assert 'Resuming training from epoch' in log and 'iter: 4.' in log, proc.stdout[-2000:]
    state = torch.load(exp / 'training_states' / '8.state', map_location='cpu', weights_only=True)
    assert state['iter'] == 8
    adam_steps = {int(s['step']) for s in state['optimizers'][0]['state'].values()}
    assert adam_steps == {8}, 'optimizer state was not restored (Adam would count 4 steps)'
    # BasicSR steps schedulers from iteration 2 on: 7 steps by iteration 8 (3 if not restored)
    assert state['schedulers'][0]['last_epoch'] == 7


# The plugin's own models through every launcher the issues name: (option file, experiment name, launchers)
PLUGIN_RUNS = [('train_dl_tiny.yml', 'tiny_dl', ['basicsr', 'dlst-train', 'torchrun']),
               ('train_st_tiny.yml', 'tiny_st', ['basicsr', 'torchrun'])]


@pytest.mark.parametrize('option,name,launcher', [(o, n, la) for o, n, las in PLUGIN_RUNS for la in las])
def test_plugin_models_train_through_each_launcher(tmp_path, option, name, launcher):
    face_crops(tmp_path / 'faces', size=32, count=8)
    opt = fill_option_paths(OPTIONS / option, tmp_path / option, tmp_path / 'faces')
    commands = {
        'basicsr': ['python', '-m', 'basicsr.train', '-opt', opt],
        'dlst-train': [shutil.which('dlst-train') or 'dlst-train', '-opt', opt],
        'torchrun': ['python', '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={_free_port()}',
                     '-m', 'dlst_plugin.train', '-opt', opt, '--launcher', 'pytorch'],
    }
    proc = run(commands[launcher], cwd=tmp_path)
    models = tmp_path / 'experiments' / name / 'models'
    assert sorted(p.name for p in models.glob('net_g_*.pth')), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (models / 'net_g_latest.pth').is_file()
    state = torch.load(tmp_path / 'experiments' / name / 'training_states' / '4.state', map_location='cpu',
                       weights_only=True)
    assert state['iter'] == 4


def _setup_kwargs(monkeypatch):
    """The keyword arguments setup.py passes to setuptools.setup (nothing is built)."""
    import runpy

    import setuptools
    captured = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kwargs: captured.update(kwargs))
    runpy.run_path(str(REPO / 'setup.py'), run_name='setup_under_test')
    return captured


@pytest.mark.parametrize('command', ['build_py', 'editable_wheel'])
def test_every_wheel_carries_the_startup_hook(tmp_path, monkeypatch, command):
    """pip install . (build_py) and pip install -e . (a PEP 660 editable wheel) both put
    dlst_plugin_startup.pth at the wheel's root, so site.py runs it at start-up."""
    from setuptools.command.build_py import build_py
    from setuptools.command.editable_wheel import editable_wheel
    cls = _setup_kwargs(monkeypatch)['cmdclass'][command]
    base = {'build_py': build_py, 'editable_wheel': editable_wheel}[command]
    assert issubclass(cls, base)
    if command == 'build_py':
        monkeypatch.setattr(base, 'run', lambda self: None)
        cmd = cls.__new__(cls)
        cmd.build_lib = str(tmp_path)
        cmd.run()
    else:
        assert callable(getattr(base, '_run_build_commands', None)), 'setuptools renamed the editable build step'
        monkeypatch.setattr(base, '_run_build_commands', lambda self, name, unpacked, lib, tmp: (['f'], {}))
        assert cls._run_build_commands(cls.__new__(cls), 'dlst_plugin', str(tmp_path), 'lib', 'tmp') == (['f'], {})
    pth = tmp_path / 'dlst_plugin_startup.pth'
    assert pth.read_text().strip() == 'import dlst_plugin_startup'
