"""GPU checks (marked ``cuda``; skipped without a CUDA device, run by scripts/gpu_check.sh): half-precision
inference parity against float32 for the StyleGAN2 generator and the Skip-Transformer, and AMP training
steps of the restorer and the degrader."""
import copy

import pytest
import torch
import yaml
from helpers import REPO

import dlst_plugin  # noqa: F401
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (scripts/gpu_check.sh)')]
DTYPES = ('float16', 'bfloat16')
MIN_PSNR = {'float16': 45.0, 'bfloat16': 30.0}  # dB against float32 on random weights


def psnr(a, b):
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float('inf') if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


@pytest.mark.parametrize('dtype', DTYPES)
def test_generator_half_precision_matches_float32(dtype):
    torch.manual_seed(0)
    g = PureStyleGAN2Generator(256, num_style_feat=256, num_mlp=2, channel_multiplier=1).cuda().eval()
    z = [torch.randn(2, 256, device='cuda')]
    with torch.no_grad():
        ref, _ = g(z, randomize_noise=False)
        out, _ = copy.deepcopy(g).to(getattr(torch, dtype))(z, randomize_noise=False)
    assert psnr(out, ref) >= MIN_PSNR[dtype]


@pytest.mark.parametrize('dtype', DTYPES)
def test_skip_transformer_half_precision_matches_float32(dtype):
    torch.manual_seed(0)
    net = SkipTransformer(256, num_style_feat=256, num_mlp=2, narrow=0.5).cuda().eval()
    x = torch.rand(2, 3, 256, 256, device='cuda') * 2 - 1
    with torch.no_grad():
        ref = net(x)
        out = copy.deepcopy(net).to(getattr(torch, dtype))(x.to(getattr(torch, dtype)))
    assert psnr(out, ref) >= MIN_PSNR[dtype]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('which', ['train_st_tiny.yml', 'train_dl_tiny.yml'])
def test_amp_training_steps_are_finite_on_the_gpu(tmp_path, which, dtype):
    from basicsr.models import build_model
    opt = yaml.safe_load((REPO / 'tests' / 'options' / which).read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=1)
    opt['path'] = {'visualization': str(tmp_path)}
    opt['train'].update(use_amp=True, amp_dtype=dtype, net_d_reg_every=2)
    if which.startswith('train_st'):
        opt['train'].pop('net_d_reg_every')
    torch.manual_seed(0)
    model = build_model(opt)
    for it in range(1, 9):
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        model.feed_data({'lq': x, 'gt': x})
        model.optimize_parameters(it)
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values()), model.log_dict
    assert model.log_dict['nonfinite_steps'] == 0
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.bare_g.parameters())
