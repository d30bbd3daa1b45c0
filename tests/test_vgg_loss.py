"""VGG losses: weights from disk only, clear errors, the two loss definitions."""
import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torchvision.models import vgg16

import dlst_plugin  # noqa: F401
from dlst_plugin.losses.vgg_loss import PooledVGGLoss, VGGPerceptualLoss, build_vgg_features, layer_index


def test_missing_weights_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('DLST_WEIGHTS_DIR', str(tmp_path / 'w'))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    with pytest.raises(FileNotFoundError, match=r'vgg16-397923af\.pth') as err:
        build_vgg_features('vgg16', 'conv3_3')
    assert str(tmp_path / 'w') in str(err.value)
    with pytest.raises(FileNotFoundError, match=r'vgg19-dcbb9e9d\.pth'):
        PooledVGGLoss()


def test_explicit_missing_path_is_named(tmp_path):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        VGGPerceptualLoss({'conv1_2': 1.0}, weights_path=str(missing))


def test_loads_torchvision_state_dict_from_weights_dir(tmp_path):
    torch.manual_seed(0)
    reference = vgg16(weights=None)
    torch.save(reference.state_dict(), tmp_path / 'vgg16-397923af.pth')
    feats = build_vgg_features('vgg16', 'relu2_2', weights_dir=str(tmp_path))
    assert len(feats) == layer_index('vgg16', 'relu2_2') + 1
    assert torch.equal(feats[5].weight, reference.features[5].weight)
    assert not any(p.requires_grad for p in feats.parameters())
    assert not feats.training


def test_wrong_state_dict_names_keys(tmp_path):
    torch.save({'features.0.weight': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='missing features'):
        build_vgg_features('vgg16', 3, weights_path=str(tmp_path / 'bad.pth'))


def test_unknown_layer_name_lists_valid_ones():
    with pytest.raises(ValueError, match='conv3_3'):
        layer_index('vgg16', 'conv3_4')


def test_perceptual_loss_zero_on_equal_and_grad_flows():
    torch.manual_seed(0)
    loss = LOSS_REGISTRY.get('VGGPerceptualLoss')({'conv1_2': 0.5, 'relu2_2': 1.0}, random_init=True,
                                                  loss_weight=0.02)
    gt = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(gt.clone(), gt).item() == 0
    x = (gt + 0.3 * torch.randn_like(gt)).requires_grad_()
    value = loss(x, gt)
    value.backward()
    assert value.item() > 0 and x.grad.abs().sum() > 0


def test_perceptual_reads_conv_before_relu():
    """ReLUs run out of place: the conv feature a layer name asks for keeps its negatives."""
    torch.manual_seed(0)
    loss = VGGPerceptualLoss({'conv1_1': 1.0, 'relu1_1': 1.0}, random_init=True)
    feats = loss.features(torch.randn(1, 3, 16, 16))
    assert (feats[0] < 0).any() and (feats[1] >= 0).all()


def test_vgg_stays_eval_after_train():
    loss = VGGPerceptualLoss({'conv1_2': 1.0}, random_init=True).train()
    assert not loss.vgg.training


def test_pooled_loss_ignores_detail_within_pool():
    """Two images with the same block means (here 8x8 blocks) give zero pooled loss."""
    torch.manual_seed(0)
    loss = PooledVGGLoss(pool=8, random_init=True)
    base = torch.rand(1, 3, 8, 8).repeat_interleave(8, 2).repeat_interleave(8, 3) * 2 - 1
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 * 0.2 - 0.1
    assert loss(base + checker, base).item() < 1e-10
    assert loss(base + 0.3, base).item() > 0


def test_pooled_loss_clamps_pool_for_small_images():
    loss = PooledVGGLoss(pool=64, random_init=True)
    assert loss.effective_pool(512) == 64 and loss.effective_pool(64) == 8 and loss.effective_pool(8) == 1
    with pytest.raises(ValueError, match='at least 8 px'):
        loss.effective_pool(4)


def test_bad_input_range_is_rejected():
    with pytest.raises(ValueError, match='input_range'):
        VGGPerceptualLoss({'conv1_2': 1.0}, random_init=True, input_range=(0, 255))
