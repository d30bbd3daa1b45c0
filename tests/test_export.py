"""dlst-export: TorchScript parity with PyTorch on the tiny Skip-Transformer, fixed noise, ONNX guards."""
import json
import re

import pytest
import torch
from helpers import call_main
from test_restore import write_tiny_model

from dlst_plugin.cli.export import main
from dlst_plugin.loading.networks import load_restorer, read_network_options

pytestmark = pytest.mark.filterwarnings('ignore:`torch.jit:FutureWarning')


def run_main(argv):
    return call_main(main, argv)


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp('export_model'))


@pytest.fixture(scope='module')
def torchscript_export(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp('exported')
    ckpt, opt = tiny_model
    code, stdout, stderr = run_main(['--model', ckpt, '--opt', opt, '--out', out, '--torchscript', '--batch-size', 2])
    return code, stdout, out / f'{ckpt.stem}.ts.pt'


def reference_network(tiny_model):
    ckpt, opt = tiny_model
    return load_restorer(ckpt, opt)[0]


def test_torchscript_export_reports_parity(torchscript_export):
    code, stdout, path = torchscript_export
    assert code == 0 and path.is_file()
    diff = float(re.search(r'max abs diff vs PyTorch (\S+)', stdout).group(1))
    assert diff < 1e-4


def test_torchscript_matches_pytorch_on_new_faces(torchscript_export, tiny_model):
    traced = torch.jit.load(str(torchscript_export[2]))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        assert (traced(x) - reference_network(tiny_model)(x)).abs().max() < 1e-4


def test_exported_noise_is_fixed(torchscript_export):
    traced = torch.jit.load(str(torchscript_export[2]))
    x = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(traced(x), traced(x))


def test_onnx_without_onnx_package_names_the_extra(tmp_path, tiny_model, monkeypatch):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'onnx' else real_find_spec(name, *a))
    ckpt, opt = tiny_model
    code, _, stderr = run_main(['--model', ckpt, '--opt', opt, '-o', tmp_path, '--onnx'])
    assert code == 2 and "pip install 'dlst-plugin[onnx]'" in stderr  # asked for and impossible: nothing done
    assert not (tmp_path / f'{ckpt.stem}.onnx').exists()


def test_onnx_matches_pytorch(tmp_path, tiny_model):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    ckpt, opt = tiny_model
    code, stdout, _ = run_main(['--model', ckpt, '--opt', opt, '--out', tmp_path, '--onnx'])
    assert code == 0
    assert float(re.search(r'\(onnxruntime\) (\S+)', stdout).group(1)) < 1e-4
    import onnx
    props = {p.key: p.value for p in onnx.load(str(tmp_path / f'{ckpt.stem}.onnx')).metadata_props}
    assert json.loads(props['dlst_meta'])['arch'] == 'SkipTransformer'


def test_missing_option_file_is_an_error(tmp_path, tiny_model):
    code, _, stderr = run_main(['--model', tiny_model[0], '--opt', tmp_path / 'nope.yml', '--out', tmp_path])
    assert code == 2 and 'nope.yml' in stderr and stderr.startswith('error:')


def test_text_file_as_model_is_one_error_line(tmp_path, tiny_model):
    (tmp_path / 'notes.pth').write_text('not weights\n')
    code, _, stderr = run_main(['--model', tmp_path / 'notes.pth', '--opt', tiny_model[1], '-o', tmp_path / 'out'])
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith('error: --model') and 'notes.pth' in stderr and 'expected a restorer checkpoint' in stderr
    assert not (tmp_path / 'out').exists()


# -- weights formats and metadata ------------------------------------------------------------------

@pytest.fixture(scope='module')
def weights_export(tmp_path_factory, tiny_model):
    """safetensors + pth exports of the tiny model (no metadata in it: the network is inferred)."""
    out = tmp_path_factory.mktemp('weights')
    code, stdout, stderr = run_main(['--model', tiny_model[0], '-o', out, '--format', 'safetensors', 'pth'])
    assert code == 0, stderr
    return out / f'{tiny_model[0].stem}.safetensors', out / f'{tiny_model[0].stem}.pth', stdout


def test_safetensors_export_round_trip(weights_export, tiny_model):
    from safetensors.torch import load_file

    from dlst_plugin.checkpoints.reading import read_checkpoint
    from dlst_plugin.loading.networks import load_restorer
    path, _, stdout = weights_export
    assert f'safetensors: {path}' in stdout and 'SkipTransformer metadata' in stdout
    original = torch.load(tiny_model[0])['params_ema']
    flat = load_file(str(path))  # any safetensors reader: a flat state dict
    assert flat.keys() == original.keys() and all(torch.equal(flat[k], v) for k, v in original.items())
    meta = read_checkpoint(path)['meta']
    options = {k: v for k, v in read_network_options(tiny_model[1]).items() if k not in ('type', 'decoder_load_path')}
    assert meta['arch'] == 'SkipTransformer' and {k: meta['options'][k] for k in options} == options
    net, _ = load_restorer(path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), reference_network(tiny_model)(x))


def test_pth_export_is_a_checkpoint_with_metadata(weights_export):
    saved = torch.load(weights_export[1], weights_only=True)
    assert set(saved) == {'params_ema', 'params', 'meta'} and saved['meta']['arch'] == 'SkipTransformer'


def test_torchscript_carries_the_metadata(torchscript_export):
    extra = {'dlst_meta.json': ''}
    torch.jit.load(str(torchscript_export[2]), _extra_files=extra)
    assert json.loads(extra['dlst_meta.json'])['options']['attention'] is True


def test_export_refuses_to_overwrite_its_source(tmp_path, tiny_model):
    import shutil
    shutil.copy(tiny_model[0], tmp_path / 'net.pth')
    code, _, stderr = run_main(['--model', tmp_path / 'net.pth', '-o', tmp_path, '--format', 'pth'])
    assert code == 2 and 'would overwrite the checkpoint it reads' in stderr


def test_the_library_writes_the_weights_formats_without_tracing(tmp_path, tiny_model):
    from dlst_plugin.inference.export import ExportSettings, export_restorer
    ckpt, opt = tiny_model
    above_atol = export_restorer(ckpt, tmp_path, ['safetensors'], ExportSettings(opt=str(opt), name='w'))
    assert above_atol is False and sorted(p.name for p in tmp_path.iterdir()) == ['w.safetensors']
