"""Console commands, one module each (``dlst-<name>`` runs ``dlst_plugin.cli.<name>:main``)."""
