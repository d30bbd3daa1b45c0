"""dlst-plugin: DL-ST (degradation learning + Skip-Transformer) for the BasicSR toolbox.

Importing the package applies the BasicSR compatibility patches and registers the
plugin's archs, datasets, losses and models in BasicSR's registries. It imports no
optional dependency (facexlib, pyiqa, gfpgan, onnxruntime).
"""
from dlst_plugin import compat

compat.apply()

from dlst_plugin import archs, data, losses, models  # noqa: E402,F401  (fill the registries)

__version__ = '0.1.0'
