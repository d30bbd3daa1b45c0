"""The user-facing option files name registered types and mark the paths a user must set."""

import pytest
import yaml
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from helpers import REPO, line_is_marked_set_me

import dlst_plugin  # noqa: F401

OPTION_FILES = sorted((REPO / 'options').glob('*.yml')) + sorted((REPO / 'dlst_plugin' / 'assets').glob('*.yml'))


def _types(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'type' and isinstance(value, str):
                yield path, value
            else:
                yield from _types(value, path + (key, ))


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: p.name)
def test_option_file_names_registered_types(path):
    opt = yaml.load(path.read_text(), Loader=ordered_yaml()[0])
    if path.parent.name == 'options' or 'model_type' in opt:  # assets/restore_default.yml: network options only
        assert opt['model_type'] in MODEL_REGISTRY
    for where, name in _types(opt):
        if where[0] == 'datasets' and where[-1] != 'io_backend':
            assert name in DATASET_REGISTRY, (where, name)
        elif where[0].startswith('network_'):
            assert name in ARCH_REGISTRY, (where, name)
        elif where[0] == 'train' and where[-1].endswith('_opt'):
            assert name in LOSS_REGISTRY, (where, name)


@pytest.mark.parametrize('path', sorted((REPO / 'options').glob('train_*.yml')), ids=lambda p: p.name)
def test_every_user_path_is_marked_set_me(path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.split(':')[0].strip()
        if key.startswith('dataroot') or key in ('decoder_load_path', 'pretrained'):
            value = line.split(':', 1)[1].split('#')[0].strip()
            if value in ('~', ''):
                continue
            assert line_is_marked_set_me(lines, i), line


def test_paper_settings_of_the_main_recipes():
    dl = yaml.safe_load((REPO / 'options' / 'train_dl.yml').read_text())
    assert dl['datasets']['train']['batch_size_per_gpu'] == 12 and dl['train']['total_iter'] == 90000
    assert dl['train']['optim_g']['lr'] == 1e-4 and dl['train']['optim_g']['betas'] == [0, 0.9]
    st = yaml.safe_load((REPO / 'options' / 'train_dlst.yml').read_text())
    assert st['datasets']['train']['type'] == 'SecondOrderFaceDataset'
    assert st['datasets']['train']['batch_size_per_gpu'] == 8 and st['train']['total_iter'] == 220000
    assert st['train']['optim_g']['betas'] == [0.5, 0.99]
    assert st['train']['optim_g']['lr'] == 5e-5 and st['train']['optim_g']['decoder_lr'] == 5e-6
