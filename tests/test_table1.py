"""The paper's Table 1 grid: the shipped option files, and a tiny version of the whole grid (six cells
trained through BasicSR's entry and CPU torchrun, then restored and scored into the table)."""
import json
import shutil
import socket

import cv2
import pytest
import yaml
from helpers import REPO, face_crops, run
from restorer_configs import tiny_cell_options

from dlst_plugin import table1
from dlst_plugin.cli.table1 import table_markdown


def test_shipped_option_files_are_written_from_the_grid():
    shipped = sorted(p.stem for p in (REPO / 'options' / 'table1').glob('*.yml'))
    assert shipped == sorted(table1.cells() + table1.stream_files())
    for cell in table1.cells() + table1.stream_files():
        assert (REPO / 'options' / 'table1' / f'{cell}.yml').read_text() == table1.cell_yaml(cell), \
            f'options/table1/{cell}.yml is stale: run `dlst-table1 options`'


def test_cells_share_losses_batch_iterations_and_discriminator():
    opts = {cell: table1.cell_options(cell) for cell in table1.cells()}
    shared = [({k: v for k, v in o['train'].items() if k != 'optim_g'}, o['network_d'], o['val'],
               o['datasets']['val'], o['datasets']['train']['batch_size_per_gpu'], o['model_type'])
              for o in opts.values()]
    assert all(s == shared[0] for s in shared)
    assert shared[0][0]['total_iter'] == 220000 and shared[0][4] == 8
    assert {o['network_g']['type'] for o in opts.values()} == {'SkipTransformer', 'GLEANStyleGAN2', 'GFPGANv1Clean'}
    assert {o['datasets']['train']['type'] for o in opts.values()} == {'DegradedFaceDataset', 'SecondOrderFaceDataset'}


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match='cells are: gfpgan_gfpdeg'):
        table1.cell_options('stylegan_dl')


def test_table_layout_has_archs_as_rows_and_training_data_as_columns(tmp_path):
    methods = [{'name': cell, 'metrics': {'fid': {'value': float(i)}}} for i, cell in enumerate(table1.cells())]
    (tmp_path / 'metrics.json').write_text(json.dumps({'methods': methods[:-1]}))
    lines = table_markdown(tmp_path / 'metrics.json').splitlines()
    assert lines[0] == "| arch | GFP-GAN's degradation (FID) | DL (second-order) (FID) |"
    assert lines[2] == '| GFP-GAN (GFPGANv1Clean) | 0.00 | 1.00 |'
    assert lines[4] == '| ST (SkipTransformer) | 4.00 | - |'  # the unfinished cell


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_grid(tmp_path):
    """HQ faces, (clean, degraded) pairs, test faces and the six tiny cells' option files."""
    faces = tmp_path / 'faces'
    face_crops(faces, size=32, count=8, seed=0)
    for sub in ('clean', 'degraded'):
        (tmp_path / 'pairs' / sub).mkdir(parents=True)
    for i, path in enumerate(face_crops(tmp_path / 'gen', size=32, count=6, seed=4)):
        img = cv2.imread(str(path))
        cv2.imwrite(str(tmp_path / 'pairs' / 'clean' / f'{i:04d}.png'), img)
        cv2.imwrite(str(tmp_path / 'pairs' / 'degraded' / f'{i:04d}.png'), cv2.GaussianBlur(img, (0, 0), 1.5))
    face_crops(tmp_path / 'testset', size=32, count=4, seed=3)
    options = tmp_path / 'options'
    options.mkdir()
    for cell in table1.cells():
        opt = tiny_cell_options(cell, faces, tmp_path / 'pairs', iters=4, tmp_root=tmp_path)
        (options / f'{cell}.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return options


@pytest.mark.slow
def test_tiny_grid_trains_every_cell_and_evaluates_into_table1(tmp_path, tiny_grid):
    """GFP-GAN-data cells through ``python -m basicsr.train`` (ST) and the ``dlst-train`` console script
    (GLEAN, GFP-GAN), DL-data cells through ``dlst-table1 train --nproc 2`` (torchrun, two CPU processes:
    DDP for each arch), then ``dlst-table1 evaluate``."""
    dlst_train = shutil.which('dlst-train')
    assert dlst_train, 'dlst-train is not on PATH: install the package (scripts/install.sh)'
    for cell in table1.cells():
        if cell == 'st_gfpdeg':
            run(['python', '-m', 'basicsr.train', '-opt', tiny_grid / f'{cell}.yml'], cwd=tmp_path)
        elif cell.endswith('_gfpdeg'):
            run([dlst_train, '-opt', tiny_grid / f'{cell}.yml'], cwd=tmp_path)
        else:
            run(['python', '-m', 'dlst_plugin.cli.table1', 'train', cell, '--options-dir', tiny_grid, '--nproc', '2',
                 '--master-port', _free_port()], cwd=tmp_path)
    status = run(['python', '-m', 'dlst_plugin.cli.table1', 'status', '--options-dir', tiny_grid], cwd=tmp_path)
    assert status.stdout.count('finished: ') == 6, status.stdout
    proc = run(['python', '-m', 'dlst_plugin.cli.table1', 'evaluate', '--options-dir', tiny_grid, '--testset',
                tmp_path / 'testset', '--reference', tmp_path / 'faces', '--out', tmp_path / 'eval', '--device', 'cpu',
                '--evaluate-args', '--metrics fid --inception-random-init 0 --fid-dims 64'], cwd=tmp_path)
    table = (tmp_path / 'eval' / 'table1.md').read_text().splitlines()
    assert len(table) == 5 and all(line.count('|') == 4 and ' - ' not in line for line in table[2:]), proc.stdout
    for cell in table1.cells():
        assert len(list((tmp_path / 'eval' / 'restored' / cell / 'restored_faces').glob('*.png'))) == 4


