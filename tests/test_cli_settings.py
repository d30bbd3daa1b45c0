"""Flags shared by several commands mean one thing everywhere: each command's settings dataclass is filled from
flags of the same names (cli.common.settings_from_args), and --device / --weights-dir take the same values."""
import argparse
import dataclasses
import importlib

import pytest

from dlst_plugin.cli import common
from dlst_plugin.fileio.atomic import append_durably
from dlst_plugin.fileio.folder_lmdb import LmdbSettings
from dlst_plugin.inference.pairs import PairSettings
from dlst_plugin.inference.restore_files import RestoreSettings
from dlst_plugin.metrics.evaluation import EvaluationSettings

# command, the least argv it parses, its settings dataclass, the fields it sets itself (not a flag of that name)
SETTINGS = [('make_lmdb', ['-i', 'a', '-o', 'b.lmdb'], LmdbSettings, ()),
            ('generate_pairs', ['--model', 'm.pth', '-o', 'out', '-n', '4'], PairSettings, ()),
            ('evaluate', [], EvaluationSettings, ('metrics',)),
            ('restore', ['-i', 'x', '-o', 'y', '--model', 'm.pth'], RestoreSettings, ('write_faces',))]


def parse(name, argv):
    return common.parse_args(importlib.import_module(f'dlst_plugin.cli.{name}').build_parser(), argv)


@pytest.mark.parametrize('name, argv, cls, own', SETTINGS, ids=[s[0] for s in SETTINGS])
def test_every_settings_field_has_a_flag_of_its_name(name, argv, cls, own):
    flags = vars(parse(name, argv))
    assert [f.name for f in dataclasses.fields(cls) if f.name not in flags and f.name not in own] == []


def test_settings_from_args_takes_flags_then_overrides_and_refuses_unknown_fields():
    args = argparse.Namespace(seed=3, batch_size=2, device='cpu', unrelated='x')
    settings = common.settings_from_args(PairSettings, args, device='cuda:1')
    assert (settings.seed, settings.batch_size, settings.device) == (3, 2, 'cuda:1')
    assert settings.truncation == PairSettings.truncation  # neither a flag nor an override: the default
    with pytest.raises(TypeError, match='no_such_field'):
        common.settings_from_args(PairSettings, args, no_such_field=1)


def test_commands_build_their_settings_from_the_flags():
    from dlst_plugin.cli import evaluate, restore
    settings = restore.restore_settings(parse('restore', ['-i', 'x', '-o', 'y', '--model', 'm', '--no-faces',
                                                          '--batch-size', '7', '--device', 'cuda:1']))
    assert (settings.write_faces, settings.batch_size, settings.device) == (False, 7, 'cuda:1')
    settings = evaluate.evaluation_settings(parse('evaluate', ['--metrics', 'niqe,fid', '--fid-dims', '64']))
    assert (settings.metrics, settings.fid_dims) == (['niqe', 'fid'], 64)


@pytest.mark.parametrize('name, argv', [('restore', ['-i', 'x', '-o', 'y', '--model', 'm']),
                                        ('generate_pairs', ['--model', 'm', '-o', 'o', '-n', '1']),
                                        ('evaluate', []), ('table1', ['evaluate', '--input', 't'])])
def test_device_takes_the_same_values_in_every_command(name, argv, capsys):
    for device in ('auto', 'cpu', 'cuda', 'cuda:1'):
        assert parse(name, argv + ['--device', device]).device == device
    with pytest.raises(SystemExit) as exit_info:
        parse(name, argv + ['--device', 'gpu'])
    assert exit_info.value.code == 2
    assert "'gpu' is not a device: use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize('name', ['collect_lq_faces', 'make_testset', 'generate_pairs', 'restore', 'evaluate',
                                  'export'])
def test_weights_dir_means_the_folder_of_weight_files_everywhere(name, capsys):
    with pytest.raises(SystemExit):
        importlib.import_module(f'dlst_plugin.cli.{name}').main(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    assert '--weights-dir DIR folder of weight files, where' in help_text
    assert 'default: $DLST_WEIGHTS_DIR, else ./weights' in help_text


def test_append_durably_appends_text_as_given(tmp_path):
    path = tmp_path / 'done.txt'
    append_durably(path, 'a\n')
    append_durably(path, 'b\r\nc\n')
    append_durably(path, '')
    assert path.read_bytes() == b'a\nb\r\nc\n'
