"""The library under the commands: every command is a thin layer over it (none runs another's ``main``), and the
small shared pieces the demo, dlst-table1 and the commands use: the dotted option edit, atomic image writes,
LMDB reading, where a training run's files are."""
import ast
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers import REPO

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.experiments.runs import experiment_dir, final_checkpoint
from dlst_plugin.fileio.atomic import atomic_write_image
from dlst_plugin.fileio.lmdb import LmdbWriter, lmdb_keys, read_lmdb_images
from dlst_plugin.options.file import set_dotted

PACKAGE = REPO / 'dlst_plugin'


def _modules():
    for path in sorted(PACKAGE.rglob('*.py')):
        yield path, ast.parse(path.read_text(encoding='utf-8'), filename=str(path))


def _imported(tree):
    """(module, name) of every ``from X import name`` and (X, None) of every ``import X`` of the plugin."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('dlst_plugin'):
            yield from ((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names if alias.name.startswith('dlst_plugin'))


def test_no_command_runs_another_commands_main_and_the_library_never_imports_a_command():
    for path, tree in _modules():
        where = path.relative_to(REPO).as_posix()
        in_cli = path.parent.name == 'cli'
        for module, name in _imported(tree):
            commands = {f'dlst_plugin.cli.{name}'} if module == 'dlst_plugin.cli' and name else {module}
            for command in (c for c in commands if c.startswith('dlst_plugin.cli.') and c != 'dlst_plugin.cli.common'):
                assert in_cli, f'{where} imports the command {command}: call the library instead'
            assert name != 'main' or not module.startswith('dlst_plugin.cli'), f'{where} imports {module}.main'
        mains = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == 'main']
        assert not mains, f'{where}:{mains[0]} uses some module\'s main'


def test_every_command_module_has_main_and_hands_its_work_to_the_library():
    for path in sorted((PACKAGE / 'cli').glob('*.py')):
        if path.stem in ('__init__', 'common'):
            continue
        tree = ast.parse(path.read_text(encoding='utf-8'))
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {'main', 'build_parser'} <= functions, path.name
        library = [m for m, _ in _imported(tree) if not m.startswith('dlst_plugin.cli')
                   and m not in ('dlst_plugin.errors', 'dlst_plugin.checkpoints.files', 'dlst_plugin.faces.detection')]
        assert library, f'{path.name} calls no library module'
        assert len(path.read_text().splitlines()) < 200, f'{path.name} is more than argument parsing'


def test_set_dotted_makes_missing_blocks_or_names_the_missing_part():
    opt = {'train': {'optim_g': {'lr': 1e-4}}}
    assert set_dotted(opt, 'train:optim_g:lr', 2e-4) is opt and opt['train']['optim_g']['lr'] == 2e-4
    set_dotted(opt, 'datasets:train:out_size', 32)
    assert opt['datasets'] == {'train': {'out_size': 32}}
    set_dotted(opt, 'logger.print_freq', 5, sep='.')
    assert opt['logger'] == {'print_freq': 5}
    with pytest.raises(ConfigError, match='^val:metrics:psnr: val is not in the option file'):
        set_dotted(opt, 'val:metrics:psnr', {}, create=False)
    with pytest.raises(ConfigError, match='train:optim_g:lr:value: train:optim_g:lr is not a block of keys'):
        set_dotted(opt, 'train:optim_g:lr:value', 1)
    assert opt['train']['optim_g']['lr'] == 2e-4  # nothing changed by the refused edits


def test_atomic_write_image_encodes_by_suffix_and_leaves_no_temporary_file(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    atomic_write_image(tmp_path / 'sub' / 'a.png', img)
    assert np.array_equal(cv2.imread(str(tmp_path / 'sub' / 'a.png')), img)  # PNG: lossless
    atomic_write_image(tmp_path / 'b.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert (tmp_path / 'b.jpg').read_bytes()[:2] == b'\xff\xd8'  # a JPEG, whatever OpenCV's default
    with pytest.raises(ValueError, match='cannot encode'):
        atomic_write_image(tmp_path / 'c.png', np.zeros((4, 4, 7), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['b.jpg', 'sub']


def test_read_lmdb_images_reads_the_listed_keys_and_names_a_missing_one(tmp_path):
    images = {f'{i:03d}': np.full((8, 8, 3), 40 * i, np.uint8) for i in range(3)}
    with LmdbWriter(tmp_path / 'x.lmdb') as writer:
        for key, img in images.items():
            writer.put_image(key, img)
    assert lmdb_keys(tmp_path / 'x.lmdb') == ['000', '001', '002']
    read = read_lmdb_images(tmp_path / 'x.lmdb', ['002', '000'])
    assert list(read) == ['002', '000'] and all(np.array_equal(read[k], images[k]) for k in read)
    assert len(read_lmdb_images(tmp_path / 'x.lmdb')) == 3
    with pytest.raises(InputError, match=r"x\.lmdb: key '007' is not stored"):
        read_lmdb_images(tmp_path / 'x.lmdb', ['007'])


def test_a_run_is_found_where_basicsr_puts_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'a.yml').write_text(yaml.safe_dump({'name': 'run_a'}))
    run_b = {'name': 'run_b', 'path': {'experiments_root': str(tmp_path / 'b')}}
    (tmp_path / 'b.yml').write_text(yaml.safe_dump(run_b))
    assert experiment_dir(tmp_path / 'a.yml') == Path('experiments') / 'run_a'
    assert experiment_dir(tmp_path / 'b.yml') == tmp_path / 'b'
    assert final_checkpoint(tmp_path / 'b') is None  # not finished
    (tmp_path / 'b' / 'models').mkdir(parents=True)
    (tmp_path / 'b' / 'models' / 'net_g_latest.pth').write_bytes(b'')
    assert final_checkpoint(tmp_path / 'b') == tmp_path / 'b' / 'models' / 'net_g_latest.pth'


def test_table1_evaluate_restores_each_finished_cell_in_process_and_writes_the_table(tmp_path, capsys):
    """dlst-table1 evaluate without trainings: one finished tiny cell, one whose checkpoint is broken (failed,
    named, left out), the rest unfinished."""
    from tiny_restorers import TINY_ST, save_training_checkpoint

    from dlst_plugin.experiments.table1_runs import evaluate_cells
    from dlst_plugin.metrics.evaluation import EvaluationSettings
    for cell in ('st_dl', 'glean_gfpdeg', 'gfpgan_gfpdeg', 'gfpgan_dl', 'glean_dl', 'st_gfpdeg'):
        opt = {'name': f'table1_{cell}', 'path': {'experiments_root': str(tmp_path / 'exp' / cell)},
               'network_g': dict(TINY_ST)}
        (tmp_path / f'{cell}.yml').write_text(yaml.safe_dump(opt))
    save_training_checkpoint(tmp_path / 'exp' / 'st_dl' / 'models' / 'net_g_latest.pth', TINY_ST)
    (tmp_path / 'exp' / 'glean_gfpdeg' / 'models').mkdir(parents=True)
    (tmp_path / 'exp' / 'glean_gfpdeg' / 'models' / 'net_g_latest.pth').write_bytes(b'not a checkpoint')
    rng = np.random.default_rng(0)
    (tmp_path / 'test').mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / 'test' / f'{i}.png'), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    result = evaluate_cells(tmp_path, tmp_path / 'test', tmp_path / 'eval', 'cpu',
                            EvaluationSettings(metrics=['niqe'], niqe_backend='basicsr'))
    assert (result.scored, result.failed, result.unscored_images) == (['st_dl'], ['glean_gfpdeg'], [])
    assert 'error: glean_gfpdeg:' in capsys.readouterr().err
    assert len(list((tmp_path / 'eval' / 'restored' / 'st_dl' / 'restored_faces').glob('*.png'))) == 3
    table = (tmp_path / 'eval' / 'table1.md').read_text().splitlines()
    assert table == result.table.splitlines() and table[0].endswith('DL (second-order) (NIQE) |')
    st_row = table[4].split('|')
    assert st_row[1].strip().startswith('ST') and st_row[2].strip() == '-' and float(st_row[3]) > 0
