"""A training run on a cluster: one run per experiment folder (a lock that dies with its process), and
SIGTERM / SIGUSR1 finish the iteration, save and exit 143, so that --auto_resume continues exactly. Under
torchrun, where a signal to one rank stops all of them: the torchrun run of test_launchers.py."""
import errno
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import REPO, face_crops, fill_option_paths, noisy_batch, run, single_process_options, subprocess_env
from signal_runs import wait_for

from dlst_plugin import run_control
from dlst_plugin.errors import ConfigError
from dlst_plugin.run_control import ExperimentLock, Preempted

ST_TINY = REPO / 'tests' / 'options' / 'train_st_tiny.yml'


def test_a_lock_held_by_a_live_process_stops_a_second_one_and_a_dead_ones_is_taken_over(tmp_path):
    root = tmp_path / 'experiments' / 'run'
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from dlst_plugin.run_control import ExperimentLock; '
        f'lock = ExperimentLock({str(root)!r}); lock.acquire(); print("held", flush=True); time.sleep(60)')],
        stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(ConfigError, match=rf'another run is training into {root} \(host .*, pid {holder.pid},'):
            ExperimentLock(root).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = ExperimentLock(root)
    assert f'pid {holder.pid}' in lock.acquire()  # a dead holder: taken over, and said so
    lock.release()
    again = ExperimentLock(root)
    assert again.acquire() is None  # released cleanly: nothing to report
    again.release()


def _failing_lockf(code):
    def lockf(handle, flags):
        raise OSError(code, os.strerror(code))
    return lockf


def test_a_file_system_without_locks_warns_once_and_goes_on(tmp_path, monkeypatch):
    """Only EACCES / EAGAIN mean another run holds the lock; ENOLCK (NFS without lockd) is a warning, once."""
    import fcntl
    monkeypatch.setattr(fcntl, 'lockf', _failing_lockf(errno.ENOLCK))
    lock = ExperimentLock(tmp_path / 'experiments' / 'run')
    assert 'going on without the lock' in lock.acquire() and lock.file is None
    assert ExperimentLock(tmp_path / 'experiments' / 'run').acquire() is None  # said once
    lock.release()
    monkeypatch.setattr(fcntl, 'lockf', _failing_lockf(errno.EAGAIN))
    with pytest.raises(ConfigError, match='another run is training into'):
        ExperimentLock(tmp_path / 'experiments' / 'run').acquire()


def test_a_lock_file_that_cannot_be_opened_is_a_config_error(tmp_path):
    (tmp_path / 'experiments').write_text('a file where the experiments folder should be')
    with pytest.raises(ConfigError, match=r'cannot open the lock file .*\.run\.lock'):
        ExperimentLock(tmp_path / 'experiments' / 'run').acquire()


def test_a_stop_inside_a_streak_of_skipped_steps_says_it_was_not_saved(tmp_path, monkeypatch):
    """The model declines to save inside a streak of skipped steps: the stop message says so and names the last
    checkpoint, instead of "finished and saved"."""
    from basicsr.models import build_model
    opt = single_process_options(ST_TINY, tmp_path, max_loss=50.0)
    opt['path']['experiments_root'] = str(tmp_path)
    torch.manual_seed(0)
    model = run_control.guard_optimize(build_model(opt), opt, {'epoch': 0})
    model.feed_data(noisy_batch())
    model.optimize_parameters(1)
    model.save(0, 1)
    exploding = noisy_batch()
    exploding['gt'] = exploding['gt'] * 1e3  # a finite L2 loss far above max_loss: a skipped step
    model.feed_data(exploding)
    monkeypatch.setattr(run_control.STOP, 'signal_name', 'SIGTERM')
    with pytest.raises(Preempted, match=r'iteration 2 finished but was not saved: the run is inside a streak of '
                                        r'skipped steps \(since iteration 2\); the last checkpoint is iteration 1 '
                                        r'\(.*net_g_1\.pth\)'):
        model.optimize_parameters(2)
    assert not (tmp_path / 'models' / 'net_g_2.pth').exists()


def _params(path):
    return torch.load(path, map_location='cpu', weights_only=True)['params']


@pytest.mark.slow
def test_a_sigterm_run_saves_refuses_a_twin_and_resumes_like_an_uninterrupted_one(tmp_path):
    face_crops(tmp_path / 'faces', size=32, count=8)
    opt = fill_option_paths(ST_TINY, tmp_path / 'o.yml', tmp_path / 'faces', {
        'train:total_iter': 100000, 'logger:save_checkpoint_freq': 3, 'logger:print_freq': 1})
    exp = tmp_path / 'experiments' / 'tiny_st'
    first = subprocess.Popen([sys.executable, '-m', 'dlst_plugin.train', '-opt', str(opt)], cwd=tmp_path,
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(exp / 'models' / 'net_g_3.pth', first)
        twin = run(['python', '-m', 'basicsr.train', '-opt', opt], cwd=tmp_path, check=False)
        assert twin.returncode == 2 and f'pid {first.pid}' in twin.stderr and 'Traceback' not in twin.stderr
        assert sorted(p.name for p in (tmp_path / 'experiments').iterdir()) == ['.tiny_st.lock', 'tiny_st']
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 143, err[-3000:]
    line = next(x for x in err.splitlines() if x.startswith('stopped by SIGTERM: SIGTERM received: iteration'))
    stopped = int(line.split('iteration ')[1].split()[0])
    assert (exp / 'training_states' / f'{stopped}.state').is_file() and 'Traceback' not in err
    reference = run(['python', '-m', 'dlst_plugin.train', '-opt', opt, '--force_yml', 'name=reference',
                     f'train:total_iter={stopped}', f'logger:save_checkpoint_freq={stopped}'], cwd=tmp_path)
    ref = _params(tmp_path / 'experiments' / 'reference' / 'models' / f'net_g_{stopped}.pth')
    assert reference.returncode == 0 and all(torch.equal(v, _params(exp / 'models' / f'net_g_{stopped}.pth')[k])
                                             for k, v in ref.items())
    resumed = run(['python', '-m', 'dlst_plugin.train', '-opt', opt, '--auto_resume', '--force_yml',
                   f'train:total_iter={stopped + 2}'], cwd=tmp_path)
    log = max(exp.glob('train_tiny_st_*.log'), key=os.path.getmtime).read_text()
    assert f'iter: {stopped}.' in log and (exp / 'models' / 'net_g_latest.pth').is_file(), resumed.stderr[-2000:]
