"""How an arch fills one of its parts from a pretrained StyleGAN2 file its options name (``decoder_load_path``,
``bank_load_path``, ``pretrained``) without knowing checkpoint formats.

The archs are only architectures: reading a file (its layout, channel order, shape checks) is the job of
:mod:`dlst_plugin.loading.priors`, which installs itself here when the package is imported (``import
dlst_plugin``, which every use of the plugin runs first). An arch calls :func:`load_prior`; the dependency
points from the loading code to the archs, never back.
"""
_READER = []  # the installed reader: (module, path, kind, layout, strict, channel_order, option) -> detected layout


def install_reader(reader):
    """Set the function :func:`load_prior` calls (``dlst_plugin.loading.priors.load_into``)."""
    _READER[:] = [reader]


def load_prior(module, path, kind='generator', layout='auto', channel_order=None, option='channel_order', strict=True):
    """Load the StyleGAN2 checkpoint ``path`` (any layout the plugin reads) into ``module``; the detected layout."""
    if not _READER:
        raise RuntimeError('no checkpoint reader is installed: import dlst_plugin first (it installs '
                           'dlst_plugin.loading.priors)')
    return _READER[0](module, path, kind=kind, layout=layout, strict=strict, channel_order=channel_order,
                      option=option)
