"""``python -m dlst_plugin.test -opt X.yml`` (also ``dlst-test``): BasicSR's test pipeline
with the plugin registered; results go to ``./results/<name>``. The option file is checked
before anything runs, as for :mod:`dlst_plugin.train`."""
import sys

import dlst_plugin  # noqa: F401  (registers the plugin, applies compat)
from dlst_plugin.train import run_pipeline


def main(argv=None):
    return run_pipeline('test', argv)


if __name__ == '__main__':
    sys.exit(main())
