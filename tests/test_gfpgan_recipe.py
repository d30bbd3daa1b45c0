"""GFP-GAN's training as the GFP-GAN rows of Table 1 run it (docs/table1.md#gfp-gan-rows): GFPGANRecipeModel
(GFP-GAN's GFPGANModel and the plugin's additions), its pure-PyTorch component discriminator and its
perceptual + style loss, each against GFP-GAN's / BasicSR's own code."""
import copy
import math
import subprocess
import sys

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from helpers import face_crops, single_process_options
from table1_cells import tiny_arcface_file, tiny_table1_cell

import dlst_plugin  # noqa: F401
from dlst_plugin.errors import ConfigError

gfpgan_model = pytest.importorskip('gfpgan.models.gfpgan_model')


def _reference_leaky_relu(x, bias, negative_slope=0.2, scale=math.sqrt(2)):
    return torch.nn.functional.leaky_relu(x + bias.view(1, -1, *[1] * (x.dim() - 2)), negative_slope) * scale


def test_component_discriminator_is_gfpgans_on_the_same_weights(monkeypatch):
    """GFP-GAN's FacialComponentDiscriminator needs BasicSR's CUDA op; with that op written out in PyTorch it
    runs here, and the plugin's network gives its scores and style features for its weights."""
    from basicsr.ops.fused_act import fused_act
    from gfpgan.archs.gfpganv1_arch import FacialComponentDiscriminator
    monkeypatch.setattr(fused_act, 'fused_leaky_relu', _reference_leaky_relu)
    torch.manual_seed(0)
    theirs = FacialComponentDiscriminator().eval()
    ours = ARCH_REGISTRY.get('PureFacialComponentDiscriminator')().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        (score, feats), (ref_score, ref_feats) = ours(x, return_feats=True), theirs(x, return_feats=True)
    assert torch.allclose(score, ref_score, atol=1e-5) and score.shape == (2, 1, 5, 5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(feats, ref_feats))
    assert ours(x)[1] is None


def _basicsr_vgg19_weights(tmp_path, monkeypatch):
    """Random VGG19 weights where BasicSR's PerceptualLoss reads them (experiments/pretrained_models under the
    working folder), its VGG built without the classifier; the file's path."""
    from basicsr.archs import vgg_arch
    from torchvision.models.vgg import cfgs, make_layers

    class Features(torch.nn.Module):  # torchvision's VGG19 less its (large, unused) classifier
        def __init__(self, **_):
            super().__init__()
            self.features = make_layers(cfgs['E'])

    monkeypatch.setattr(vgg_arch.vgg, 'vgg19', Features)
    torch.manual_seed(0)
    (tmp_path / 'experiments' / 'pretrained_models').mkdir(parents=True)
    weights = tmp_path / 'experiments' / 'pretrained_models' / 'vgg19-dcbb9e9d.pth'
    torch.save(Features().state_dict(), weights)
    monkeypatch.chdir(tmp_path)
    return weights


def test_perceptual_style_loss_is_basicsrs_with_gfpgans_settings(tmp_path, monkeypatch):
    """BasicSR's PerceptualLoss reads VGG19 from experiments/pretrained_models under the working folder; the
    same random weights given to PerceptualStyleLoss give the same (perceptual, style) pair."""
    from basicsr.losses.basic_loss import PerceptualLoss
    weights = _basicsr_vgg19_weights(tmp_path, monkeypatch)
    settings = dict(layer_weights={'conv1_2': 0.1, 'conv2_2': 0.1, 'conv3_4': 1, 'conv4_4': 1, 'conv5_4': 1},
                    vgg_type='vgg19', use_input_norm=True, perceptual_weight=1.0, style_weight=50, range_norm=True,
                    criterion='l1')
    theirs = PerceptualLoss(**settings)
    ours = LOSS_REGISTRY.get('PerceptualStyleLoss')(**settings, weights_path=str(weights))
    out, gt = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    for mine, ref in zip(ours(out, gt), theirs(out, gt)):
        assert torch.allclose(mine, ref, rtol=1e-4)
    assert ours.__class__(settings['layer_weights'], random_init=True)(out, gt)[1] is None  # style_weight 0


@pytest.mark.parametrize('criterion, use_input_norm, range_norm', [('fro', True, False), ('l1', False, True),
                                                                   ('fro', False, False)])
def test_perceptual_style_loss_is_basicsrs_for_other_criteria_and_ranges(tmp_path, monkeypatch, criterion,
                                                                         use_input_norm, range_norm):
    """The Frobenius criterion, [0, 1] input and [-1, 1] input without ImageNet normalisation give BasicSR's
    PerceptualLoss's pair too (its 'l2' cannot be built: it names a torch.nn class that does not exist)."""
    from basicsr.losses.basic_loss import PerceptualLoss
    weights = _basicsr_vgg19_weights(tmp_path, monkeypatch)
    settings = dict(layer_weights={'conv1_2': 0.5, 'relu3_1': 1}, vgg_type='vgg19', use_input_norm=use_input_norm,
                    range_norm=range_norm, perceptual_weight=0.5, style_weight=2, criterion=criterion)
    theirs = PerceptualLoss(**settings)
    ours = LOSS_REGISTRY.get('PerceptualStyleLoss')(**settings, weights_path=str(weights))
    low = -1 if range_norm else 0
    out, gt = torch.rand(2, 3, 24, 24) * (1 - low) + low, torch.rand(2, 3, 24, 24) * (1 - low) + low
    for mine, ref in zip(ours(out, gt), theirs(out, gt)):
        assert torch.allclose(mine, ref, rtol=1e-4)


def _stub(cls, out_size, n=2):
    """A model object with only what get_roi_regions reads."""
    model = object.__new__(cls)
    model.opt, model.device = {'network_g': {'out_size': out_size}}, torch.device('cpu')
    g = torch.Generator().manual_seed(0)
    model.gt, model.output = torch.randn(n, 3, out_size, out_size, generator=g), torch.randn(n, 3, out_size, out_size,
                                                                                            generator=g)
    side = out_size / 4
    boxes = torch.tensor([[side, side, 2 * side, 2 * side]] * n)
    model.loc_left_eyes, model.loc_right_eyes, model.loc_mouths = boxes, boxes + side, boxes + side / 2
    return model


CROPS = ('left_eyes_gt', 'right_eyes_gt', 'mouths_gt', 'left_eyes', 'right_eyes', 'mouths')


def test_component_crops_are_gfpgans_at_512_and_scale_with_smaller_faces():
    from dlst_plugin.models.gfpgan_recipe import GFPGANRecipe
    ours, theirs = _stub(GFPGANRecipe, 512), _stub(gfpgan_model.GFPGANModel, 512)
    ours.get_roi_regions(eye_out_size=80, mouth_out_size=120)
    theirs.get_roi_regions(eye_out_size=80, mouth_out_size=120)
    assert all(torch.equal(getattr(ours, k), getattr(theirs, k)) for k in CROPS)
    small = _stub(GFPGANRecipe, 32)
    small.get_roi_regions(eye_out_size=80, mouth_out_size=120)  # GFP-GAN's: 0 px crops, an error
    assert small.left_eyes.shape == (2, 3, 5, 5) and small.mouths_gt.shape == (2, 3, 8, 8)
    box = small.loc_right_eyes[0].int().tolist()
    patch = small.gt[:1, :, box[1]:box[3], box[0]:box[2]]  # the crop is the box's content, resampled
    assert torch.allclose(small.right_eyes_gt[:1].mean(), patch.mean(), atol=0.15)


def test_misspelt_missing_and_streaming_keys_are_named():
    from dlst_plugin.experiments.table1 import cell_options
    from dlst_plugin.models.gfpgan_recipe_model import check_gfpgan_options
    opt = cell_options('gfpgan_dl')
    check_gfpgan_options(opt)
    bad = copy.deepcopy(opt)
    bad['train']['comp_style_weigth'] = bad['train'].pop('comp_style_weight')
    del bad['network_d_mouth'], bad['train']['L1_opt']
    bad['train']['stream_pairs'] = {'degrader': 'x.pth'}
    with pytest.raises(ConfigError) as err:
        check_gfpgan_options(bad)
    text = str(err.value)
    assert 'train.comp_style_weigth: unknown key; did you mean comp_style_weight' in text
    assert 'network_d_mouth: missing' in text and 'train.L1_opt: missing (required)' in text
    assert 'train.stream_pairs: GFPGANRecipeModel trains on the loader' in text
    no_boxes = copy.deepcopy(opt)
    no_boxes['datasets']['train']['crop_components'] = False
    with pytest.raises(ConfigError, match='datasets.train.crop_components: must be true'):
        check_gfpgan_options(no_boxes)
    check_gfpgan_options({**no_boxes, 'train': None, 'is_train': False})  # a test run reads no train: block


def test_gfpgan_is_imported_only_to_build_its_model_or_networks():
    code = ('import sys, dlst_plugin; from basicsr.utils.registry import MODEL_REGISTRY; '
            'from basicsr.archs import build_network; MODEL_REGISTRY.get("GFPGANRecipeModel"); '
            'print("gfpgan" in sys.modules); '
            'net = build_network({"type": "ResNetArcFace", "block": "IRBlock", "layers": [1, 1, 1, 1], '
            '"use_se": False}); print(type(net).__module__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ['False', 'gfpgan.archs.arcface_arch']  # the identity network is found without importing gfpgan


def _prior(path, net_opt):
    """A BasicSR-layout StyleGAN2 of the tiny GFPGANv1Clean's decoder size (what GFP-GAN's recipe loads)."""
    from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
    torch.manual_seed(3)
    prior = PureStyleGAN2Generator(net_opt['out_size'], net_opt['num_style_feat'], net_opt['num_mlp'],
                                   net_opt['channel_multiplier'], narrow=net_opt['narrow'])
    torch.save({'params_ema': prior.state_dict()}, path)
    return path


def test_one_iteration_trains_every_term_of_gfpgans_recipe(tmp_path):
    from basicsr.data import build_dataset
    faces = tmp_path / 'faces'
    face_crops(faces, size=32, count=2, seed=0)
    opt = tiny_table1_cell('gfpgan_gfpdeg', faces, tmp_root=tmp_path, arcface=tiny_arcface_file(tmp_path / 'a.pth'))
    opt['network_g']['decoder_load_path'] = str(_prior(tmp_path / 'prior.pth', opt['network_g']))
    path = tmp_path / 'o.yml'
    path.write_text(__import__('yaml').safe_dump(opt))
    model = MODEL_REGISTRY.get('GFPGANRecipeModel')(single_process_options(path, tmp_path))
    assert isinstance(model, gfpgan_model.GFPGANModel)
    from dlst_plugin.loading.priors import load_clean_decoder
    reference = copy.deepcopy(model.net_g)
    load_clean_decoder(reference, opt['network_g']['decoder_load_path'])
    decoder = model.net_g_ema.stylegan_decoder.state_dict()
    assert all(torch.equal(v, decoder[k]) for k, v in reference.stylegan_decoder.state_dict().items())
    dataset = build_dataset({**opt['datasets']['train'], 'phase': 'train'})
    batch = {k: torch.stack([dataset[i][k] for i in range(2)]) for k in ('lq', 'gt', 'loc_left_eye', 'loc_right_eye',
                                                                       'loc_mouth')}
    before = [p.detach().clone() for p in model.net_d_mouth.parameters()]
    model.feed_data(batch)
    model.optimize_parameters(2)  # R1 (every 2 here) and the pyramid loss (dropped after iteration 1)
    logged = set(model.log_dict)
    assert {'l_g_pix', 'l_p_8', 'l_g_percep', 'l_g_style', 'l_g_gan', 'l_g_gan_left_eye', 'l_g_comp_style_loss',
            'l_identity', 'l_d_r1', 'l_d_mouth'} <= logged
    assert model.log_dict['l_p_8'] < 1e-9  # 1e-12 weight after remove_pyramid_loss
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_d_mouth.parameters()))


def test_missing_prior_vgg_and_arcface_files_stop_the_run_at_start(tmp_path, monkeypatch):
    from dlst_plugin.experiments.table1 import cell_options
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('DLST_WEIGHTS_DIR', str(tmp_path / 'weights'))
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    with pytest.raises(SystemExit) as err:
        MODEL_REGISTRY.get('GFPGANRecipeModel')({**cell_options('gfpgan_dl'), 'is_train': True})
    lines = str(err.value).splitlines()[1:]
    assert [line.split(':')[0].strip() for line in lines] == ['train.perceptual_opt', 'network_g.decoder_load_path',
                                                              'path.pretrain_network_identity']
    assert 'vgg19-dcbb9e9d.pth' in lines[0] and lines[2].endswith('arcface_resnet18.pth')


def test_launch_option_check_names_a_missing_arcface_file(tmp_path):
    """The option check of a launch (check_files) finds GFP-GAN's missing identity network before anything is
    built: one line naming the option and the file; with the file there it finds nothing."""
    from dlst_plugin.options.check import check_options
    faces = tmp_path / 'faces'
    face_crops(faces, size=32, count=2, seed=0)
    arcface = tmp_path / 'arcface_resnet18.pth'
    opt = tiny_table1_cell('gfpgan_gfpdeg', faces, tmp_root=tmp_path, arcface=arcface)
    opt['network_g']['decoder_load_path'] = str(_prior(tmp_path / 'prior.pth', opt['network_g']))
    problems = check_options(copy.deepcopy(opt), plugin_run=False, check_files=True)
    assert problems == [f'path.pretrain_network_identity: file not found: {arcface}']
    tiny_arcface_file(arcface)
    assert check_options(copy.deepcopy(opt), plugin_run=False, check_files=True) == []
