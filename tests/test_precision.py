"""``auto`` precision, the default of dlst-restore, DLSTer and FaceRestorer: bfloat16 where the device computes
it natively, float16 on CUDA GPUs without it, float32 elsewhere (both CPU resolutions tested by faking the
capability); and ``compile``, with a one-line fallback where compiling fails."""
import pytest
import torch
from tiny_restorers import TINY_ST, build, training_checkpoint

from dlst_plugin import devices
from dlst_plugin.errors import ConfigError
from dlst_plugin.inference.face_restorer import FaceRestorer


@pytest.fixture
def model(tmp_path):
    net = build(TINY_ST)
    path = tmp_path / 'st.pth'
    torch.save(training_checkpoint(net, TINY_ST), path)
    return path


@pytest.mark.parametrize('native,expected', [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_the_cpus_native_bfloat16(monkeypatch, capsys, native, expected):
    monkeypatch.setattr(devices, 'cpu_has_native_bf16', lambda: native)
    monkeypatch.setattr(devices, '_ANNOUNCED', set())
    cpu = torch.device('cpu')
    assert devices.resolve_dtype('auto', cpu) == expected and devices.resolve_dtype('auto', cpu) == expected
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith(f'note: --dtype auto: {str(expected)[6:]} on cpu')  # printed once
    assert devices.resolve_dtype('float32', cpu) == torch.float32  # an explicit choice is kept


@pytest.mark.parametrize('bf16,expected', [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_cuda_is_bfloat16_where_the_gpu_has_it_else_float16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a, **k: 'a GPU')
    assert devices.native_dtype(torch.device('cuda'))[0] == expected


def test_float16_on_a_cpu_and_unknown_names_are_clear_errors():
    with pytest.raises(ConfigError, match='--dtype float16 runs on CUDA only'):
        devices.resolve_dtype('float16', torch.device('cpu'))
    with pytest.raises(ConfigError, match="--dtype 'half': choose one of auto, float32, bfloat16, float16"):
        devices.resolve_dtype('half', torch.device('cpu'))


@pytest.mark.parametrize('native', [True, False])
def test_the_restorer_runs_in_the_resolved_precision_by_default(monkeypatch, model, native):
    monkeypatch.setattr(devices, 'cpu_has_native_bf16', lambda: native)
    restorer = FaceRestorer.from_files(str(model), device='cpu')
    dtype = torch.bfloat16 if native else torch.float32
    assert restorer.dtype == dtype and next(restorer.net.parameters()).dtype == dtype
    face = (torch.rand(32, 32, 3) * 255).byte().numpy()
    out = restorer.restore_image(face, aligned=True)
    assert out.image.shape == face.shape and out.image.dtype == face.dtype


def test_compile_that_fails_at_the_first_face_falls_back_with_one_line(monkeypatch, model, capsys):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError('no C++ compiler found\nmore details')
    monkeypatch.setattr(torch, 'compile', lambda net, **kwargs: Broken())
    restorer = FaceRestorer.from_files(str(model), device='cpu', dtype='float32', compile=True)
    face = (torch.rand(32, 32, 3) * 255).byte().numpy()
    first = restorer.restore_image(face, aligned=True).image
    again = restorer.restore_image(face, aligned=True).image
    notes = [line for line in capsys.readouterr().err.splitlines() if '--compile' in line]
    assert notes == ['note: --compile: the network cannot be compiled here (no C++ compiler found); it runs eagerly']
    assert (first == again).all() and restorer.net is restorer.eager_net
