"""``python -m dlst_plugin.test -opt X.yml`` (also ``dlst-test``): BasicSR's test pipeline
with the plugin registered; results go to ``./results/<name>``."""
import os
import sys

import dlst_plugin  # noqa: F401  (registers the plugin, applies compat)
from dlst_plugin.train import _check_option_file


def main(argv=None):
    from basicsr import test
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    _check_option_file()
    test.test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
