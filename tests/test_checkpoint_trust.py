"""Checkpoints are untrusted data: their metadata describes the network, never files or the process. Crafted
metadata (a FIFO or a secret file as the decoder, huge, negative or fractional sizes, unknown keys, deeply
nested JSON) is refused or ignored in bounded time and memory, with one line naming the checkpoint and no
other file's content."""
import json
import os
import resource
import subprocess
import sys
import time

import pytest
import torch
from tiny_restorers import TINY_ST, build

from dlst_plugin.checkpoints.meta import META_KEY, network_metadata
from dlst_plugin.checkpoints.reading import read_checkpoint, write_safetensors
from dlst_plugin.errors import CheckpointLayoutError
from dlst_plugin.loading.networks import RestoreSetupError, load_restorer


def _save(tmp_path, options=None, arch='SkipTransformer', name='crafted.pth'):
    net = build(TINY_ST)
    meta = network_metadata(TINY_ST)
    meta['options'].update(options or {})
    meta['arch'] = arch
    path = tmp_path / name
    torch.save({'params_ema': net.state_dict(), META_KEY: meta}, path)
    return path, net


def test_file_keys_in_metadata_are_ignored_so_a_fifo_or_a_secret_file_is_never_opened(tmp_path):
    fifo, secret = tmp_path / 'fifo', tmp_path / 'secret.txt'
    os.mkfifo(fifo)
    secret.write_text('root:*:19000:0:99999:7:::\n')
    for target in (fifo, secret):
        path, net = _save(tmp_path, {'decoder_load_path': str(target), 'decoder_channel_order': 'bgr'})
        start = time.monotonic()
        loaded, options = load_restorer(path)  # would block forever on the FIFO if it were opened
        assert time.monotonic() - start < 30 and 'decoder_load_path' not in options
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        assert torch.equal(loaded(x), net.eval()(x))  # the checkpoint's weights, nothing read from the file


@pytest.mark.parametrize('options,reason', [
    ({'narrow': 1e9}, 'option narrow must be a number in'),
    ({'num_mlp': 10_000_000}, 'option num_mlp must be a whole number in'),
    ({'out_size': -32}, 'option out_size must be a whole number in'),
    ({'out_size': 48}, 'option out_size must be a power of 2'),
    ({'num_style_feat': 2.5}, 'option num_style_feat must be a whole number'),
    ({'attention': 'yes'}, 'option attention must be true or false'),
    ({'patch_sizes': {'8': 10**9}}, 'option patch_sizes must be'),
    ({'exec': 'os.system'}, "unknown option 'exec'"),
])
def test_crafted_sizes_are_refused_before_anything_is_built(tmp_path, options, reason):
    path, _ = _save(tmp_path, options)
    with pytest.raises(RestoreSetupError, match=reason) as err:
        load_restorer(path)
    assert str(path) in str(err.value) and '\n' not in str(err.value)


def test_an_unknown_arch_is_refused(tmp_path):
    path, _ = _save(tmp_path, arch='os.system')
    with pytest.raises(RestoreSetupError, match=r"arch 'os.system' is none of"):
        load_restorer(path)


def test_sizes_within_bounds_that_do_not_match_the_tensors_are_caught_on_the_meta_device(tmp_path):
    path, _ = _save(tmp_path, {'out_size': 1024, 'num_style_feat': 2048, 'narrow': 1})  # gigabytes if built for real
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RestoreSetupError, match='does not fit network_g SkipTransformer'):
        load_restorer(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: nothing big was allocated


def test_deeply_nested_or_huge_safetensors_headers_are_one_error(tmp_path):
    state = build(TINY_ST).state_dict()
    path = tmp_path / 'w.safetensors'
    write_safetensors(state, path)
    from safetensors.torch import save_file
    for header in ('[' * 100_000 + ']' * 100_000, json.dumps({'arch': 'SkipTransformer', 'options': {},
                                                               'pad': 'x' * 100_000})):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={'dlst_meta': header})
        with pytest.raises(CheckpointLayoutError, match=str(path)) as err:
            read_checkpoint(path)
        assert len(str(err.value)) < 500


def test_crafted_metadata_through_dlst_restore_is_one_line_and_exit_2(tmp_path):
    secret = tmp_path / 'secret.txt'
    secret.write_text('root:*:19000:0:99999:7:::\n')
    path, _ = _save(tmp_path, {'narrow': -1, 'decoder_load_path': str(secret)})
    (tmp_path / 'faces').mkdir()
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / 'faces' / 'face.png'), np.zeros((32, 32, 3), np.uint8))
    proc = subprocess.run([sys.executable, '-m', 'dlst_plugin.cli.restore', '-i', str(tmp_path / 'faces'), '-o',
                           str(tmp_path / 'out'), '--model', str(path), '--aligned'], capture_output=True, text=True,
                          timeout=300)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith('note: ')]
    assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith('error: --model'), proc.stderr
    assert 'narrow' in proc.stderr and 'root:' not in proc.stderr and 'Traceback' not in proc.stderr
