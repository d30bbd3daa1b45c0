"""dlst-export: TorchScript parity with PyTorch on the tiny Skip-Transformer, fixed noise, ONNX guards."""
import re

import pytest
import torch
from helpers import call_main
from test_restore import write_tiny_model

from dlst_plugin.cli.export import main
from dlst_plugin.restoration import build_restorer_network, read_network_options

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
    return build_restorer_network(read_network_options(opt), ckpt)


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
    code, _, stderr = run_main(['--model', ckpt, '--opt', opt, '--out', tmp_path, '--onnx'])
    assert code == 1 and "pip install 'dlst-plugin[onnx]'" in stderr
    assert not (tmp_path / f'{ckpt.stem}.onnx').exists()


def test_onnx_matches_pytorch(tmp_path, tiny_model):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    ckpt, opt = tiny_model
    code, stdout, _ = run_main(['--model', ckpt, '--opt', opt, '--out', tmp_path, '--onnx'])
    assert code == 0
    assert float(re.search(r'\(onnxruntime\) (\S+)', stdout).group(1)) < 1e-4


def test_missing_option_file_is_an_error(tmp_path, tiny_model):
    code, _, stderr = run_main(['--model', tiny_model[0], '--opt', tmp_path / 'nope.yml', '--out', tmp_path])
    assert code == 2 and 'nope.yml' in stderr and stderr.startswith('error:')


