"""End to end: every way users launch training/testing works on a CPU-only machine.

One training run per (launcher, model) pair checks that the pair works (other tests launch runs for other
claims: SIGTERM, neighbours, the release). Here: BasicSR's own SRModel on the plugin's dataset
through ``python -m basicsr.train``, ``dlst-train`` (then ``python -m dlst_plugin.test``) and ``python -m
dlst_plugin.train``, and the suite's one torchrun run (ST on streamed pairs, two CPU processes, stopped by
SIGTERM and resumed). Elsewhere: ST through ``python -m basicsr.train`` (test_skip_transformer_model.py) and
``python -m dlst_plugin.train`` (test_run_control.py), the degrader through ``python -m dlst_plugin.train``
(test_degradation_learning_model.py) and one-process torchrun (test_gpu_check.py), the StyleGAN2 prior through
``python -m dlst_plugin.train`` (test_stylegan2_prior.py), the Table 1 rows through ``dlst-train`` and
``dlst-table1 train`` (test_table1.py)."""
import glob
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, face_crops, fill_option_paths, run, subprocess_env, torchrun, write_options
from signal_runs import end_run, wait_for
from tiny_restorers import save_degrader_checkpoint

pytestmark = pytest.mark.slow
OPTIONS = REPO / 'tests' / 'options'
TEMPLATE = OPTIONS / 'train_tiny_sr.yml'
ST_TINY = OPTIONS / 'train_st_tiny.yml'


@pytest.fixture
def tiny_opt(tmp_path):
    face_crops(tmp_path / 'faces', size=32, count=8)
    return fill_option_paths(TEMPLATE, tmp_path / 'train.yml', tmp_path / 'faces')


def test_basicsr_train_entry_finds_plugin_and_writes_under_cwd(tmp_path, tiny_opt):
    proc = run(['python', '-m', 'basicsr.train', '-opt', tiny_opt], cwd=tmp_path)
    exp = tmp_path / 'experiments' / 'tiny_sr'
    assert (exp / 'models' / 'net_g_latest.pth').is_file(), proc.stdout + proc.stderr
    assert 'End of training' in proc.stdout + proc.stderr


def test_dlst_train_console_script_honours_experiments_root_and_dlst_test_restores(tmp_path, tiny_opt):
    """dlst-train writes where the option file's path.experiments_root says (nothing under ./experiments);
    python -m dlst_plugin.test then restores the faces with the weights it saved."""
    exe = shutil.which('dlst-train')
    assert exe, 'dlst-train is not on PATH: install the package (scripts/install.sh)'
    target = tmp_path / 'elsewhere' / 'run1'
    opt = write_options(tiny_opt, tmp_path / 'custom.yml', {'path:experiments_root': str(target)})
    run([exe, '-opt', opt], cwd=tmp_path)
    weights = target / 'models' / 'net_g_latest.pth'
    assert weights.is_file() and not (tmp_path / 'experiments').exists()
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


class _MakesFolder:
    """Pickles as a call to os.makedirs(path): code that a full unpickler runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.makedirs, (self.path, )


@pytest.mark.parametrize('kind', ['crafted', 'text'])
def test_unusable_pretrained_network_is_one_line_and_runs_no_code(tmp_path, tiny_opt, kind):
    """path.pretrain_network_g of BasicSR's own SRModel is read with weights_only=True even when torch's
    default is switched off: a crafted pickle runs nothing, a text file is named, no traceback."""
    marker = tmp_path / 'code_ran'
    bad = tmp_path / f'{kind}.pth'
    if kind == 'text':
        bad.write_text('these are not weights\n')
    else:
        torch.save({'params': _MakesFolder(str(marker))}, bad)  # pickled here; unpickling it would run makedirs
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


def test_experiments_root_given_by_force_yml_is_honoured(tmp_path, tiny_opt):
    """python -m dlst_plugin.train: --force_yml path:experiments_root overrides the option file's."""
    target = tmp_path / 'forced' / 'run1'
    opt = write_options(tiny_opt, tmp_path / 'custom.yml', {'train:total_iter': 2,
                                                            'path:experiments_root': str(tmp_path / 'in_file')})
    run(['python', '-m', 'dlst_plugin.train', '-opt', opt, '--force_yml', f'path:experiments_root={target}'],
        cwd=tmp_path)
    assert (target / 'models' / 'net_g_latest.pth').is_file()
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'in_file').exists()


def _torchrun_options(tmp_path):
    """The tiny ST with streamed pairs on 16 faces (4 iterations x 2 ranks x batch 2: one epoch), reading them
    through the probe dataset, until it is stopped; a checkpoint every 4 iterations."""
    face_crops(tmp_path / 'faces', size=32, count=16)
    degrader = save_degrader_checkpoint(tmp_path / 'degrader.pth')
    opt = fill_option_paths(ST_TINY, tmp_path / 'dist.yml', tmp_path / 'faces', {
        'datasets:train:type': 'IndexRecordingDataset', 'datasets:train:degradation_on_device': True,
        'train:stream_pairs': {'degrader': str(degrader), 'ratio': 0.5}, 'train:total_iter': 100_000,
        'logger:save_checkpoint_freq': 4, 'probe': '!!python/name:dist_probe.register', 'allow_unknown': ['probe']})
    text = Path(opt).read_text().replace("'!!python/name:dist_probe.register'", '!!python/name:dist_probe.register')
    Path(opt).write_text(text)
    return opt


def test_torchrun_two_cpu_processes_stop_together_on_sigterm_and_auto_resume(tmp_path):
    """The suite's one torchrun run (ST on streamed pairs, two CPU processes, DDP): both ranks read different
    samples; rank 0 alone logs and saves; SIGTERM to rank 1 alone stops both ranks after the same iteration,
    rank 0 saving networks and training state and saying so once; --auto_resume continues from that state with
    the iteration, both optimizers (with their parameter groups) and both schedulers restored; DDP warns of no
    gradient copies (grad strides) in either launch."""
    opt = _torchrun_options(tmp_path)
    command = [sys.executable if a == 'python' else str(a) for a in torchrun(
        2, '-m', 'dlst_plugin.train', '-opt', opt, '--launcher', 'pytorch')]
    env = subprocess_env(PYTHONPATH=f'{REPO}{os.pathsep}{REPO / "tests"}')
    exp = tmp_path / 'experiments' / 'tiny_st'
    with open(tmp_path / 'first.log', 'w') as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(exp / 'training_states' / '4.state', first)
            os.kill(int((tmp_path / 'pid_rank1.txt').read_text()), signal.SIGTERM)
            first.wait(timeout=120)
        finally:
            end_run(first)
    out = (tmp_path / 'first.log').read_text()
    assert first.returncode != 0, out[-3000:]
    # rank 0, which was sent nothing, stopped on rank 1's signal: it says so, once, and saved that iteration
    # (torchrun then reports the job failed: exit 1, each rank's code as it saw it end)
    stops = [line for line in out.splitlines() if 'stopped by SIGTERM' in line]
    assert len(stops) == 1 and 'iteration ' in stops[0], out[-3000:]
    stopped = int(stops[0].split('iteration ')[1].split()[0])
    assert stopped >= 4 and (exp / 'training_states' / f'{stopped}.state').is_file(), out[-3000:]
    assert (exp / 'models' / f'net_g_{stopped}.pth').is_file() and (exp / 'models' / f'net_d_{stopped}.pth').is_file()
    # the first 8 reads of each rank are its 4 batches of epoch 0 (BasicSR prefetches one more batch)
    seen = [set((tmp_path / f'indices_rank{r}.txt').read_text().split()[:8]) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 8 and not seen[0] & seen[1]
    assert len(list(exp.glob('train_tiny_st_*.log'))) == 1
    assert 'Streamed pairs: each batch = 2 drawn by the degrader' in out

    before = torch.load(exp / 'training_states' / f'{stopped}.state', map_location='cpu', weights_only=True)
    resumed = run(command + ['--auto_resume', '--force_yml', f'train:total_iter={stopped + 2}',
                             f'logger:save_checkpoint_freq={stopped + 2}'], cwd=tmp_path,
                  PYTHONPATH=env['PYTHONPATH'])
    log = max(exp.glob('train_tiny_st_*.log'), key=os.path.getmtime).read_text()
    assert 'Resuming training from epoch' in log and f'iter: {stopped}.' in log, resumed.stderr[-2000:]
    assert 'End of training' in resumed.stdout + resumed.stderr
    state = torch.load(exp / 'training_states' / f'{stopped + 2}.state', map_location='cpu', weights_only=True)
    assert state['iter'] == stopped + 2
    for optimizer in state['optimizers']:  # G and D: Adam continued (it would count 2 steps if not restored)
        assert {int(s['step']) for s in optimizer['state'].values()} == {stopped + 2}
    assert len(state['optimizers'][0]['param_groups']) == 3  # encoder, skip, decoder
    assert [s['last_epoch'] for s in state['schedulers']] == [s['last_epoch'] + 2 for s in before['schedulers']]
    for text in (out, resumed.stdout + resumed.stderr):
        assert 'Grad strides do not match bucket view strides' not in text


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
