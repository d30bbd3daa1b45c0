"""``dlst-demo``'s pipeline: the whole DL-ST pipeline on the shipped sample photos, on a CPU, in minutes.

The stages (``pipeline``) call the plugin's library as a user's script would: face harvesting, LMDB making,
pair generation, restoring, evaluation; the three trainings run ``python -m dlst_plugin.train`` in a subprocess.
``layout``: the output folder's layout and the stage list; ``data``: the photo variants, the filled option files,
the face regions scored; ``prior``: the quick StyleGAN2 prior fit and its samples; ``report`` and ``plots``:
the HTML report. ``dlst_plugin.cli.demo`` is the command.
"""
