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
import json
import shlex
import subprocess
import sys
from pathlib import Path

from dlst_plugin.cli.common import EXIT_CODES, HelpFormatter, make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT, InputError, MissingFileError
from dlst_plugin.experiments import table1
from dlst_plugin.fileio.atomic import atomic_write_text

DEFAULT_DIR = Path('options') / 'table1'


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
    evaluate.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'), help='where the restorers run')
    evaluate.add_argument('--evaluate-args', default='', metavar='"ARGS"',
                          help='more dlst-evaluate arguments, quoted (e.g. "--inception-weights F --metrics fid")')
    for sp in (status, train, evaluate):
        sp.add_argument('--options-dir', default=str(DEFAULT_DIR), help='where the cell option files are')
    evaluate.add_argument('--reference', help='HQ faces FID compares against (or --reference-stats)')
    evaluate.add_argument('--reference-stats', help='FID statistics file instead of --reference')
    return p


def option_file(options_dir, cell):
    path = Path(options_dir) / f'{cell}.yml'
    if not path.is_file():
        raise MissingFileError(f'{path} not found: write the option files with `dlst-table1 options -o '
                               f'{options_dir}`')
    return path


def experiment_dir(opt_path):
    """Where BasicSR puts the cell's run: ``path.experiments_root`` or ``./experiments/<name>``."""
    from dlst_plugin.options.file import read_option_file
    opt = read_option_file(opt_path)
    root = (opt.get('path') or {}).get('experiments_root')
    return Path(root).expanduser() if root else Path('experiments') / opt['name']


def finished_model(options_dir, cell):
    """The cell's final checkpoint, or None while it has not finished."""
    exp = experiment_dir(option_file(options_dir, cell))
    path = exp / 'models' / 'net_g_latest.pth'
    return path if path.is_file() else None


def train_command(args):
    opt = str(option_file(args.options_dir, args.cell))
    if args.nproc > 1:
        port = [f'--master_port={args.master_port}'] if args.master_port else []
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={args.nproc}', *port, '-m',
               'dlst_plugin.train', '-opt', opt, '--launcher', 'pytorch']
    else:
        cmd = [sys.executable, '-m', 'dlst_plugin.train', '-opt', opt]
    return cmd + (['--auto_resume'] if args.auto_resume else [])


def restore_cell(options_dir, cell, model, testset, out_dir, device):
    """Restore every face of ``testset`` (aligned) with the cell's EMA weights (its final checkpoint
    ``model``); the faces at the restorer's size go to ``out_dir/restored_faces``."""
    from dlst_plugin.cli import restore
    return restore.main(['-i', str(testset), '-o', str(out_dir), '--model', str(model), '--opt',
                         str(option_file(options_dir, cell)), '--aligned', '--device', device])


def table_markdown(metrics_path, metric='fid'):
    """Table 1's layout (rows: archs; columns: training data) from dlst-evaluate's metrics.json."""
    payload = json.loads(Path(metrics_path).read_text(encoding='utf-8'))
    values = {m['name']: m['metrics'] for m in payload['methods']}
    keys = [k for k in ('fid', 'niqe') if any(k in v for v in values.values())] or [metric]
    lines = [f'| arch | {" | ".join(f"{table1.DATA_TITLES[d]} ({k.upper()})" for k in keys for d in table1.DATA)} |',
             '|---|' + '---|' * (len(keys) * len(table1.DATA))]
    for arch in table1.ARCHS:
        cells = []
        for key in keys:
            for data in table1.DATA:
                entry = values.get(f'{arch}_{data}', {}).get(key)
                cells.append('-' if not entry or entry.get('value') is None else f'{entry["value"]:.2f}')
        lines.append(f'| {table1.ARCH_TITLES[arch]} | {" | ".join(cells)} |')
    return '\n'.join(lines) + '\n'


def run_evaluate(args):
    from dlst_plugin.cli import evaluate
    out = Path(args.output)
    models = {cell: finished_model(args.options_dir, cell) for cell in table1.cells()}
    done = [cell for cell, model in models.items() if model]
    if not done:
        raise InputError(f'no cell has finished training (looked for net_g_latest.pth under {args.options_dir}\'s '
                         'experiments); see `dlst-table1 status`')
    failed = [cell for cell in done if restore_cell(args.options_dir, cell, models[cell], args.input,
                                                    out / 'restored' / cell, args.device) != 0]
    scored = [cell for cell in done if cell not in failed]
    argv = [f'--restored={cell}={out / "restored" / cell / "restored_faces"}' for cell in scored]
    argv += ['-o', str(out / 'evaluation')] + shlex.split(args.evaluate_args)
    argv += ['--reference', args.reference] if args.reference else []
    argv += ['--reference-stats', args.reference_stats] if args.reference_stats else []
    code = evaluate.main(argv)
    if code != 0:
        return code
    table = table_markdown(out / 'evaluation' / 'metrics.json')
    atomic_write_text(out / 'table1.md', table)
    print(table + f'wrote {out / "table1.md"}')
    return EXIT_INPUT if failed else 0


def print_status(options_dir):
    """Each row's recipe, then its cells and whether they finished."""
    for arch in table1.ARCHS:
        print(f'{table1.ARCH_TITLES[arch]}: {table1.recipe_of(f"{arch}_{table1.DATA[0]}")}')
        for data in table1.DATA:
            cell = f'{arch}_{data}'
            model = finished_model(options_dir, cell)
            print(f'  {cell:14s} {"finished: " + str(model) if model else "not finished"}')


def run(args):
    if args.command == 'options':
        out = Path(args.output)
        files = table1.cells() + table1.stream_files()
        for cell in files:
            atomic_write_text(out / f'{cell}.yml', table1.cell_yaml(cell))
        print(f'wrote {len(files)} option files to {out}')
        return 0
    if args.command == 'status':
        print_status(args.options_dir)
        return 0
    if args.command == 'train':
        cmd = train_command(args)
        print(' '.join(shlex.quote(c) for c in cmd), flush=True)
        return 0 if args.dry_run else (0 if subprocess.run(cmd).returncode == 0 else EXIT_INPUT)
    return run_evaluate(args)


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='cells finished so far are kept; `dlst-table1 status` '
                       'lists them (train: rerun with --auto-resume)')


if __name__ == '__main__':
    sys.exit(main())
