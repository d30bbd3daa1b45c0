"""Datasets, registered in BasicSR's DATASET_REGISTRY when their ``*_dataset.py`` module is imported."""
from dlst_plugin._package import import_by_suffix

import_by_suffix(__name__, __path__, '_dataset')
