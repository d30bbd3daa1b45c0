"""Make the plugin's networks buildable from mmengine configs (MMagic and other OpenMMLab tools).

Importing this module registers, in mmengine's root ``MODELS`` registry, the networks listed in
``NETWORKS`` under their class names. OpenMMLab codebases build models from child registries of
that root (MMagic's ``mmagic.registry.MODELS`` is one), and a child falls back to its parents for
names it does not hold, so an MMagic config that lists this module in ``custom_imports`` can say
``type='SkipTransformer'`` and so on. The classes are the plugin's own: they also stay registered
in BasicSR's ``ARCH_REGISTRY``.

Only mmengine and the plugin are imported here; MMagic is not needed. Registering is idempotent:
importing the module again, or calling ``register`` again, leaves the registry as it is.
"""
from mmengine.registry import MODELS

from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator

__all__ = ['NETWORKS', 'RegistryConflictError', 'register']

# the classes put in the registry, each under its class name
NETWORKS = (SkipTransformer, GLEANStyleGAN2, PureStyleGAN2Generator, PureStyleGAN2Discriminator)


class RegistryConflictError(RuntimeError):
    """A name the plugin registers is already held by another class in the target registry."""


def _qualified(obj):
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}'


def register(registry=MODELS):
    """Register every class of ``NETWORKS`` in ``registry`` (mmengine's root ``MODELS`` by default).

    A name already bound to the same class is skipped, so calling this again is harmless. A name
    bound to a different class raises ``RegistryConflictError`` naming both, before anything is
    registered (the registry is left as it was). Returns the names added by this call.
    """
    held = registry.module_dict
    conflicts = [(cls, held[cls.__name__]) for cls in NETWORKS
                 if cls.__name__ in held and held[cls.__name__] is not cls]
    if conflicts:
        lines = '; '.join(f"'{cls.__name__}' is held by {_qualified(other)}, not {_qualified(cls)}"
                          for cls, other in conflicts)
        raise RegistryConflictError(
            f"dlst-plugin cannot register its networks in mmengine's '{registry.name}' registry "
            f'(scope {registry.scope!r}): {lines}. Remove the other registration or build the plugin '
            'class by its full import path (type=\'dlst_plugin.archs.<module>.<Class>\').')
    added = []
    for cls in NETWORKS:
        if cls.__name__ not in held:
            registry.register_module(name=cls.__name__, module=cls, force=False)
            added.append(cls.__name__)
    return added


register()
