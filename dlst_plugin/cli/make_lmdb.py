"""dlst-make-lmdb: a folder of images -> an LMDB in BasicSR's layout (data.mdb + meta_info.txt).

Images are read, optionally resized and PNG-encoded in worker processes; the main process
writes. Rerunning on an existing destination resumes it: keys already stored are skipped, none is
stored twice. Unreadable sources are skipped, listed in a report file, and make the exit code 1;
when no image at all could be stored, no LMDB is left behind.
"""
import argparse
import os
import sys

from dlst_plugin.cli.common import add_positional_alias, make_parser, run_command, settings_from_args
from dlst_plugin.errors import EXIT_INPUT
from dlst_plugin.fileio.folder_lmdb import INTERPOLATIONS, LmdbSettings, make_lmdb

EXAMPLE = 'example:\n  dlst-make-lmdb -i ffhq/images1024x1024 -o datasets/ffhq/ffhq_512.lmdb --resize 512 --keys stem'


def parse_size(text):
    """'512' -> (512, 512); '640x480' -> (640, 480) as (width, height)."""
    try:
        parts = [int(p) for p in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f'--resize expects N or WxH with positive integers, got {text!r}')
    return (parts[0], parts[-1])


def build_parser():
    p = make_parser('dlst-make-lmdb', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('-i', '--input', metavar='SRC', help='folder of images (searched recursively)')
    p.add_argument('-o', '--output', metavar='DST', help="LMDB folder to create or resume; must end with '.lmdb'")
    add_positional_alias(p, 'input', 'SRC', '-i/--input')
    add_positional_alias(p, 'output', 'DST', '-o/--output')
    p.add_argument('--glob', default=None, help="only images whose path relative to SRC matches this fnmatch "
                                                "pattern, e.g. '*.png' or 'train/*'")
    p.add_argument('--keys', choices=['relpath', 'stem'], default='relpath',
                   help="key of an image: its path relative to SRC without extension ('a/b/001'), or the file "
                        "name alone ('001', BasicSR's own convention; names must then be unique)")
    p.add_argument('--sanitize-keys', action='store_true',
                   help="replace characters keys cannot hold (dots, spaces, non-ASCII) by '_' instead of stopping")
    p.add_argument('--resize', type=parse_size, default=None, metavar='N|WxH',
                   help='resize every image to this size, e.g. 512 to turn FFHQ 1024 into FFHQ 512')
    p.add_argument('--interpolation', choices=sorted(INTERPOLATIONS), default='area',
                   help='resampling for --resize (area is the anti-aliased choice for shrinking)')
    p.add_argument('--png-level', type=int, choices=range(10), default=1, metavar='0-9',
                   help='PNG compression level (BasicSR uses 1; higher = smaller and slower)')
    p.add_argument('--copy-png', action='store_true',
                   help='store PNG sources byte for byte (decoded only to check them) instead of re-encoding: '
                        'several times faster, same pixels; meta_info.txt gives their level as -1. '
                        'Ignored with --resize; other formats are still encoded (level 1)')
    p.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                   help='processes that read and encode images (1 = all in this process)')
    p.add_argument('--commit-every', type=int, default=500, help='images per LMDB transaction')
    p.add_argument('--report', default=None,
                   help='CSV listing the sources that were skipped and why (default: DST/skipped.csv)')
    p.add_argument('--overwrite', action='store_true', help='delete an existing DST LMDB and start again')
    p.add_argument('--no-resume', action='store_true', help='stop if DST exists instead of resuming it')
    p.add_argument('--verify', action='store_true',
                   help='afterwards, decode every entry and check it against meta_info.txt')
    return p


def run(args):
    result = make_lmdb(args.input, args.output, settings_from_args(LmdbSettings, args))
    return EXIT_INPUT if result.skipped or result.problems else 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='the images written so far are committed; rerun '
                       'the same command to resume')


if __name__ == '__main__':
    sys.exit(main())
