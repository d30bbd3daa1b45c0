"""dlst-table1: the paper's Table 1 grid (3 restorer archs x 2 training sets): write, train, evaluate.

    dlst-table1 options [-o options/table1]             write the six option files (+ the streaming variants)
    dlst-table1 status                                  each row's recipe; which cells have finished training
    dlst-table1 train CELL [--nproc N] [--auto-resume]  train one cell (torchrun when N > 1)
    dlst-table1 evaluate -i DIR --reference DIR         restore the test faces (-i) with every finished
                                                        cell and score them into Table 1's layout

Cells: ``<arch>_<data>`` with arch in gfpgan, glean, st and data in gfpdeg (GFP-GAN's degradation of
FFHQ), dl (DL-ST's second-order set). Each row trains with its own paper's recipe for 200k
iterations (docs/table1.md). A cell whose training, restoring or scoring failed makes the exit code 1.
"""
import shlex
import sys

from dlst_plugin.cli import evaluate as evaluate_command
from dlst_plugin.cli.common import EXIT_CODES, HelpFormatter, add_device_argument, make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT
from dlst_plugin.experiments import table1
from dlst_plugin.experiments.table1_runs import (
    DEFAULT_DIR,
    evaluate_cells,
    print_status,
    train_cell,
    write_option_files,
)


def build_parser():
    p = make_parser('dlst-table1', __doc__.split('\n')[0], epilog=__doc__.split('\n', 2)[2].strip('\n'))
    sub = p.add_subparsers(dest='command', required=True)

    def command(name, text):
        return sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter, epilog=EXIT_CODES)
    opts = command('options', 'write the six option files (and the streaming variants of the DL cells)')
    opts.add_argument('-o', '--output', '--out', dest='output', default=str(DEFAULT_DIR),
                      help='folder for the option files (--out: old spelling)')
    status = command('status', 'list each row\'s recipe, its cells and whether their training finished')
    train = command('train', 'train one cell')
    train.add_argument('cell', choices=table1.cells() + table1.stream_files(),
                       help='a cell; glean_dl_stream and st_dl_stream train the DL cell with pairs streamed from '
                       'the degrader (GFP-GAN\'s model does not stream)')
    train.add_argument('--nproc', type=int, default=1, help='processes (GPUs) on this machine; > 1 uses torchrun')
    train.add_argument('--master-port', type=int, default=None, help='torchrun rendezvous port (two runs on one '
                       'machine need different ones)')
    train.add_argument('--auto-resume', action='store_true', help='continue from the newest saved state')
    train.add_argument('--dry-run', action='store_true', help='print the command, do not run it')
    evaluate = command('evaluate', 'restore the test faces with every finished cell; score them')
    evaluate.add_argument('-i', '--input', '--testset', dest='input', required=True,
                          help='folder of aligned LQ test faces (paper: <= 40 px faces; --testset: old spelling)')
    evaluate.add_argument('-o', '--output', '--out', dest='output', default='table1_eval',
                          help='output folder (--out: old spelling)')
    add_device_argument(evaluate, 'the restorers')
    evaluate.add_argument('--evaluate-args', default='', metavar='"ARGS"',
                          help='more dlst-evaluate arguments, quoted (e.g. "--inception-weights F --metrics fid")')
    for sp in (status, train, evaluate):
        sp.add_argument('--options-dir', default=str(DEFAULT_DIR), help='where the cell option files are')
    evaluate.add_argument('--reference', help='HQ faces FID compares against (or --reference-stats)')
    evaluate.add_argument('--reference-stats', help='FID statistics file instead of --reference')
    return p


def evaluation_settings(args):
    """dlst-evaluate's settings from ``--evaluate-args``, with this command's --reference / --reference-stats."""
    settings = evaluate_command.evaluation_settings(evaluate_command.build_parser().parse_args(
        shlex.split(args.evaluate_args)))
    settings.reference = args.reference or settings.reference
    settings.reference_stats = args.reference_stats or settings.reference_stats
    return settings


def run_evaluate(args):
    result = evaluate_cells(args.options_dir, args.input, args.output, args.device, evaluation_settings(args))
    if result.unscored_images:
        print(f'{len(result.unscored_images)} image(s) could not be scored and were left out: '
              f'{", ".join(result.unscored_images[:5])}' + (' ...' if len(result.unscored_images) > 5 else ''),
              file=sys.stderr)
    return EXIT_INPUT if result.failed or result.unscored_images else 0


def run(args):
    if args.command == 'options':
        write_option_files(args.output)
        return 0
    if args.command == 'status':
        print_status(args.options_dir)
        return 0
    if args.command == 'train':
        return 0 if train_cell(args.options_dir, args.cell, args.nproc, args.master_port, args.auto_resume,
                               args.dry_run) else EXIT_INPUT
    return run_evaluate(args)


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='cells finished so far are kept; `dlst-table1 status` '
                       'lists them (train: rerun with --auto-resume)')


if __name__ == '__main__':
    sys.exit(main())
