"""Losses, registered in BasicSR's LOSS_REGISTRY when their ``*_loss.py`` module is imported."""
from dlst_plugin._package import import_by_suffix

import_by_suffix(__name__, __path__, '_loss')
