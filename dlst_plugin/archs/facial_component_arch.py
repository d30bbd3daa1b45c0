"""GFP-GAN's facial-component discriminator (eyes, mouth) in plain PyTorch (docs/table1.md#gfp-gan-rows).

GFP-GAN's ``FacialComponentDiscriminator`` is built from BasicSR's StyleGAN2 layers, whose fused
bias-activation exists only as BasicSR's compiled CUDA extension: the pip wheels of BasicSR ship none,
so it fails on any CPU and on a GPU unless BasicSR was compiled. This is the same network on the
plugin's StyleGAN2 layers (the same parameter names, so GFP-GAN's saved ``net_d_left_eye`` files load
strictly), with ``narrow`` to shrink its widths for tests.
"""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from dlst_plugin.archs.stylegan2_layers import RESAMPLE_KERNEL, ConvLayer

WIDTHS = (64, 128, 256)  # GFP-GAN's fixed widths


@ARCH_REGISTRY.register()
class PureFacialComponentDiscriminator(nn.Module):
    """VGG-style patch discriminator of one facial component: five 3x3 convs (the 2nd and 4th halve the
    size), then a 3x3 conv to one channel. ``forward(x, return_feats=False)`` returns ``(scores, feats)``,
    ``feats`` the outputs of the 3rd and 5th convs (GFP-GAN's component style loss) or None.

    Args:
        narrow: width factor (1: GFP-GAN's 64/128/256 channels).
        resample_kernel: the FIR taps of the downsampling blur (GFP-GAN's: 1, 3, 3, 1).
    """

    def __init__(self, narrow=1, resample_kernel=RESAMPLE_KERNEL):
        super().__init__()
        if not narrow > 0:
            raise ValueError(f'narrow must be > 0, got {narrow}')
        c1, c2, c3 = (max(1, int(w * narrow)) for w in WIDTHS)
        kernel = tuple(resample_kernel)
        self.conv1 = ConvLayer(3, c1, 3)
        self.conv2 = ConvLayer(c1, c2, 3, downsample=True, resample_kernel=kernel)
        self.conv3 = ConvLayer(c2, c2, 3)
        self.conv4 = ConvLayer(c2, c3, 3, downsample=True, resample_kernel=kernel)
        self.conv5 = ConvLayer(c3, c3, 3)
        self.final_conv = ConvLayer(c3, 1, 3, activate=False)

    def forward(self, x, return_feats=False, **kwargs):
        middle = self.conv3(self.conv2(self.conv1(x)))
        deep = self.conv5(self.conv4(middle))
        scores = self.final_conv(deep)
        return scores, ([middle, deep] if return_feats else None)
