"""Models, registered in BasicSR's MODEL_REGISTRY when their ``*_model.py`` module is imported."""
from dlst_plugin._package import import_by_suffix

import_by_suffix(__name__, __path__, '_model')
