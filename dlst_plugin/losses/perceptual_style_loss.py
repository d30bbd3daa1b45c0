"""BasicSR's ``PerceptualLoss`` (perceptual + Gram-matrix style terms) with VGG weights read from disk only.

GFP-GAN's recipe trains with BasicSR's ``PerceptualLoss`` on VGG19 (``perceptual_weight`` 1, ``style_weight``
50); its ``GFPGANModel`` calls the loss as ``percep, style = loss(output, gt)``. BasicSR builds that VGG
from ``experiments/pretrained_models/vgg19-dcbb9e9d.pth`` under the working directory or downloads
torchvision's weights at run time. ``PerceptualStyleLoss`` takes the same options and gives the same
two values, on the VGG of :func:`dlst_plugin.losses.vgg_loss.build_vgg_features` (a file found as the
plugin's other VGG losses find theirs, never a download; ``random_init`` for tests).
"""
from basicsr.utils.registry import LOSS_REGISTRY

from dlst_plugin.losses.vgg_loss import _criterion, _FrozenVGGLoss, build_vgg_features, layer_index


def gram_matrix(x):
    """``(n, c, c)`` Gram matrices of ``(n, c, h, w)`` features, divided by ``c * h * w`` (BasicSR's)."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat.bmm(flat.transpose(1, 2)) / (c * h * w)


@LOSS_REGISTRY.register()
class PerceptualStyleLoss(_FrozenVGGLoss):
    """``(perceptual_weight * sum_k w_k d(phi_k(x), phi_k(gt)),
    style_weight * sum_k w_k d(G(phi_k(x)), G(phi_k(gt))))``, G the Gram matrix; a term whose weight is 0 is None.

    Args (BasicSR's ``PerceptualLoss``'s):
        layer_weights (dict): BasicSR layer name (``conv5_4``: before relu5_4) -> weight.
        vgg_type: 'vgg19' (default) or 'vgg16'.
        use_input_norm: ImageNet mean/std normalisation of the input (default true).
        range_norm: the images are in [-1, 1]; map them to [0, 1] first (default false).
        perceptual_weight, style_weight: the two terms' weights (defaults 1 and 0).
        criterion: 'l1' (default), 'l2' (mean squared) or 'fro' (Frobenius norm of the difference).
    Plus the plugin's: weights_path / weights_dir / random_init (see ``build_vgg_features``).
    """

    def __init__(self, layer_weights, vgg_type='vgg19', use_input_norm=True, range_norm=False, perceptual_weight=1.0,
                 style_weight=0.0, criterion='l1', weights_path=None, weights_dir=None, random_init=False):
        super().__init__()
        if not layer_weights:
            raise ValueError('PerceptualStyleLoss needs at least one entry in layer_weights')
        self.distance = _criterion(criterion)  # before the VGG is read: a wrong name is the error
        self.layers = {layer_index(vgg_type, name): float(w) for name, w in layer_weights.items()}
        input_range = ((-1, 1) if range_norm else (0, 1)) if use_input_norm else None
        self.vgg = build_vgg_features(vgg_type, max(self.layers), weights_path, random_init, weights_dir, input_range)
        self.to_unit_range = range_norm and not use_input_norm  # else the normalisation maps the range
        self.perceptual_weight, self.style_weight = float(perceptual_weight), float(style_weight)

    def features(self, x):
        return super().features((x + 1) / 2 if self.to_unit_range else x)

    def forward(self, x, gt):
        feats, gt_feats = self.features(x), self.features(gt.detach())
        percep = style = None
        if self.perceptual_weight > 0:
            percep = self.perceptual_weight * sum(w * self.distance(feats[i], gt_feats[i])
                                                  for i, w in self.layers.items())
        if self.style_weight > 0:
            style = self.style_weight * sum(w * self.distance(gram_matrix(feats[i]), gram_matrix(gt_feats[i]))
                                            for i, w in self.layers.items())
        return percep, style
