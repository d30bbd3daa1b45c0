"""Networks, registered in BasicSR's ARCH_REGISTRY when their ``*_arch.py`` module is imported."""
from dlst_plugin._package import import_by_suffix

import_by_suffix(__name__, __path__, '_arch')
