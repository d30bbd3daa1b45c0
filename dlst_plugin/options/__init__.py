"""Option files and their schema: reading them (``file``), whose run it is (``ownership``), the typed blocks the
plugin owns (``schema``, ``blocks``), BasicSR's key tables (``basicsr_keys``), the check (``check``,
``check_typed``) and the generated reference (``reference``, ``docs/options.md``).

Kept free of imports: ``dlst_plugin.data.degradations`` declares its block with ``options.schema`` while
``options.blocks`` reads it back, so importing this package must not import either.
"""
