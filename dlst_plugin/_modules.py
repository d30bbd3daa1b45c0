"""Import every ``*<suffix>.py`` module of a sub-package, so their registrations run.

BasicSR scans only its own folders (docs/design.md#toolchain); the plugin scans its own here.
"""
import importlib
import pkgutil


def import_by_suffix(package, path, suffix):
    for mod in pkgutil.iter_modules(path):
        if mod.name.endswith(suffix):
            importlib.import_module(f'{package}.{mod.name}')
