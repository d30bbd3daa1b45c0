"""Nothing lost: checkpoints are written atomically, a failed save stops the run, and --auto_resume takes the
newest *complete* training state (a truncated state or missing/unreadable networks: the previous one).
End to end, through a real run: test_degradation_learning_model.py's tiny run resumes past a truncated state."""
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import pytest
import torch
from helpers import subprocess_env

import dlst_plugin  # noqa: F401
from dlst_plugin.errors import DLSTError


def _save_run(root, iterations, networks=('g', )):
    """A finished run's files: ``N.state`` and ``net_<x>_N.pth`` for each iteration."""
    states, models = root / 'training_states', root / 'models'
    states.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    for it in iterations:
        torch.save({'iter': it, 'epoch': 0, 'optimizers': [], 'schedulers': [{'milestones': Counter({5: 1})}]},
                   states / f'{it}.state')
        for net in networks:
            torch.save({'params': {'w': torch.full((2, ), float(it))}}, models / f'net_{net}_{it}.pth')
    opt = {'auto_resume': True, 'name': 'x', 'rank': 0,
           'path': {'training_states': str(states), 'models': str(models)}}
    opt.update({f'network_{net}': {'type': 'X'} for net in networks})
    return opt


def _resume(opt):
    from basicsr import train
    return train.load_resume_state(opt)  # compat puts the plugin's policy here


def test_truncated_newest_state_resumes_from_the_previous_one(tmp_path, capsys):
    opt = _save_run(tmp_path, [3, 6])
    newest = tmp_path / 'training_states' / '6.state'
    os.truncate(newest, 0)
    state = _resume(opt)
    assert state['iter'] == 3 and opt['path']['resume_state'].endswith('3.state')
    assert opt['path']['pretrain_network_g'].endswith('net_g_3.pth')
    assert newest.exists(), 'a damaged state must never be deleted'
    err = capsys.readouterr().err
    assert '6.state skipped and left on disk' in err and 'truncated or unreadable' in err


@pytest.mark.parametrize('damage', ['missing', 'truncated'])
@pytest.mark.parametrize('net', ['g', 'd'])
def test_newest_state_without_readable_networks_is_skipped(tmp_path, capsys, damage, net):
    opt = _save_run(tmp_path, [3, 6], networks=('g', 'd'))
    weights = tmp_path / 'models' / f'net_{net}_6.pth'
    if damage == 'missing':
        weights.unlink()
    else:
        os.truncate(weights, weights.stat().st_size // 2)
    assert _resume(opt)['iter'] == 3
    assert f'net_{net}_6.pth' in capsys.readouterr().err


def test_ignored_resume_network_is_not_required(tmp_path):
    opt = _save_run(tmp_path, [3, 6], networks=('g', 'd'))
    (tmp_path / 'models' / 'net_d_6.pth').unlink()
    opt['path']['ignore_resume_networks'] = ['network_d']
    assert _resume(opt)['iter'] == 6


def test_no_complete_state_stops_instead_of_starting_over(tmp_path):
    opt = _save_run(tmp_path, [3])
    os.truncate(tmp_path / 'training_states' / '3.state', 0)
    with pytest.raises(DLSTError, match='no complete training state'):
        _resume(opt)


def test_explicit_resume_state_must_be_complete(tmp_path):
    opt = _save_run(tmp_path, [3])
    opt.update(auto_resume=False)
    opt['path']['resume_state'] = str(tmp_path / 'training_states' / '3.state')
    (tmp_path / 'models' / 'net_g_3.pth').unlink()
    with pytest.raises(DLSTError, match=r'path.resume_state: cannot resume from .*3.state: .*net_g_3.pth'):
        _resume(opt)


def _model(models, states):
    from basicsr.models.base_model import BaseModel
    return BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False,
                      'path': {'models': str(models), 'training_states': str(states)}})


@pytest.mark.parametrize('what', ['network', 'state'])
def test_failed_save_stops_training_loudly(tmp_path, monkeypatch, what):
    from dlst_plugin.checkpoints import training_state
    monkeypatch.setattr(training_state, 'RETRY_DELAY_S', 0)
    blocker = tmp_path / 'a_file'
    blocker.write_text('')  # a file where the folder should be: every try fails
    model = _model(blocker / 'models', blocker / 'states')
    with pytest.raises(training_state.CheckpointSaveError, match='after 3 tries'):
        if what == 'network':
            model.save_network(torch.nn.Linear(2, 2), 'net_g', 4)
        else:
            model.save_training_state(0, 4)


CHILD = textwrap.dedent('''
    import io, sys, time
    import torch
    import dlst_plugin  # noqa: F401  (patches BaseModel's saving)
    from basicsr.models.base_model import BaseModel

    models, states, what = sys.argv[1:4]
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False,
                       'path': {'models': models, 'training_states': states}})
    net = torch.nn.Linear(256, 256)
    save = (lambda it: model.save_training_state(0, it)) if what == 'state' else (
        lambda it: model.save_network(net, 'net_g', -1))
    save(3)
    real_save = torch.save

    def half_then_block(obj, f, *args, **kwargs):  # the kill lands in the middle of the write
        buf = io.BytesIO()
        real_save(obj, buf)
        with open(f, 'wb') as out:
            out.write(buf.getvalue()[:len(buf.getvalue()) // 2])
            out.flush()
        print('WRITING', flush=True)
        time.sleep(600)

    torch.save = half_then_block
    with torch.no_grad():
        net.weight.fill_(1.0)
    save(6)
''')


@pytest.mark.parametrize('what', ['network', 'state'])
def test_kill_during_a_save_leaves_the_previous_file_readable(tmp_path, what):
    models, states = tmp_path / 'models', tmp_path / 'states'
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(models), str(states), what], cwd=tmp_path,
                             env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == 'WRITING', child.stderr.read()[-3000:]
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    if what == 'state':
        assert not (states / '6.state').exists()
        assert torch.load(states / '3.state', weights_only=True)['iter'] == 3
    else:
        saved = torch.load(models / 'net_g_latest.pth', weights_only=True)['params']
        assert not torch.equal(saved['weight'], torch.ones(256, 256)), 'the interrupted save replaced the file'

