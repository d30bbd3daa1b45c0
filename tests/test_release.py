"""The release artefacts, made as a release tool makes them: ``python -m build`` writes the sdist, then a
wheel built from that sdist. Both carry what a pip user gets; each installs beside BasicSR in a fresh
virtual environment, works there, and uninstalls without leaving the start-up hook behind.

The virtual environment has no packages of its own: a .pth file points it at a folder of links to this
environment's site-packages (torch, BasicSR 1.4.2 and the other dependencies, pip and setuptools), minus
every dlst-plugin file. pip runs from there but installs into the virtual environment, offline
(--no-index): the dependencies of the artefacts are checked against what is installed, nothing is
downloaded or rebuilt (BasicSR is the one this environment already has, installed as the README says).
"""
import json
import os
import runpy
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REPO, face_crops, fill_option_paths

import dlst_plugin

pytestmark = pytest.mark.slow
VERSION = dlst_plugin.__version__
DIST_INFO = f'dlst_plugin-{VERSION}.dist-info'
HOOK = 'dlst_plugin_startup.pth'

# run in the virtual environment: the start-up hook, the registries, DLSTer and the shipped files
PROBE = """
import json, sys
import basicsr  # the start-up hook imports dlst_plugin once basicsr is imported
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY
hooked = 'dlst_plugin' in sys.modules
import dlst_plugin
from dlst_plugin import DLSTer
from dlst_plugin.cli.options import option_files, shipped_folder
root, files = option_files()
print(json.dumps({
    'hooked': hooked, 'file': dlst_plugin.__file__, 'version': dlst_plugin.__version__, 'dlster': DLSTer.__name__,
    'types': {name: name in registry for registry, name in [
        (ARCH_REGISTRY, 'SkipTransformer'), (MODEL_REGISTRY, 'SkipTransformerModel'),
        (DATASET_REGISTRY, 'DegradedFaceDataset')]},
    'options': {name: path.read_text(encoding='utf-8') for name, path in files.items()},
    'options_root': str(root), 'samples': sorted(p.name for p in shipped_folder('assets/samples/faces').iterdir()),
}))
"""


def clean_env(**extra):
    """This environment without anything that points a child at the checkout or configures pip."""
    drop = ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'VIRTUAL_ENV')
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith('PIP_')}
    env.update(OMP_NUM_THREADS='1', PIP_DISABLE_PIP_VERSION_CHECK='1', PIP_NO_INPUT='1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_ok(args, cwd, env, timeout=600):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


def checkout_files():
    """The checkout's files as a clean clone of it would have them: tracked, or new and not ignored."""
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sorted(f for f in out.split('\0') if f and (REPO / f).is_file())


def visible(files):
    return {f for f in files if not any(part.startswith('.') for part in f.split('/'))}


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """sdist and wheel of a copy of the checkout, built by ``python -m build`` (the wheel from the sdist)."""
    base = tmp_path_factory.mktemp('release')
    files = checkout_files()
    for f in files:
        (base / 'src' / f).parent.mkdir(parents=True, exist_ok=True)
        (base / 'src' / f).write_bytes((REPO / f).read_bytes())
    # --no-isolation: the build requirements are this environment's (no download); build checks them
    run_ok([sys.executable, '-m', 'build', '--no-isolation', '--outdir', base / 'dist', base / 'src'], base,
           clean_env())
    (sdist,), (wheel,) = sorted((base / 'dist').glob('*.tar.gz')), sorted((base / 'dist').glob('*.whl'))
    return SimpleNamespace(sdist=sdist, wheel=wheel, files=files, src=base / 'src')


def setup_globals(monkeypatch):
    """The module globals of setup.py (setup() itself replaced: nothing is built)."""
    import setuptools
    monkeypatch.setattr(setuptools, 'setup', lambda **kwargs: None)
    return runpy.run_path(str(REPO / 'setup.py'), run_name='setup_under_test')


def test_sdist_is_the_repository_and_the_wheel_the_package_with_its_shipped_files(release, monkeypatch):
    files = visible(release.files)
    with tarfile.open(release.sdist) as tar:
        top = f'dlst_plugin-{VERSION}/'
        sdist = {m.name.removeprefix(top) for m in tar.getmembers() if m.isfile()}
    generated = {'PKG-INFO', 'setup.cfg'} | {f for f in sdist if f.startswith('dlst_plugin.egg-info/')}
    missing, extra = sorted(files - sdist), sorted(sdist - generated - files)
    assert not missing and not extra, f'the sdist is the repository less .ci/ and .gitignore (MANIFEST.in): ' \
        f'missing {missing[:10]}, not in the repository {extra[:10]}'

    setup = setup_globals(monkeypatch)
    shipped = setup['SHIPPED_FOLDERS']
    expected = {f for f in files if f.startswith('dlst_plugin/')} | {HOOK, 'dlst_plugin_startup.py'}
    for src, dest in shipped.items():
        expected |= {dest + f.removeprefix(src) for f in files if f.startswith(src + '/')}
    expected |= {f'{DIST_INFO}/{name}' for name in ('METADATA', 'WHEEL', 'RECORD', 'entry_points.txt',
                                                   'top_level.txt', 'licenses/LICENSE', 'licenses/NOTICE')}
    with zipfile.ZipFile(release.wheel) as whl:
        assert set(whl.namelist()) == expected
        assert whl.read(HOOK) == (release.src / HOOK).read_bytes()
        assert whl.read(f'{DIST_INFO}/licenses/LICENSE') == (release.src / 'LICENSE').read_bytes()
        metadata = whl.read(f'{DIST_INFO}/METADATA').decode()
        entry_points = whl.read(f'{DIST_INFO}/entry_points.txt').decode()
    assert any(f.startswith('options/table1/') for f in files) and any(f.startswith('options/mmagic/') for f in files)
    for line in (f'Version: {VERSION}', 'License-Expression: Apache-2.0', 'License-File: LICENSE',
                 'License-File: NOTICE', 'Project-URL: Paper, https://doi.org/10.3389/frsip.2023.1106465',
                 'Classifier: Programming Language :: Python :: 3', 'Description-Content-Type: text/markdown'):
        assert line in metadata.splitlines()
    assert sorted(line for line in entry_points.splitlines() if ' = ' in line) == sorted(setup['_console_scripts']())
    assert 'dlst-options = dlst_plugin.cli.options:main' in entry_points.splitlines()
    assert 'Apache License' in (REPO / 'LICENSE').read_text() and 'Version 2.0' in (REPO / 'LICENSE').read_text()
    run_ok([sys.executable, '-m', 'twine', 'check', '--strict', release.sdist, release.wheel], REPO, clean_env())


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
    """A virtual environment whose only packages are this environment's, less dlst-plugin (module doc)."""
    base = tmp_path_factory.mktemp('venv')
    env_dir, shared = base / 'env', base / 'shared'
    run_ok([sys.executable, '-m', 'venv', '--without-pip', env_dir], base, clean_env())
    shared.mkdir()
    folders = [p for p in sys.path if p in site.getsitepackages() + [site.getusersitepackages()] and os.path.isdir(p)]
    for folder in folders:
        for entry in os.scandir(folder):
            if entry.name.startswith(('dlst_plugin', '__editable__', '__pycache__')) or entry.name.endswith('.pth'):
                continue
            if not os.path.lexists(shared / entry.name):
                (shared / entry.name).symlink_to(entry.path)
    python = env_dir / 'bin' / 'python'
    paths = json.loads(run_ok([python, '-c', 'import json, sysconfig; print(json.dumps(sysconfig.get_paths()))'],
                              base, clean_env()).stdout)
    purelib, scripts = Path(paths['purelib']), Path(paths['scripts'])
    (purelib / 'shared_site_packages.pth').write_text(f'{shared}\n')
    env = clean_env(PATH=f'{scripts}{os.pathsep}{os.environ.get("PATH", "")}')
    return SimpleNamespace(python=python, purelib=purelib, scripts=scripts, env=env)


def venv_run(venv, args, cwd, timeout=600):
    return run_ok([venv.python if a == 'python' else a for a in args], cwd, venv.env, timeout)


def install(venv, artefact, cwd):
    """pip install as the README says, offline: every dependency must already be installed."""
    venv_run(venv, ['python', '-m', 'pip', 'install', '--no-index', '--no-build-isolation', '--no-cache-dir',
                    artefact], cwd)


def uninstall_leaves_nothing(venv, cwd):
    """pip uninstall dlst-plugin removes the package, its commands and the start-up hook: no .pth is left to
    run at every start-up (a stray one prints an error in every Python process of the environment)."""
    venv_run(venv, ['python', '-m', 'pip', 'uninstall', '-y', 'dlst-plugin'], cwd)
    left = [str(p) for p in venv.purelib.rglob('*') if p.name.startswith('dlst_plugin')]
    left += [str(p) for p in venv.purelib.glob('*.pth') if p.name != 'shared_site_packages.pth']
    left += [str(p) for p in venv.scripts.glob('dlst-*')]
    assert not left, f'left behind by pip uninstall: {left}'
    assert venv_run(venv, ['python', '-c', 'pass'], cwd).stderr == ''


def probe(venv, release, cwd):
    """The PROBE's findings in the virtual environment, checked: the installed package, found through the
    start-up hook, with the plugin's types in BasicSR's registries and every option file of the source."""
    found = json.loads(venv_run(venv, ['python', '-c', PROBE], cwd).stdout)
    assert found['hooked'], 'importing basicsr did not import dlst_plugin: the start-up hook is not installed'
    assert Path(found['file']).is_relative_to(venv.purelib)
    assert Path(found['options_root']).is_relative_to(venv.purelib)
    assert found['version'] == VERSION and found['dlster'] == 'DLSTer'
    assert all(found['types'].values()), found['types']
    source = release.src / 'options'
    assert found['options'] == {p.relative_to(source).with_suffix('').as_posix(): p.read_text(encoding='utf-8')
                                for p in source.rglob('*') if p.suffix in ('.yml', '.py')}
    assert {'astronaut.png', 'grace_hopper.jpg', 'camera.png', 'SOURCES.md'} <= set(found['samples'])


def test_wheel_installs_beside_basicsr_and_runs(release, venv, tmp_path):
    install(venv, release.wheel, tmp_path)
    try:
        probe(venv, release, tmp_path)
        # python -m basicsr.train: handed to the plugin's launcher, which finds the plugin's dataset type
        face_crops(tmp_path / 'faces', size=32, count=4)
        opt = fill_option_paths(REPO / 'tests' / 'options' / 'train_tiny_sr.yml', tmp_path / 'train.yml',
                                tmp_path / 'faces', {'train:total_iter': 2, 'logger:save_checkpoint_freq': 2})
        venv_run(venv, ['python', '-m', 'basicsr.train', '-opt', opt], tmp_path)
        assert (tmp_path / 'experiments' / 'tiny_sr' / 'models' / 'net_g_latest.pth').is_file()
        assert 'exit codes:' in venv_run(venv, ['dlst-restore', '--help'], tmp_path).stdout
        # every stage of the fast demo, with fewer steps (its figures are test_demo's job); no datasets/ here:
        # the demo takes the photos the wheel carries
        venv_run(venv, ['dlst-demo', '--fast', '--fit-steps', '10', '--prior-iters', '2', '--dl-iters', '2',
                        '--st-iters', '2', '--pairs', '4', '--out', tmp_path / 'demo'], tmp_path)
        assert (tmp_path / 'demo' / 'report.html').is_file()
    finally:
        uninstall_leaves_nothing(venv, tmp_path)


def test_sdist_builds_installs_beside_basicsr_and_uninstalls(release, venv, tmp_path):
    install(venv, release.sdist, tmp_path)
    try:
        probe(venv, release, tmp_path)
        venv_run(venv, ['dlst-options', 'train_dlst', '-o', tmp_path / 'my.yml'], tmp_path)
        assert (tmp_path / 'my.yml').read_bytes() == (release.src / 'options' / 'train_dlst.yml').read_bytes()
    finally:
        uninstall_leaves_nothing(venv, tmp_path)
