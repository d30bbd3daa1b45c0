"""Adapters that expose the plugin to other toolkits (e.g. ``mmengine`` for OpenMMLab / MMagic).

Each adapter is a submodule that pulls in its toolkit, so it is imported only when asked for
(``import dlst_plugin.integrations.mmengine``); this package itself imports nothing.
"""
