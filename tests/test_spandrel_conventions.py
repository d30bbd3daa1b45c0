"""spandrel's own test conventions applied to the plugin's architectures, offline.

spandrel checks every architecture it ships with helpers in its repository's ``tests/util.py`` (not in its
wheel): ``assert_loads_correctly`` (a model rebuilt from its state dict alone, and from the same weights
through safetensors, has the same ``hyperparameters``; detection accepts the keys), ``ModelFile`` snapshots
(a file loads to a descriptor whose properties equal a stored snapshot) and ``assert_image_inference`` (an
image goes through the descriptor to the expected image, within one 8-bit level). The same checks, written
here in the plugin's words, run against ``SkipTransformerArch`` and ``GLEANStyleGAN2Arch``."""
import cv2
import numpy as np
import pytest
import safetensors.torch
import spandrel
import torch
from helpers import SAMPLE_FACES

from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.integrations.spandrel import GLEANStyleGAN2Arch, SkipTransformerArch, install

ST = dict(out_size=32, num_style_feat=32, num_mlp=2, narrow=1 / 32)
GLEAN = dict(in_size=16, out_size=32, num_style_feat=32, num_mlp=2, narrow=1 / 32, rrdb_channels=8, num_rrdbs=1,
             rrdb_growth_channels=4)
# what no weight records: the files a network was initialised from, training switches, and lr_mlp (it scales
# the mapping network, which these restorers never run)
NOT_IN_WEIGHTS = {'decoder_load_path', 'decoder_channel_order', 'fix_decoder', 'use_checkpoint', 'lr_mlp',
                  'bank_load_path', 'bank_layout', 'bank_channel_order', 'fix_bank'}
ST_MODELS = {
    'tiny': lambda: SkipTransformer(**ST),
    'patch_sizes': lambda: SkipTransformer(**ST, patch_sizes={8: 2, 16: 4, 32: 8}),
    'no_attention': lambda: SkipTransformer(**ST, attention=False),
    'skips': lambda: SkipTransformer(**ST, skip_resolutions=[4, 16]),
    'encoder': lambda: SkipTransformer(**ST, encoder_narrow=0.5, num_first_blocks=2),
    'wide_64px': lambda: SkipTransformer(out_size=64, num_style_feat=48, num_mlp=3, channel_multiplier=2,
                                         narrow=1 / 16, patch_sizes={32: 2}),
}
GLEAN_MODELS = {
    'sr_x2': lambda: GLEANStyleGAN2(**GLEAN),
    'restore': lambda: GLEANStyleGAN2(**{**GLEAN, 'in_size': 32}),
    'sr_x8_trunk': lambda: GLEANStyleGAN2(**{**GLEAN, 'in_size': 4, 'num_rrdbs': 3, 'rrdb_growth_channels': 6}),
    'c1_64px': lambda: GLEANStyleGAN2(**{**GLEAN, 'out_size': 64, 'channel_multiplier': 1, 'narrow': 1 / 16}),
}
CASES = [(SkipTransformerArch, name, make) for name, make in ST_MODELS.items()] + \
        [(GLEANStyleGAN2Arch, name, make) for name, make in GLEAN_MODELS.items()]


@pytest.fixture(scope='module', autouse=True)
def installed():
    install()


def hyperparameter_diff(a, b):
    """The keys whose values differ (spandrel's ``_get_diff``: lists and tuples compare equal)."""
    plain = {list: list, tuple: list}
    keys = sorted(set(a) | set(b))
    return [f'{k}: {a.get(k, "<missing>")} != {b.get(k, "<missing>")}' for k in keys
            if plain.get(type(a.get(k)), lambda v: v)(a.get(k)) != plain.get(type(b.get(k)), lambda v: v)(b.get(k))]


def missing_detection_keys(arch, state):
    """spandrel's detection debugging for a ``has_all`` condition: the signature keys ``state`` lacks."""
    from dlst_plugin.checkpoints.meta import SIGNATURES
    return [key for key in SIGNATURES[arch.id] if key not in state]


def assert_same(model, loaded, name):
    assert type(loaded) is type(model), name
    ours = {k: v for k, v in model.hyperparameters.items() if k not in NOT_IN_WEIGHTS}
    theirs = {k: v for k, v in loaded.hyperparameters.items() if k not in NOT_IN_WEIGHTS}
    assert not hyperparameter_diff(ours, theirs), f'{name}: {hyperparameter_diff(ours, theirs)}'


@pytest.mark.parametrize('arch_cls, name, make', CASES, ids=[f'{c.__name__}-{n}' for c, n, _ in CASES])
def test_loads_correctly(arch_cls, name, make):
    """spandrel's ``assert_loads_correctly``, plus: the rebuilt network computes the same output."""
    arch = arch_cls()
    torch.manual_seed(0)
    model = make().eval()
    state = model.state_dict()
    loaded = arch.load(state)
    assert_same(model, loaded.model, name)
    stored = safetensors.torch.load(safetensors.torch.save({k: v.contiguous() for k, v in state.items()}))
    assert_same(model, arch.load(stored).model, f'{name} (safetensors)')
    assert arch.detect(state), f'{name}: not detected, missing {missing_detection_keys(arch, state)}'
    size = getattr(model, 'in_size', model.out_size)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model(x))


SNAPSHOTS = {  # the descriptor's properties, spandrel's snapshot less model, state_dict, device and dtype
    'st': {'architecture': 'SkipTransformer', 'purpose': 'FaceSR', 'tags': ['32px'], 'scale': 1,
           'input_channels': 3, 'output_channels': 3, 'supports_half': True, 'supports_bfloat16': True,
           'size_requirements': spandrel.SizeRequirements(square=True), 'tiling': spandrel.ModelTiling.DISCOURAGED},
    'glean': {'architecture': 'GLEANStyleGAN2', 'purpose': 'FaceSR', 'tags': ['16px', '32px'], 'scale': 2,
              'input_channels': 3, 'output_channels': 3, 'supports_half': True, 'supports_bfloat16': True,
              'size_requirements': spandrel.SizeRequirements(square=True),
              'tiling': spandrel.ModelTiling.DISCOURAGED},
}
FILES = {'st': lambda: SkipTransformer(**ST, patch_sizes={16: 4}), 'glean': lambda: GLEANStyleGAN2(**GLEAN)}


def descriptor_properties(model):
    props = {name: getattr(model, name) for name in SNAPSHOTS['st'] if name != 'architecture'}
    return {'architecture': str(model.architecture.id), **props}


def model_file(tmp_path, name, suffix):
    torch.manual_seed(0)
    net = FILES[name]().eval()
    path = tmp_path / f'{name}{suffix}'
    if suffix == '.safetensors':
        safetensors.torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save({'params_ema': net.state_dict()}, path)
    return path, net


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('name', list(SNAPSHOTS))
def test_model_file_matches_its_snapshot(tmp_path, name, suffix):
    """spandrel's ``ModelFile.load_model`` + snapshot: weights-only files, read as spandrel reads them."""
    path, net = model_file(tmp_path, name, suffix)
    loader = spandrel.ModelLoader()
    model = loader.load_from_state_dict(loader.load_state_dict_from_file(path))
    assert descriptor_properties(model) == SNAPSHOTS[name]
    assert model.model.hyperparameters == net.hyperparameters


def to_uint8_bgr(tensor):
    return cv2.cvtColor((tensor[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8),
                        cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize('name', list(SNAPSHOTS))
def test_image_inference(tmp_path, name):
    """spandrel's ``assert_image_inference``: a BGR face through the descriptor (RGB [0, 1] in and out) gives the
    expected image (here: the network's own output on the same face) within one 8-bit level, at ``scale``."""
    path, net = model_file(tmp_path, name, '.pth')
    model = spandrel.ModelLoader().load_from_file(path)
    size = getattr(net, 'in_size', net.out_size)
    image = cv2.resize(cv2.imread(str(SAMPLE_FACES / 'grace_hopper.jpg')), (size, size), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        output = to_uint8_bgr(model(rgb))
        expected = to_uint8_bgr(((net(rgb * 2 - 1) + 1) / 2).clamp(0, 1))
    assert output.shape == (size * model.scale, size * model.scale, 3)
    assert np.abs(output.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize('name', list(SNAPSHOTS))
def test_size_requirements(tmp_path, name):
    """spandrel's ``assert_size_requirements``: every square size is taken (resized to the face size inside)."""
    model = spandrel.ModelLoader().load_from_file(model_file(tmp_path, name, '.pth')[0])
    with torch.no_grad():
        for size in (8, 24, 40):
            assert model(torch.rand(1, 3, size, size)).shape == (1, 3, size * model.scale, size * model.scale)


def test_no_architecture_spandrel_ships_claims_our_keys_or_mmagics_glean():
    from test_glean_mmagic import mmagic_state, native
    states = {name: make().state_dict() for name, make in {**ST_MODELS, **GLEAN_MODELS}.items()}
    states['mmagic_glean'] = {'generator.' + k: v for k, v in mmagic_state(native()).items()}
    ours = {'SkipTransformer', 'GLEANStyleGAN2'}
    for name, state in states.items():
        claims = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection') if a.detect(state)]
        assert claims and claims[0] in ours and not set(claims) - ours, (name, claims)
