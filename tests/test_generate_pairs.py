"""dlst-generate-pairs: N (clean, degraded) pairs into two LMDBs; resumable, deterministic, shardable."""
import signal
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest
import torch
from helpers import subprocess_env
from signal_runs import assert_stopped_by_sigterm, line_count, signal_mid_run

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2
from dlst_plugin.cli.generate_pairs import main
from dlst_plugin.fileio.lmdb import read_meta_info, verify_lmdb


def degrader_checkpoint(path, size=32):
    """A DegradationLearningModel-style net_g file whose green network differs from the red one."""
    torch.manual_seed(0)
    net = CoupledStyleGAN2(size, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=1 / 32)
    with torch.no_grad():
        for p in net.green.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, path)
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return degrader_checkpoint(tmp_path_factory.mktemp('ckpt') / 'net_g_latest.pth')


def read_lmdb(root):
    env = lmdb.open(str(root), readonly=True, lock=False)
    with env.begin() as txn:
        out = {k.decode(): cv2.imdecode(np.frombuffer(v, np.uint8), cv2.IMREAD_COLOR) for k, v in txn.cursor()}
    env.close()
    return out


def assert_complete(folder, count, size=32):
    """Exactly ``count`` pairs, keys 0..count-1 in both LMDBs and their meta_info, every image readable."""
    keys = [f'{i:08d}' for i in range(count)]
    for name in ('clean.lmdb', 'degraded.lmdb'):
        assert verify_lmdb(str(folder / name)) == []
        entries, malformed = read_meta_info(str(folder / name))
        assert sorted(key for key, _, _ in entries) == keys and not malformed
        assert all(shape == (size, size, 3) for _, shape, _ in entries)
    clean, degraded = read_lmdb(folder / 'clean.lmdb'), read_lmdb(folder / 'degraded.lmdb')
    assert sorted(clean) == sorted(degraded) == keys
    return clean, degraded


def test_writes_matching_pairs_with_meta_info(checkpoint, tmp_path, capsys):
    assert main([str(checkpoint), str(tmp_path / 'out'), '-n', '5', '--batch-size', '2']) == 0
    clean, degraded = assert_complete(tmp_path / 'out', 5)
    assert all(not np.array_equal(clean[k], degraded[k]) for k in clean)  # the green network differs
    assert len({clean[k].tobytes() for k in clean}) == 5
    assert 'pairs/s' in capsys.readouterr().out


def test_same_seed_same_pairs_other_seed_other_pairs(checkpoint, tmp_path):
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        assert main([str(checkpoint), str(tmp_path / name), '-n', '3', '--seed', str(seed)]) == 0
    a, b, c = (read_lmdb(tmp_path / name / 'clean.lmdb') for name in 'abc')
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not any(np.array_equal(a[k], c[k]) for k in a)


def test_shards_split_the_indices_and_draw_the_same_pairs(checkpoint, tmp_path):
    assert main([str(checkpoint), str(tmp_path / 'whole'), '-n', '5', '--batch-size', '5']) == 0
    for rank in (0, 1):
        assert main([str(checkpoint), str(tmp_path / 'sharded'), '-n', '5', '--rank', str(rank),
                     '--world-size', '2', '--batch-size', '1']) == 0
    whole = read_lmdb(tmp_path / 'whole' / 'degraded.lmdb')
    parts = [read_lmdb(tmp_path / 'sharded' / f'shard{r}of2' / 'degraded.lmdb') for r in (0, 1)]
    assert sorted(parts[0]) == ['00000000', '00000002', '00000004'] and sorted(parts[1]) == ['00000001', '00000003']
    for part in parts:  # batching changes float rounding only: at most one 8-bit level
        assert all(np.abs(part[k].astype(int) - whole[k]).max() <= 1 for k in part)


def test_resume_with_other_settings_is_refused(checkpoint, tmp_path, capsys):
    assert main([str(checkpoint), str(tmp_path / 'out'), '-n', '2']) == 0
    assert main([str(checkpoint), str(tmp_path / 'out'), '-n', '2', '--seed', '9']) == 2
    assert 'seed 0' in capsys.readouterr().err
    assert_complete(tmp_path / 'out', 2)


def test_report_says_what_the_output_holds(checkpoint, tmp_path, capsys):
    assert main(['--model', str(checkpoint), '-o', str(tmp_path / 'out'), '-n', '5']) == 0
    capsys.readouterr()
    assert main(['--model', str(checkpoint), '-o', str(tmp_path / 'out'), '-n', '2']) == 0
    out = capsys.readouterr().out
    assert 'made 0 pairs' in out and 'holds 5 pairs (keys 00000000..00000004)' in out and '3 more than' in out
    assert main(['--model', str(checkpoint), '-o', str(tmp_path / 'out'), '-n', '2', '--overwrite']) == 0
    assert 'holds 2 pairs' in capsys.readouterr().out
    assert_complete(tmp_path / 'out', 2)


def test_pair_left_half_written_by_a_larger_run_is_finished(checkpoint, tmp_path, capsys):
    """A kill between the degraded and the clean commit of a run with -n 5 left pair 4 in degraded.lmdb only;
    a rerun with -n 3 must not end with different key sets (SecondOrderFaceDataset refuses those)."""
    from dlst_plugin.fileio.lmdb import LmdbWriter
    assert main([str(checkpoint), str(tmp_path / 'ref'), '-n', '5']) == 0
    assert main([str(checkpoint), str(tmp_path / 'out'), '-n', '3']) == 0
    with LmdbWriter(tmp_path / 'out' / 'degraded.lmdb') as writer:
        writer.put_image('00000004', np.zeros((32, 32, 3), np.uint8))  # a stale half of pair 4
    assert main([str(checkpoint), str(tmp_path / 'out'), '-n', '3']) == 0
    assert 'holds 4 pairs' in capsys.readouterr().out
    for name in ('clean.lmdb', 'degraded.lmdb'):
        assert verify_lmdb(str(tmp_path / 'out' / name)) == []
        stored, reference = read_lmdb(tmp_path / 'out' / name), read_lmdb(tmp_path / 'ref' / name)
        assert sorted(stored) == ['00000000', '00000001', '00000002', '00000004']
        assert np.abs(stored['00000004'].astype(int) - reference['00000004']).max() <= 1  # pair 4 as (seed, 4) draws it


def test_text_file_as_model_is_one_error_line(tmp_path, capsys):
    (tmp_path / 'notes.pth').write_text('not a checkpoint\n')
    assert main(['--model', str(tmp_path / 'notes.pth'), '-o', str(tmp_path / 'out'), '-n', '2']) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith('error: --model')
    assert 'notes.pth' in err and 'expected a degrader checkpoint' in err


def test_a_checkpoint_that_is_no_degrader_is_one_error(tmp_path, capsys):
    torch.save({'params': {'conv.weight': torch.zeros(1)}}, tmp_path / 'other.pth')
    assert main([str(tmp_path / 'other.pth'), str(tmp_path / 'out'), '-n', '2']) == 2
    assert 'not a degrader checkpoint' in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=['SIGINT', 'SIGTERM', 'SIGKILL'])
def test_interrupted_run_rerun_gives_exactly_n_pairs(tmp_path, sig):
    checkpoint = degrader_checkpoint(tmp_path / 'net_g.pth', size=64)
    count = 120  # about 2 s of generation here
    cmd = ['-m', 'dlst_plugin.cli.generate_pairs', str(checkpoint), str(tmp_path / 'out'),
           '-n', str(count), '--batch-size', '2', '--commit-every', '2']
    meta = tmp_path / 'out' / 'clean.lmdb' / 'meta_info.txt'
    code, _, err = signal_mid_run(cmd, lambda: line_count(meta) >= 4, sig)
    assert code != 0, f'the run finished before it could be interrupted; its stderr: {err[-3000:]}'
    if sig == signal.SIGINT:
        assert code == 130 and 'rerun the same command' in err
    if sig == signal.SIGTERM:  # as a cluster's preemption: 143, one message, the pairs made so far kept
        assert_stopped_by_sigterm(code, err, 'the pairs made so far are kept')
    stored = len(read_meta_info(str(tmp_path / 'out' / 'clean.lmdb'))[0])
    assert 4 <= stored < count
    rerun = subprocess.run([sys.executable, *cmd], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert 'resuming' in rerun.stdout
    assert_complete(tmp_path / 'out', count, size=64)


def test_the_library_returns_the_pairs_held_and_made(checkpoint, tmp_path):
    from dlst_plugin.inference.pairs import PairSettings, generate_pairs
    first = generate_pairs(checkpoint, tmp_path / 'out', 3, PairSettings(batch_size=2))
    assert (first.made, first.keys, first.folder) == (3, ['00000000', '00000001', '00000002'], str(tmp_path / 'out'))
    again = generate_pairs(checkpoint, tmp_path / 'out', 4, PairSettings(batch_size=2))
    assert again.made == 1 and len(again.keys) == 4  # resumed: only the new pair was made
