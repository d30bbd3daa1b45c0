"""VGG feature losses of DL-ST, with VGG weights read from disk only (docs/design.md).

* ``VGGPerceptualLoss``: the Skip-Transformer's perceptual term (paper Eq. 8, VGG16).
* ``PooledVGGLoss``: the degrader's colour term (paper Eq. 3): VGG19 ``features[18]`` of both
  images average-pooled by ``pool``, so it keeps colours, not details.

torchvision's VGG weights download at run time; here they never do. ``build_vgg_features``
looks for the torchvision file (``vgg16-397923af.pth`` / ``vgg19-dcbb9e9d.pth``) at an explicit
path, in a weights folder (``weights_dir``, env ``DLST_WEIGHTS_DIR``, default ``./weights``)
or in torch hub's cache, and raises ``FileNotFoundError`` naming the file and where to put it.
Random weights (tests) need ``random_init=True``; they are never a fallback.
"""
import os.path as osp

import torch
from basicsr.archs.vgg_arch import NAMES
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

from dlst_plugin.checkpoints.files import WEIGHTS_ENV, resolve_weights_dir
from dlst_plugin.errors import ConfigError, MissingFileError

VGG_WEIGHT_FILES = {'vgg16': 'vgg16-397923af.pth', 'vgg19': 'vgg19-dcbb9e9d.pth'}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def find_vgg_weights(vgg_type, weights_path=None, weights_dir_=None):
    """Path of the torchvision VGG state dict, or FileNotFoundError saying where to put it."""
    file_name = VGG_WEIGHT_FILES[vgg_type]
    if weights_path:
        candidates = [osp.expanduser(weights_path)]
    else:
        folder = resolve_weights_dir(weights_dir_)
        candidates = [osp.join(folder, file_name), osp.join(torch.hub.get_dir(), 'checkpoints', file_name)]
    for path in candidates:
        if osp.isfile(path):
            return path
    url = f'https://download.pytorch.org/models/{file_name}'
    raise MissingFileError(
        f'{vgg_type.upper()} weights not found (looked at: {", ".join(candidates)}). Download torchvision\'s '
        f'{file_name} ({url}) and put it in {resolve_weights_dir(weights_dir_)}/ (set ${WEIGHTS_ENV} or '
        f'the loss option weights_dir to use another folder), or set the loss option weights_path to the file. '
        'Nothing is downloaded at run time.')


def _vgg_features(vgg_type):
    """torchvision's ``vgg16/19(weights=None).features``, built without the (large, unused) classifier."""
    from torchvision.models.vgg import cfgs, make_layers
    if vgg_type not in VGG_WEIGHT_FILES:
        raise ValueError(f"vgg_type must be one of {sorted(VGG_WEIGHT_FILES)}, got {vgg_type!r}")
    return make_layers(cfgs['D' if vgg_type == 'vgg16' else 'E'], batch_norm=False)


def _load_features(features, path):
    from dlst_plugin.checkpoints.reading import read_checkpoint
    state = read_checkpoint(path)  # weights_only=True; a text or truncated file is one error naming it
    if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
        state = state['state_dict']
    feats = {k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')}
    expected = set(features.state_dict())
    missing, unexpected = sorted(expected - set(feats)), sorted(set(feats) - expected)
    if missing or unexpected:
        raise ConfigError(f'{path} is not a torchvision VGG state dict for this VGG: missing features.* keys '
                         f'{missing[:6]}, unexpected {unexpected[:6]}')
    features.load_state_dict(feats, strict=True)


class ImageNetNormalize(nn.Module):
    """Map images in ``input_range`` ((-1, 1) or (0, 1)) to ImageNet mean/std normalised input."""

    def __init__(self, input_range=(-1, 1)):
        super().__init__()
        low, high = (float(v) for v in input_range)
        if (low, high) not in ((-1.0, 1.0), (0.0, 1.0)):
            raise ValueError(f'input_range must be [-1, 1] or [0, 1], got {list(input_range)}')
        self.low, self.span = low, high - low
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return ((x - self.low) / self.span - self.mean) / self.std


def layer_index(vgg_type, layer):
    """BasicSR layer name ('conv3_3', 'relu4_3', ...) or an int -> index into ``vgg.features``."""
    if vgg_type not in VGG_WEIGHT_FILES:
        raise ValueError(f"vgg_type must be one of {sorted(VGG_WEIGHT_FILES)}, got {vgg_type!r}")
    names = NAMES[vgg_type]
    if isinstance(layer, int):
        if not 0 <= layer < len(names):
            raise ValueError(f'{vgg_type} has features[0..{len(names) - 1}], got layer {layer}')
        return layer
    if layer not in names:
        raise ValueError(f'unknown {vgg_type} layer {layer!r}; valid names: {", ".join(names)}')
    return names.index(layer)


def build_vgg_features(vgg_type='vgg16', last_layer=30, weights_path=None, random_init=False, weights_dir=None,
                       input_range=None):
    """Frozen ``torchvision vgg.features[:last_layer + 1]`` in eval mode (ReLUs not in place,
    so intermediate conv outputs can be read). ``input_range`` (-1, 1) or (0, 1) prepends
    ImageNet normalisation (``[0]``, an ``ImageNetNormalize``); None (default) returns the VGG layers only.
    """
    last = layer_index(vgg_type, last_layer)
    path = None if random_init else find_vgg_weights(vgg_type, weights_path, weights_dir)
    full = _vgg_features(vgg_type)
    if path is not None:
        _load_features(full, path)
    layers = []
    for layer in list(full)[:last + 1]:
        layers.append(nn.ReLU(inplace=False) if isinstance(layer, nn.ReLU) else layer)
    features = nn.Sequential(*layers)
    if input_range is not None:
        features = nn.Sequential(ImageNetNormalize(input_range), *layers)
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features


def _frobenius(a, b):
    """Frobenius norm of ``a - b`` (BasicSR's 'fro' criterion): a sum over the batch, not a mean."""
    return torch.linalg.vector_norm(a - b)


CRITERIA = {'l1': F.l1_loss, 'l2': F.mse_loss, 'fro': _frobenius}


def _criterion(name):
    if name not in CRITERIA:
        raise ValueError(f'criterion must be one of {", ".join(map(repr, CRITERIA))}, got {name!r}')
    return CRITERIA[name]


class _FrozenVGGLoss(nn.Module):
    """Keeps the VGG in eval mode whatever ``train()`` the model calls; ``features`` reads the outputs of the
    ``self.layers`` indices (into torchvision's ``vgg.features``) of ``self.vgg``."""

    def train(self, mode=True):
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, x):
        """``{layer index: output}`` for each index of ``self.layers`` (an ``ImageNetNormalize`` first, if
        ``self.vgg`` has one, is not counted)."""
        out = {}
        offset = int(isinstance(self.vgg[0], ImageNetNormalize))
        for idx, layer in enumerate(self.vgg):
            x = layer(x)
            if idx - offset in self.layers:
                out[idx - offset] = x
        return out


@LOSS_REGISTRY.register()
class VGGPerceptualLoss(_FrozenVGGLoss):
    """``loss_weight * sum_k w_k * criterion(phi_k(x), phi_k(gt))`` (paper Eq. 8, beta term).

    Args:
        layer_weights (dict): BasicSR layer name -> weight, e.g. ``{'conv3_3': 1.0}``.
        vgg_type: 'vgg16' (the paper's) or 'vgg19'. criterion: 'l2' (Eq. 8), 'l1' or 'fro' (Frobenius norm).
        input_range: range of the images, (-1, 1) or (0, 1).
        weights_path / weights_dir / random_init: see ``build_vgg_features``.
    """

    def __init__(self, layer_weights, vgg_type='vgg16', criterion='l2', loss_weight=1.0, input_range=(-1, 1),
                 weights_path=None, weights_dir=None, random_init=False):
        super().__init__()
        if not layer_weights:
            raise ValueError('VGGPerceptualLoss needs at least one entry in layer_weights')
        self.layers = {layer_index(vgg_type, name): float(w) for name, w in layer_weights.items()}
        self.vgg = build_vgg_features(vgg_type, max(self.layers), weights_path, random_init, weights_dir, input_range)
        self.criterion = _criterion(criterion)
        self.loss_weight = loss_weight

    def forward(self, x, gt):
        feats = self.features(x)
        with torch.no_grad():
            gt_feats = self.features(gt)
        loss = sum(w * self.criterion(feats[i], gt_feats[i]) for i, w in self.layers.items())
        return self.loss_weight * loss


def _max_pools(vgg_features):
    return sum(isinstance(m, nn.MaxPool2d) for m in vgg_features)


@LOSS_REGISTRY.register()
class PooledVGGLoss(_FrozenVGGLoss):
    """``|| phi(down_s(x)) - phi(down_s(gt)) ||`` (paper Eq. 3): phi = VGG19 ``features[layer]``
    (default 18, pool3), down_s = average pooling by ``pool`` (default 64, docs/design.md#degradation-learning).

    A pooled image must keep 2^(max-pools in phi) px (8 for layer 18), so ``pool`` is clamped
    to ``size // 8`` for small images; an image smaller than that raises a ValueError.
    """

    def __init__(self, pool=64, layer=18, vgg_type='vgg19', criterion='l2', loss_weight=1.0, input_range=(-1, 1),
                 weights_path=None, weights_dir=None, random_init=False):
        super().__init__()
        if int(pool) < 1:
            raise ValueError(f'pool must be >= 1, got {pool}')
        self.pool = int(pool)
        self.vgg = build_vgg_features(vgg_type, layer, weights_path, random_init, weights_dir, input_range)
        self.min_side = 2**_max_pools(self.vgg)
        self.criterion = _criterion(criterion)
        self.loss_weight = loss_weight

    def effective_pool(self, size):
        """The pooling factor used for ``size`` px images."""
        if size < self.min_side:
            raise ValueError(f'PooledVGGLoss needs images of at least {self.min_side} px, got {size} px')
        return max(1, min(self.pool, size // self.min_side))

    def forward(self, x, gt):
        pool = self.effective_pool(min(x.shape[-2:]))
        feats = self.vgg(F.avg_pool2d(x, pool))
        with torch.no_grad():
            gt_feats = self.vgg(F.avg_pool2d(gt, pool))
        return self.loss_weight * self.criterion(feats, gt_feats)
