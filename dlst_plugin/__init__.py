"""dlst-plugin: DL-ST (degradation learning + Skip-Transformer) for the BasicSR toolbox.

Importing the package applies the BasicSR compatibility patches and registers the
plugin's archs, datasets, losses and models in BasicSR's registries. It imports no
optional dependency (facexlib, pyiqa, gfpgan, onnxruntime, spandrel). ``DLSTer`` (GFP-GAN's GFPGANer
interface, :mod:`dlst_plugin.inference.dlster`) is imported on first use: ``from dlst_plugin import DLSTer``.
"""
from dlst_plugin import compat
from dlst_plugin._package import __version__  # noqa: F401  (its one source is dlst_plugin/_package.py)

compat.apply()

from dlst_plugin import archs, data, losses, models  # noqa: E402,F401  (fill the registries)
from dlst_plugin.loading import priors  # noqa: E402,F401  (installs the archs' reader of prior files)


def __getattr__(name):
    """Lazy attributes: ``DLSTer`` (importing it pulls in the face detection and restoration code)."""
    if name == 'DLSTer':
        from dlst_plugin.inference.dlster import DLSTer
        return DLSTer
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
