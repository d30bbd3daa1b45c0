"""The mmengine adapter: the MMagic-style configs in options/mmagic/ parse with mmengine alone, import
the plugin through ``custom_imports`` and build working networks from mmengine's ``MODELS`` registry.

MMagic itself is not installed here (its SRGAN editor, losses and data pipeline are not exercised);
these tests cover the part the plugin provides: registration and the networks' config entries.
"""
import importlib
import sys
import uuid

import pytest
import torch
from helpers import REPO, line_is_marked_set_me

try:
    from mmengine import Config
    from mmengine.optim import DefaultOptimWrapperConstructor
    from mmengine.registry import MODELS, Registry
except ImportError as exc:
    MMENGINE_MISSING = (f"mmengine is not installed ({exc}): install the plugin's 'mmengine' extra, e.g. "
                        "pip install -e '.[mmengine]' (scripts/install.sh installs it by default)")
else:
    MMENGINE_MISSING = None

from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator

MODULE = 'dlst_plugin.integrations.mmengine'
CONFIG_DIR = REPO / 'options' / 'mmagic'
CONFIGS = sorted(CONFIG_DIR.glob('*.py'))
OURS = {'SkipTransformer': SkipTransformer, 'GLEANStyleGAN2': GLEANStyleGAN2,
        'PureStyleGAN2Generator': PureStyleGAN2Generator, 'PureStyleGAN2Discriminator': PureStyleGAN2Discriminator}
TINY = 32


@pytest.fixture(autouse=True)
def require_mmengine():
    """CI installs the extra: without mmengine every test here fails (never skips), saying what to install."""
    if MMENGINE_MISSING:
        pytest.fail(MMENGINE_MISSING, pytrace=False)


def shrink(net_cfg):
    """A copy of a network's config entry at 32 px, 1/32 of the widths, and no checkpoint to load."""
    cfg = dict(net_cfg)
    cfg.update(out_size=TINY, narrow=1 / 32)
    if 'in_size' in cfg:
        cfg['in_size'] = TINY
    if cfg['type'] != 'PureStyleGAN2Discriminator':
        cfg.update(num_style_feat=32, num_mlp=2)
    if cfg['type'] == 'GLEANStyleGAN2':  # MMagic's 23 RRDBs of 64 channels, shrunk too
        cfg.update(rrdb_channels=8, num_rrdbs=1, rrdb_growth_channels=4)
    if cfg.get('skip_resolutions') is not None:
        cfg['skip_resolutions'] = [r for r in cfg['skip_resolutions'] if r < TINY]
    for key in ('decoder_load_path', 'bank_load_path'):
        if key in cfg:
            cfg[key] = None
    return cfg


def load(path, monkeypatch):
    """``Config.fromfile`` with the adapter not yet imported, so ``custom_imports`` has to import it."""
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    return Config.fromfile(str(path))


def test_both_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {'dlst_st_x1_ffhq_512.py', 'glean_in512out512_ffhq.py'}


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_imports_plugin_and_builds_working_networks(path, monkeypatch):
    cfg = load(path, monkeypatch)
    assert cfg.custom_imports == dict(imports=[MODULE], allow_failed_imports=False)
    assert MODULE in sys.modules
    for name, cls in OURS.items():
        assert MODELS.get(name) is cls
    assert cfg.model.generator.type in ('SkipTransformer', 'GLEANStyleGAN2')
    assert cfg.model.generator.out_size == 512 and cfg.model.generator.get('in_size', 512) == 512
    assert cfg.model.data_preprocessor.mean == [127.5] * 3 and cfg.model.data_preprocessor.std == [127.5] * 3

    torch.manual_seed(0)
    generator = MODELS.build(shrink(cfg.model.generator)).eval()
    assert isinstance(generator, OURS[cfg.model.generator.type])
    x = torch.rand(1, 3, TINY, TINY, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out = generator(x)
    assert out.shape == x.shape and torch.isfinite(out).all()

    discriminator = MODELS.build(shrink(cfg.model.discriminator))
    assert isinstance(discriminator, PureStyleGAN2Discriminator)
    with torch.no_grad():
        score = discriminator(out)
    assert score.shape == (1, 1) and torch.isfinite(score).all()


def test_st_config_has_the_paper_settings(monkeypatch):
    model = load(CONFIG_DIR / 'dlst_st_x1_ffhq_512.py', monkeypatch).model
    assert model.type == 'SRGAN'
    assert model.generator.channel_multiplier == 1 and model.generator.decoder_load_path
    assert model.discriminator == dict(type='PureStyleGAN2Discriminator', out_size=512, channel_multiplier=1)
    assert model.pixel_loss.type == 'MSELoss' and model.pixel_loss.loss_weight == 1.0
    assert model.perceptual_loss.vgg_type == 'vgg16' and model.perceptual_loss.perceptual_weight == 0.02
    assert model.perceptual_loss.style_weight == 0
    assert model.gan_loss.gan_type == 'vanilla' and model.gan_loss.loss_weight == 0.02


def test_st_optimisers_follow_the_paper(monkeypatch):
    """Adam (0.5, 0.99) at 5e-5 for G and D; mmengine's per-parameter rule puts the decoder at 5e-6."""
    cfg = load(CONFIG_DIR / 'dlst_st_x1_ffhq_512.py', monkeypatch)
    for part in ('generator', 'discriminator'):
        assert cfg.optim_wrapper[part].optimizer == dict(type='Adam', lr=5e-5, betas=(0.5, 0.99))
    wrapper_cfg = dict(cfg.optim_wrapper.generator)
    paramwise = wrapper_cfg.pop('paramwise_cfg')
    net = MODELS.build(shrink(cfg.model.generator))
    optimizer = DefaultOptimWrapperConstructor(wrapper_cfg, paramwise)(net).optimizer
    lr_of = {id(p): group['lr'] for group in optimizer.param_groups for p in group['params']}
    trainable = [(name, p) for name, p in net.named_parameters() if p.requires_grad]  # mmengine skips frozen ones
    assert any(name.startswith('decoder.') for name, _ in trainable)
    for name, p in trainable:
        assert lr_of[id(p)] == pytest.approx(5e-6 if name.startswith('decoder.') else 5e-5), name


def test_registration_is_idempotent():
    module = importlib.import_module(MODULE)
    importlib.reload(module)
    importlib.reload(module)
    assert module.register() == []
    for name, cls in OURS.items():
        assert MODELS.module_dict[name] is cls


def test_registers_into_a_root_that_a_child_registry_falls_back_to():
    """As MMagic's MODELS (a child of mmengine's root, holding its own names) finds the plugin's."""
    module = importlib.import_module(MODULE)
    root = Registry('model', scope='scratch')
    child = Registry('model', parent=root, scope=f'child_{uuid.uuid4().hex[:8]}')
    child.register_module(name='SRGAN', module=torch.nn.Identity)
    assert sorted(module.register(root)) == sorted(OURS)
    assert module.register(root) == []
    assert child.get('SkipTransformer') is SkipTransformer
    net = child.build(shrink(dict(type='SkipTransformer', out_size=512)))
    assert isinstance(net, SkipTransformer)


def test_a_name_held_by_another_class_is_a_clear_error():
    module = importlib.import_module(MODULE)
    root = Registry('model', scope='scratch')

    class PureStyleGAN2Generator(torch.nn.Module):  # someone else's class of the same name
        pass

    root.register_module(module=PureStyleGAN2Generator)
    with pytest.raises(module.RegistryConflictError, match=r"'PureStyleGAN2Generator' is held by .*"
                       r"test_a_name_held_by_another_class_is_a_clear_error"):
        module.register(root)
    assert list(root.module_dict) == ['PureStyleGAN2Generator']  # nothing registered half-way


@pytest.mark.parametrize('path', sorted(CONFIG_DIR.rglob('*.py')), ids=lambda p: p.name)
def test_every_user_path_is_marked_set_me(path):
    lines = path.read_text().splitlines()
    keys = ('_load_path=', 'data_root=', 'data_prefix=', 'ann_file=')
    for i, line in enumerate(lines):
        code = line.split('#')[0]
        if not any(k in code for k in keys) or "=''" in code or '=None' in code:
            continue
        assert line_is_marked_set_me(lines, i), line
