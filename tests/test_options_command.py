"""dlst-options: the shipped option files reach a pip user. Run here from the checkout (options/); a wheel's
copy inside the package is read the same way (tests/test_release.py installs one)."""
import runpy

import pytest
from helpers import REPO

import dlst_plugin
from dlst_plugin.cli import options as command
from dlst_plugin.fileio import shipped as shipped_files

OPTIONS = REPO / 'options'
SHIPPED = sorted(p for p in OPTIONS.rglob('*') if p.suffix in ('.yml', '.py'))
MMAGIC_ST = 'mmagic/dlst_st_x1_ffhq_512'


def name_of(path):
    return path.relative_to(OPTIONS).with_suffix('').as_posix()


def dlst_options(capsys, *argv):
    """(exit code, stdout, stderr) of ``dlst-options ARGV`` run in this process."""
    try:
        code = command.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_shipped_file_with_what_it_is_for(capsys):
    code, out, _ = dlst_options(capsys, '--list')
    assert code == 0
    listed = dict(line.split(None, 1) for line in out.splitlines())
    assert sorted(listed) == sorted(map(name_of, SHIPPED))
    assert {'train_dl', 'train_dlst', 'train_dlst_stream', 'train_dlst_noattn', 'train_dlst_method1',
            'train_stylegan2_prior', 'test_dlst', 'table1/st_dl', MMAGIC_ST} <= set(listed)
    assert listed['table1/st_dl'].startswith('Table 1 of the paper, cell st_dl')


@pytest.mark.parametrize('name', ['train_dlst', 'train_dlst.yml', 'options/train_dlst.yml', 'st_dl', 'table1\\st_dl'])
def test_name_copies_the_shipped_file_unchanged(tmp_path, capsys, name):
    code, out, _ = dlst_options(capsys, name, '-o', tmp_path / 'my.yml')
    assert code == 0 and 'wrote' in out
    source = OPTIONS / ('table1/st_dl.yml' if 'st_dl' in name else 'train_dlst.yml')
    assert (tmp_path / 'my.yml').read_bytes() == source.read_bytes()


def test_one_name_without_output_is_printed(capsys):
    code, out, _ = dlst_options(capsys, 'train_dl')
    assert code == 0 and out == (OPTIONS / 'train_dl.yml').read_text(encoding='utf-8')


def test_into_a_folder_the_file_keeps_its_name(tmp_path, capsys):
    (tmp_path / 'cfg').mkdir()
    assert dlst_options(capsys, 'train_dl', 'test_dlst', '-o', tmp_path / 'several')[0] == 0
    assert dlst_options(capsys, 'table1/glean_dl', '-o', tmp_path / 'cfg')[0] == 0
    assert sorted(p.name for p in (tmp_path / 'several').iterdir()) == ['test_dlst.yml', 'train_dl.yml']
    assert (tmp_path / 'cfg' / 'glean_dl.yml').read_bytes() == (OPTIONS / 'table1' / 'glean_dl.yml').read_bytes()


def test_all_recreates_the_checkout_layout(tmp_path, capsys):
    code, out, err = dlst_options(capsys, '--all', '-o', tmp_path / 'options')
    assert code == 0 and len(out.splitlines()) == len(SHIPPED)
    assert 'SET ME' in err
    written = sorted(p.relative_to(tmp_path / 'options') for p in (tmp_path / 'options').rglob('*') if p.is_file())
    assert written == sorted(p.relative_to(OPTIONS) for p in SHIPPED)
    assert all((tmp_path / 'options' / p.relative_to(OPTIONS)).read_bytes() == p.read_bytes() for p in SHIPPED)


def test_mmagic_config_is_written_with_its_base_where_mmengine_reads_it(tmp_path, capsys):
    from mmengine import Config  # the mmengine extra (CI installs it)
    code, out, _ = dlst_options(capsys, MMAGIC_ST, '-o', tmp_path / 'my_st.py')
    assert code == 0
    assert (tmp_path / '_base_' / 'faces_512_srgan.py').read_bytes() == \
        (OPTIONS / 'mmagic' / '_base_' / 'faces_512_srgan.py').read_bytes()
    config = Config.fromfile(str(tmp_path / 'my_st.py'))
    assert config.model.generator.type == 'SkipTransformer'
    assert config.model_wrapper_cfg.type == 'MMSeparateDistributedDataParallel'  # set in the base only


def test_two_configs_into_a_folder_share_one_base(tmp_path, capsys):
    code, out, _ = dlst_options(capsys, MMAGIC_ST, 'mmagic/glean_in512out512_ffhq', '-o', tmp_path)
    assert code == 0 and len(out.splitlines()) == 3
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*.py')) == [
        '_base_/faces_512_srgan.py', 'dlst_st_x1_ffhq_512.py', 'glean_in512out512_ffhq.py']


def test_config_with_a_base_is_not_printed_alone(capsys):
    code, out, err = dlst_options(capsys, MMAGIC_ST)
    assert code == 2 and out == ''
    assert 'faces_512_srgan.py' in err and '-o' in err


def test_existing_file_is_kept_unless_overwrite(tmp_path, capsys):
    target = tmp_path / 'my.yml'
    target.write_text('mine\n')
    code, out, err = dlst_options(capsys, 'train_dlst', '-o', target)
    assert code == 2 and target.read_text() == 'mine\n'
    assert err.strip() == f'error: {target} already exists: pass --overwrite to replace, or choose another -o'
    assert dlst_options(capsys, 'train_dlst', '-o', target, '--overwrite')[0] == 0
    assert target.read_bytes() == (OPTIONS / 'train_dlst.yml').read_bytes()


def test_nothing_is_written_when_one_target_exists(tmp_path, capsys):
    (tmp_path / 'train_dl.yml').write_text('mine\n')
    code, _, err = dlst_options(capsys, 'test_dlst', 'train_dl', '-o', tmp_path)
    assert code == 2 and 'train_dl.yml already exists' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['train_dl.yml']


def test_unknown_name_is_exit_2_with_did_you_mean(capsys):
    code, out, err = dlst_options(capsys, 'train_dlts', '-o', 'never.yml')
    assert code == 2 and out == ''
    assert err.strip() == "error: no shipped option file is called 'train_dlts' (did you mean train_dlst, " \
        "train_dl or train_dlst_stream?): dlst-options --list shows them"


@pytest.mark.parametrize('argv, says', [
    ([], 'give NAME (one or more), --all or --list'),
    (['--list', 'train_dl'], 'give NAME (one or more), --all or --list'),
    (['--list', '-o', 'x'], '--list writes no file'),
    (['--all'], '--all needs -o FOLDER'),
    (['train_dl', 'test_dlst'], '2 files asked for: give -o FOLDER'),
    (['train_dl', '-o', 'x.py'], 'train_dl is a .yml file; give the output that suffix'),
])
def test_usage_errors_are_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    code, out, err = dlst_options(capsys, *argv)
    assert code == 2 and says in err and 'Traceback' not in err
    assert list(tmp_path.iterdir()) == []


def test_version_and_help(capsys):
    code, out, _ = dlst_options(capsys, '--version')
    assert code == 0 and out.strip() == f'dlst-plugin {dlst_plugin.__version__}'
    code, out, _ = dlst_options(capsys, '--help')
    assert code == 0
    for line in ('dlst-options --list', 'dlst-options --all -o options', '0    done',
                 '2    usage or configuration error'):
        assert line in out


def test_package_copy_is_read_first_and_a_missing_one_is_a_config_error(tmp_path, capsys, monkeypatch):
    packaged = tmp_path / 'site' / 'dlst_plugin'
    (packaged / 'assets' / 'options').mkdir(parents=True)
    (packaged / 'assets' / 'options' / 'only.yml').write_text('# the one file\nname: only\n')
    monkeypatch.setattr(shipped_files, 'PACKAGE_DIR', packaged)
    code, out, _ = dlst_options(capsys, '--list')
    assert code == 0 and out.split() == ['only', 'the', 'one', 'file']
    monkeypatch.setattr(shipped_files, 'PACKAGE_DIR', tmp_path / 'elsewhere' / 'dlst_plugin')
    code, _, err = dlst_options(capsys, '--list')
    assert code == 2 and 'options/ is not installed with dlst-plugin' in err


def test_setup_ships_the_folders_the_package_reads(monkeypatch):
    """setup.py copies each folder the package looks for into the wheel, at the place it looks."""
    import setuptools
    monkeypatch.setattr(setuptools, 'setup', lambda **kwargs: None)
    shipped = runpy.run_path(str(REPO / 'setup.py'), run_name='setup_under_test')['SHIPPED_FOLDERS']
    assert shipped == {source: f'dlst_plugin/{inside}' for inside, source in shipped_files.SHIPPED.items()}
    assert all((REPO / source).is_dir() for source in shipped)
