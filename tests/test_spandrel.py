"""spandrel integration: the plugin's restorers are detected and run by spandrel (checkpoints saved by
training and files written by dlst-export), never confused with GFP-GAN / RestoreFormer, and the
descriptor gives FaceRestorer's output."""
import importlib
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import SAMPLE_FACES, call_main
from tiny_restorers import TINY_GLEAN, TINY_ST, build, save_training_checkpoint

try:
    import spandrel
except ImportError as err:  # a failure, not a skip: CI installs the extra (scripts/install.sh)
    raise ImportError(f"these tests need spandrel ({err}): pip install 'dlst-plugin[spandrel]'") from err

from dlst_plugin.checkpoints.meta import SIGNATURES
from dlst_plugin.inference.face_restorer import FaceRestorer
from dlst_plugin.integrations import spandrel as integration

NETWORKS = {'st': TINY_ST, 'glean': TINY_GLEAN}
NETWORK_TYPES = [net_opt['type'] for net_opt in NETWORKS.values()]


@pytest.fixture(scope='module', autouse=True)
def installed():
    return integration.install()


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """{(network, how): file}: checkpoints as training saves them and as dlst-export writes them."""
    from dlst_plugin.cli.export import main
    folder = tmp_path_factory.mktemp('spandrel_models')
    files = {}
    for name, net_opt in NETWORKS.items():
        ckpt, _ = save_training_checkpoint(folder / name / 'net_g_latest.pth', net_opt)
        files[name, 'trained'] = ckpt
        code, _, stderr = call_main(main, ['--model', ckpt, '-o', folder / 'exported', '--name', name,
                                           '--format', 'safetensors', 'pth'])
        assert code == 0, stderr
        files[name, 'safetensors'] = folder / 'exported' / f'{name}.safetensors'
        files[name, 'pth'] = folder / 'exported' / f'{name}.pth'
    return files


def their_state_dicts():
    """GFP-GAN (v1.3/1.4 clean, 512 px) and RestoreFormer key sets, from spandrel's own bundled classes (on the
    meta device: real names and shapes, no memory)."""
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel.architectures.RestoreFormer import RestoreFormer
    with torch.device('meta'):
        gfpgan = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                        fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
        restoreformer = RestoreFormer()
    return {'GFPGAN': gfpgan.state_dict(), 'RestoreFormer': restoreformer.state_dict()}


def detected(state):
    """The id spandrel's registry would load ``state`` as (the first architecture, in detection order)."""
    return next((a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection') if a.detect(state)), None)


def test_install_is_idempotent():
    registry = spandrel.MAIN_REGISTRY.copy()
    assert integration.install(registry) == []  # MAIN_REGISTRY (copied) already has them
    fresh = spandrel.ArchRegistry()
    assert integration.install(fresh) == ['SkipTransformer', 'GLEANStyleGAN2']
    assert integration.install(fresh) == [] and len(fresh) == 2
    assert 'SkipTransformer' in spandrel.MAIN_REGISTRY and 'GLEANStyleGAN2' in spandrel.MAIN_REGISTRY


@pytest.mark.parametrize('how', ['trained', 'safetensors', 'pth'])
@pytest.mark.parametrize('name', list(NETWORKS))
def test_spandrel_detects_and_runs_our_checkpoints(saved, name, how):
    model = spandrel.ModelLoader().load_from_file(saved[name, how])
    net_opt = NETWORKS[name]
    scale = net_opt['out_size'] // net_opt.get('in_size', net_opt['out_size'])
    assert model.architecture.id == net_opt['type'] and model.purpose == 'FaceSR'
    assert (model.scale, model.input_channels, model.output_channels) == (scale, 3, 3)
    assert model.size_requirements.square and model.tiling == spandrel.ModelTiling.DISCOURAGED
    assert model.supports_bfloat16 and model.supports_half
    size = net_opt.get('in_size', 32)
    out = model(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 3, size * scale, size * scale) and 0 <= out.min() and out.max() <= 1
    assert out.std() > 0.01  # an image, not a constant


def test_their_key_sets_are_not_ours_and_ours_not_theirs():
    for arch, state in their_state_dicts().items():
        assert detected(state) == arch
        assert not any(spandrel.MAIN_REGISTRY[ours].detect(state) for ours in SIGNATURES if ours in NETWORK_TYPES)
    for name, net_opt in NETWORKS.items():
        state = build(net_opt).state_dict()
        assert detected(state) == net_opt['type']
        theirs = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection')
                  if a.detect(state) and a.architecture.id not in SIGNATURES]
        assert theirs == []  # no architecture spandrel ships claims our keys


def test_descriptor_output_equals_face_restorer(saved):
    restorer = FaceRestorer.from_files(str(saved['st', 'trained']), device='cpu', dtype='float32')  # spandrel's float32
    result = restorer.restore_image(cv2.imread(str(SAMPLE_FACES / 'grace_hopper.jpg')))
    crop = result.inputs[0]  # an aligned face (BGR, 32 px)
    model = spandrel.ModelLoader().load_from_file(saved['st', 'safetensors'])
    x = torch.from_numpy(np.ascontiguousarray(crop[..., ::-1])).permute(2, 0, 1)[None].float() / 255
    out = model(x)
    reference = (restorer.run_network(x * 2 - 1) + 1) / 2
    assert (out - reference).abs().max() <= 1e-5
    as_uint8 = (out[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.int16)
    assert np.abs(as_uint8 - result.faces[0]).max() <= 1  # FaceRestorer's 8-bit face (rounding only)


@pytest.mark.parametrize('dtype, min_psnr', [(torch.bfloat16, 30), (torch.float16, 40)], ids=['bf16', 'fp16'])
def test_reduced_precision_matches_float32(saved, dtype, min_psnr):
    model = spandrel.ModelLoader().load_from_file(saved['st', 'trained'])
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    reference = model(x)
    out = model.to(dtype)(x.to(dtype))  # spandrel refuses a dtype the descriptor does not claim
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert 10 * torch.log10(1 / (out.float() - reference).pow(2).mean()) > min_psnr


def test_other_sizes_are_resized_to_the_face_size(saved):
    model = spandrel.ModelLoader().load_from_file(saved['glean', 'trained'])
    assert model(torch.rand(1, 3, 40, 40)).shape == (1, 3, 80, 80)  # GLEAN 16 -> 32 px: scale 2
    assert model(torch.rand(1, 3, 20, 30)).shape == (1, 3, 40, 60)  # padded square by spandrel, cropped back


def test_missing_spandrel_names_the_extra(monkeypatch):
    from dlst_plugin.errors import MissingPackageError
    monkeypatch.setitem(sys.modules, 'spandrel', None)
    monkeypatch.delitem(sys.modules, 'dlst_plugin.integrations.spandrel')
    with pytest.raises(MissingPackageError, match=r"pip install 'dlst-plugin\[spandrel\]'"):
        importlib.import_module('dlst_plugin.integrations.spandrel')
