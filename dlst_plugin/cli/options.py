"""dlst-options: copy out the option files that ship with dlst-plugin: the paper's training and test
settings (train_dl, train_dlst, train_dlst_stream, test_dlst), the ablations, the StyleGAN2 prior, the
Table 1 cells (table1/) and the MMagic configs (mmagic/).

A checkout has them in options/; a pip install carries the same files inside the package. Each file is
written as shipped: set the lines marked "SET ME" (data and weights paths), then train with it.
"""
import sys

from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.errors import ConfigError
from dlst_plugin.fileio.shipped import copy_option_files, list_option_files, option_files, shipped_folder  # noqa: F401

EPILOG = """examples:
  dlst-options --list                        the shipped files, one line each
  dlst-options train_dlst -o my_dlst.yml     one file; set its SET ME paths, then: dlst-train -opt my_dlst.yml
  dlst-options table1/st_dl                  print one file
  dlst-options train_dl train_dlst -o cfg/   several files into a folder
  dlst-options --all -o options              every file in the checkout's layout: the README's commands
                                             (dlst-train -opt options/train_dlst.yml, dlst-table1) then work

NAME is a file's path under options/, with or without .yml/.py (train_dlst, table1/st_dl,
mmagic/dlst_st_x1_ffhq_512), or its file name alone when no other file has that name (st_dl).
An MMagic config is written with the _base_ files it names, beside it (where MMEngine looks).
Without --overwrite, an existing output file stops the command before anything is written."""


def build_parser():
    p = make_parser('dlst-options', __doc__, epilog=EPILOG)
    p.add_argument('names', nargs='*', metavar='NAME', help='option files to copy out (see --list)')
    p.add_argument('-o', '--output', default=None, metavar='PATH',
                   help='file to write (one NAME) or folder (several NAMEs, --all); one NAME without -o is '
                        'printed to stdout')
    p.add_argument('--list', action='store_true', help='list the shipped option files and what each is for')
    p.add_argument('--all', action='store_true', help='copy every shipped file into the -o folder, keeping '
                                                      'the sub-folders (table1/, mmagic/)')
    p.add_argument('--overwrite', action='store_true', help='replace files that exist')
    return p


def run(args):
    if sum(map(bool, (args.list, args.all, args.names))) != 1:
        raise ConfigError('give NAME (one or more), --all or --list: one of them (dlst-options --help)')
    if args.list and args.output is not None:
        option_files()  # a missing options/ folder is the error to report first
        raise ConfigError('--list writes no file: drop -o')
    if args.list:
        rows = list_option_files()
        width = max(len(name) for name, _ in rows)
        print('\n'.join(f'{name:<{width}}  {what}' for name, what in rows))
        return 0
    copy_option_files(args.names, args.output, args.all, args.overwrite)
    return 0


def main(argv=None):
    return run_command(build_parser(), run, argv)


if __name__ == '__main__':
    sys.exit(main())
