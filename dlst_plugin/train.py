"""``python -m dlst_plugin.train -opt X.yml`` (also ``dlst-train``): BasicSR's training
pipeline with the plugin registered and its compatibility patches applied.

Experiments go to ``./experiments/<name>`` (or ``path.experiments_root``), tensorboard
logs to ``./tb_logger/<name>``. Launch several processes with
``torchrun --nproc_per_node=N -m dlst_plugin.train -opt X.yml --launcher pytorch``.
"""
import os
import sys

import dlst_plugin  # noqa: F401  (registers the plugin, applies compat)


def main(argv=None):
    from basicsr import train
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    _check_option_file()
    train.train_pipeline(os.getcwd())


def _check_option_file():
    """Fail with one line when ``-opt`` names no readable file (BasicSR gives a traceback)."""
    args = sys.argv[1:]
    if '-opt' in args:
        idx = args.index('-opt')
        path = args[idx + 1] if idx + 1 < len(args) else None
        if path is not None and not os.path.isfile(path):
            sys.exit(f'error: option file not found: {path}')


if __name__ == '__main__':
    main()
