"""What any part of the package may import without importing the package itself (whose ``__init__`` applies
the BasicSR patches and fills the registries): the version, and the helper that imports registration modules.

BasicSR scans only its own folders for ``*_arch.py``, ``*_model.py``, ...: the plugin's sub-packages import
theirs with :func:`import_by_suffix` (docs/design.md#toolchain).
"""
import importlib
import pkgutil

# the version's one source: setup.py reads this line as text; dlst_plugin.__version__ and every --version print it
__version__ = '0.1.0'


def import_by_suffix(package, path, suffix):
    for mod in pkgutil.iter_modules(path):
        if mod.name.endswith(suffix):
            importlib.import_module(f'{package}.{mod.name}')
