"""The paper's Table 1 grid: each row's own recipe in the shipped option files, and a tiny version of the
grid (a cell of each row, both training sets among them, trained through dlst-table1 and dlst-train, then
restored and scored into the table)."""
import copy
import json
import re
import shutil

import cv2
import pytest
import yaml
from helpers import REPO, call_main, face_crops, run, subprocess_env
from table1_cells import component_file, tiny_arcface_file, tiny_table1_cell

from dlst_plugin.cli import table1 as table1_cli
from dlst_plugin.experiments import table1
from dlst_plugin.experiments.table1_runs import table_markdown


def test_shipped_option_files_are_written_from_the_grid():
    shipped = sorted(p.stem for p in (REPO / 'options' / 'table1').glob('*.yml'))
    assert shipped == sorted(table1.cells() + table1.stream_files())
    for cell in table1.cells() + table1.stream_files():
        assert (REPO / 'options' / 'table1' / f'{cell}.yml').read_text() == table1.cell_yaml(cell), \
            f'options/table1/{cell}.yml is stale: run `dlst-table1 options`'


def _without_data(opt):
    opt = copy.deepcopy(opt)
    opt.pop('name')
    opt['datasets'].pop('train')
    return opt


def test_every_cell_trains_200k_iterations_and_the_two_cells_of_a_row_differ_only_in_data():
    opts = {cell: table1.cell_options(cell) for cell in table1.cells()}
    assert {o['train']['total_iter'] for o in opts.values()} == {200_000}
    for arch in table1.ARCHS:
        assert _without_data(opts[f'{arch}_gfpdeg']) == _without_data(opts[f'{arch}_dl'])
    assert len({json.dumps(o['datasets']['val'], sort_keys=True) for o in opts.values()}) == 1


def test_gfpgan_rows_are_gfpgans_train_gfpgan_v1_recipe():
    opt = table1.cell_options('gfpgan_dl')
    train = opt['train']
    assert opt['model_type'] == 'GFPGANRecipeModel' and opt['network_g']['type'] == 'GFPGANv1Clean'
    assert opt['network_g']['fix_decoder'] is True and opt['find_unused_parameters'] is True
    assert {opt[f'network_d_{p}']['type'] for p in ('left_eye', 'right_eye', 'mouth')} == \
        {'PureFacialComponentDiscriminator'}
    assert opt['network_identity'] == {'type': 'ResNetArcFace', 'block': 'IRBlock', 'layers': [2, 2, 2, 2],
                                       'use_se': False}
    assert opt['path']['pretrain_network_identity'].endswith('arcface_resnet18.pth')
    assert (train['pixel_opt']['type'], train['pixel_opt']['loss_weight']) == ('L1Loss', 0.1)
    assert (train['pyramid_loss_weight'], train['remove_pyramid_loss']) == (1, 50_000)
    percep = train['perceptual_opt']
    assert (percep['vgg_type'], percep['perceptual_weight'], percep['style_weight'], percep['criterion']) == \
        ('vgg19', 1.0, 50, 'l1')
    assert (train['gan_opt']['gan_type'], train['gan_opt']['loss_weight']) == ('wgan_softplus', 0.1)
    assert (train['r1_reg_weight'], train['net_d_reg_every']) == (10, 16)
    assert (train['comp_style_weight'], train['identity_weight']) == (200, 10)
    assert {train[k]['lr'] for k in ('optim_g', 'optim_d', 'optim_component')} == {2e-3}
    assert train['scheduler'] == {'type': 'MultiStepLR', 'milestones': [150_000, 175_000], 'gamma': 0.5}
    data = opt['datasets']['train']
    assert data['crop_components'] and data['eye_enlarge_ratio'] == 1.4 and data['batch_size_per_gpu'] == 3


def test_glean_rows_are_mmagics_glean_ffhq_recipe():
    opt = table1.cell_options('glean_gfpdeg')
    train = opt['train']
    assert opt['model_type'] == 'FaceRestorationModel' and opt['network_g']['type'] == 'GLEANStyleGAN2'
    assert (train['pixel_opt']['type'], train['pixel_opt']['loss_weight']) == ('MSELoss', 1.0)
    assert train['perceptual_opt']['layer_weights'] == {'conv4_3': 1.0} and train['perceptual_opt']['vgg_type'] == \
        'vgg16'
    assert (train['perceptual_opt']['loss_weight'], train['perceptual_opt']['input_range']) == (0.01, [0, 1])
    assert (train['gan_opt']['gan_type'], train['gan_opt']['loss_weight']) == ('vanilla', 0.01)
    assert train['optim_g'] == train['optim_d'] == {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]}
    assert train['scheduler']['periods'] == [400_000] and train['ema_decay'] == 0


def test_st_rows_are_the_papers_recipe_in_200k_iterations():
    train = table1.cell_options('st_dl')['train']
    assert train['optim_g'] == {'type': 'Adam', 'lr': 5e-5, 'decoder_lr': 5e-6, 'betas': [0.5, 0.99]}
    assert (train['pixel_opt']['loss_weight'], train['perceptual_opt']['loss_weight'],
            train['gan_opt']['loss_weight']) == (1.0, 0.02, 0.02)
    assert train['scheduler']['periods'] == [50_000] * 4


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match='cells are: gfpgan_gfpdeg'):
        table1.cell_options('stylegan_dl')
    with pytest.raises(ValueError, match='unknown Table 1 cell'):  # GFPGANModel does not stream pairs
        table1.cell_options('gfpgan_dl_stream')


def test_status_names_each_rows_recipe(tmp_path):
    code, out, _ = call_main(table1_cli.main, ['options', '-o', tmp_path])
    assert code == 0
    code, out, _ = call_main(table1_cli.main, ['status', '--options-dir', tmp_path])
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("GFP-GAN (GFPGANv1Clean): GFP-GAN's options/train_gfpgan_v1.yml")
    assert lines[3].startswith("GLEAN (GLEANStyleGAN2): MMagic's configs/glean/glean_x16_2xb8_ffhq.py")
    assert lines[6].startswith("ST (SkipTransformer): the paper's") and lines[7].split() == ['st_gfpdeg', 'not',
                                                                                             'finished']
    assert all(line.endswith('200000 iterations') for line in lines[::3])


def test_train_runs_one_process_or_torchrun(tmp_path):
    call_main(table1_cli.main, ['options', '-o', tmp_path])
    code, out, _ = call_main(table1_cli.main, ['train', 'st_dl', '--options-dir', tmp_path, '--dry-run'])
    assert code == 0 and out.split()[1:] == ['-m', 'dlst_plugin.train', '-opt', str(tmp_path / 'st_dl.yml')]
    code, out, _ = call_main(table1_cli.main, ['train', 'gfpgan_dl', '--options-dir', tmp_path, '--nproc', '4',
                                               '--auto-resume', '--dry-run'])
    assert code == 0 and out.split()[1:5] == ['-m', 'torch.distributed.run', '--nproc_per_node=4', '-m']
    assert out.split()[-3:] == ['--launcher', 'pytorch', '--auto_resume']


def test_table_layout_has_archs_as_rows_and_training_data_as_columns(tmp_path):
    methods = [{'name': cell, 'metrics': {'fid': {'value': float(i)}}} for i, cell in enumerate(table1.cells())]
    (tmp_path / 'metrics.json').write_text(json.dumps({'methods': methods[:-1]}))
    lines = table_markdown(tmp_path / 'metrics.json').splitlines()
    assert lines[0] == "| arch | GFP-GAN's degradation (FID) | DL (second-order) (FID) |"
    assert lines[2] == '| GFP-GAN (GFPGANv1Clean) | 0.00 | 1.00 |'
    assert lines[4] == '| ST (SkipTransformer) | 4.00 | - |'  # the unfinished cell


@pytest.fixture
def tiny_grid(tmp_path):
    """HQ faces (with a GFP-GAN landmark file), (clean, degraded) pairs, test faces, a random ArcFace file and
    the six tiny cells' option files (two iterations each)."""
    faces = tmp_path / 'faces'
    face_crops(faces, size=32, count=8, seed=0)
    for sub in ('clean', 'degraded'):
        (tmp_path / 'pairs' / sub).mkdir(parents=True)
    for i, path in enumerate(face_crops(tmp_path / 'gen', size=32, count=6, seed=4)):
        img = cv2.imread(str(path))
        cv2.imwrite(str(tmp_path / 'pairs' / 'clean' / f'{i:04d}.png'), img)
        cv2.imwrite(str(tmp_path / 'pairs' / 'degraded' / f'{i:04d}.png'), cv2.GaussianBlur(img, (0, 0), 1.5))
    face_crops(tmp_path / 'testset', size=32, count=4, seed=3)
    arcface = tiny_arcface_file(tmp_path / 'arcface.pth')
    components = component_file(tmp_path / 'landmarks.pth', 8, 32)
    options = tmp_path / 'options'
    options.mkdir()
    for cell in table1.cells():
        opt = tiny_table1_cell(cell, faces, tmp_path / 'pairs', iters=2, tmp_root=tmp_path, arcface=arcface,
                               components=components)
        (options / f'{cell}.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    return options


# One cell of each row, both training sets among them: a row's two cells differ only in their data (checked
# above, on the option files), so its second cell would run the same recipe again; each data set is read by
# the same dataset type in every row. The command each cell is trained with:
TRAINED = {'gfpgan_dl': 'dlst-table1', 'glean_gfpdeg': 'dlst-train', 'st_dl': 'dlst-train'}


@pytest.mark.slow
def test_tiny_grid_trains_a_cell_of_each_row_with_its_recipe_and_evaluates_into_table1(tmp_path, tiny_grid,
                                                                                         monkeypatch):
    """gfpgan_dl (GFPGANModel with its component discriminators, identity network, R1 and pyramid loss, on DL
    pairs) through ``dlst-table1 train``; glean_gfpdeg and st_dl through ``dlst-train``; ``dlst-table1 status``
    says which cells finished; ``dlst-table1 evaluate`` restores the test faces with each finished cell and
    fills their places in the table, a '-' in the others'."""
    dlst_train = shutil.which('dlst-train')
    assert dlst_train, 'dlst-train is not on PATH: install the package (scripts/install.sh)'
    monkeypatch.chdir(tmp_path)  # dlst-table1 train runs the training in a child process, from here
    for key in ('PYTHONPATH', 'OMP_NUM_THREADS'):
        monkeypatch.setenv(key, subprocess_env()[key])
    for cell, command in TRAINED.items():
        if command == 'dlst-table1':
            code, out, _ = call_main(table1_cli.main, ['train', cell, '--options-dir', tiny_grid])
            assert code == 0 and out.split()[1:3] == ['-m', 'dlst_plugin.train'], out
        else:
            run([dlst_train, '-opt', tiny_grid / f'{cell}.yml'], cwd=tmp_path)
    log = next((tmp_path / 'experiments' / 'table1_gfpgan_dl').glob('train_*.log')).read_text()
    assert all(term in log for term in ('l_p_8', 'l_g_style', 'l_g_comp_style_loss', 'l_identity', 'l_d_r1',
                                        'l_d_left_eye')), log[-3000:]  # GFP-GAN's own losses ran
    code, out, _ = call_main(table1_cli.main, ['status', '--options-dir', tiny_grid])
    finished = {line.split()[0] for line in out.splitlines() if 'finished: ' in line}
    assert code == 0 and finished == set(TRAINED) and out.count('not finished') == 3, out
    proc = run(['python', '-m', 'dlst_plugin.cli.table1', 'evaluate', '--options-dir', tiny_grid, '--testset',
                tmp_path / 'testset', '--reference', tmp_path / 'faces', '--out', tmp_path / 'eval', '--device', 'cpu',
                '--evaluate-args', '--metrics fid --inception-random-init 0 --fid-dims 64'], cwd=tmp_path)
    table = (tmp_path / 'eval' / 'table1.md').read_text().splitlines()
    assert len(table) == 2 + len(table1.ARCHS), proc.stdout
    for arch, line in zip(table1.ARCHS, table[2:]):
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert cells[0] == table1.ARCH_TITLES[arch] and len(cells) == 1 + len(table1.DATA), line
        for data, value in zip(table1.DATA, cells[1:]):
            assert (re.fullmatch(r'\d+\.\d\d', value) is not None) == (f'{arch}_{data}' in TRAINED), line
    for cell in table1.cells():
        restored = list((tmp_path / 'eval' / 'restored' / cell / 'restored_faces').glob('*.png'))
        assert len(restored) == (4 if cell in TRAINED else 0), cell
