"""BasicSR's own StyleGAN2 modules, runnable on a CPU for comparison.

BasicSR routes its bias + leaky ReLU through a CUDA-only extension; here it goes through an
equivalent torch function instead (its ``upfirdn2d`` already has a CPU path)."""
import basicsr.archs.stylegan2_arch as basicsr_stylegan2
import basicsr.ops.fused_act.fused_act as basicsr_fused_act
from torch.nn import functional as F


def torch_fused_leaky_relu(x, bias, negative_slope=0.2, scale=2**0.5):
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def route_fused_act_through_torch(monkeypatch=None):
    """Point BasicSR's fused activation at torch (with pytest's monkeypatch when given)."""
    for module in (basicsr_fused_act, basicsr_stylegan2):
        if monkeypatch is not None:
            monkeypatch.setattr(module, 'fused_leaky_relu', torch_fused_leaky_relu)
        else:
            module.fused_leaky_relu = torch_fused_leaky_relu
    return basicsr_stylegan2
