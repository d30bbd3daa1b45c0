"""Running the paper's Table 1 grid (:mod:`.table1` writes its cells): the option files on disk, each cell's
training and whether it finished, and the evaluation that restores the test faces with every finished cell
and scores them into Table 1's layout. The library behind ``dlst-table1``.

Trainings run as subprocesses (``python -m dlst_plugin.train``, or torchrun for several processes): BasicSR's
pipeline keeps global logger and distributed state, which a fresh process gives each run. Restoring and scoring
run in this process, through :func:`dlst_plugin.inference.restore_files.restore_files` and
:func:`dlst_plugin.metrics.evaluation.evaluate`.
"""
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dlst_plugin.errors import DLSTError, InputError, MissingFileError
from dlst_plugin.experiments import table1
from dlst_plugin.experiments.runs import experiment_dir, final_checkpoint
from dlst_plugin.fileio.atomic import atomic_write_text

DEFAULT_DIR = Path('options') / 'table1'


def option_file(options_dir, cell):
    """The cell's option file in ``options_dir``; MissingFileError saying how to write it."""
    path = Path(options_dir) / f'{cell}.yml'
    if not path.is_file():
        raise MissingFileError(f'{path} not found: write the option files with `dlst-table1 options -o '
                               f'{options_dir}`')
    return path


def finished_model(options_dir, cell):
    """The cell's final checkpoint, or None while it has not finished."""
    return final_checkpoint(experiment_dir(option_file(options_dir, cell)))


def write_option_files(output):
    """Write the six cells' option files and the DL cells' streaming variants into ``output``; their paths."""
    out = Path(output)
    paths = [out / f'{cell}.yml' for cell in table1.cells() + table1.stream_files()]
    for path in paths:
        atomic_write_text(path, table1.cell_yaml(path.stem))
    print(f'wrote {len(paths)} option files to {out}')
    return paths


def print_status(options_dir):
    """Each row's recipe, then its cells and whether they finished."""
    for arch in table1.ARCHS:
        print(f'{table1.ARCH_TITLES[arch]}: {table1.recipe_of(f"{arch}_{table1.DATA[0]}")}')
        for data in table1.DATA:
            cell = f'{arch}_{data}'
            model = finished_model(options_dir, cell)
            print(f'  {cell:14s} {"finished: " + str(model) if model else "not finished"}')


def train_command(options_dir, cell, nproc=1, master_port=None, auto_resume=False):
    """The command line that trains ``cell``: ``python -m dlst_plugin.train``, through torchrun when ``nproc`` > 1."""
    opt = str(option_file(options_dir, cell))
    if nproc > 1:
        port = [f'--master_port={master_port}'] if master_port else []
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', *port, '-m',
               'dlst_plugin.train', '-opt', opt, '--launcher', 'pytorch']
    else:
        cmd = [sys.executable, '-m', 'dlst_plugin.train', '-opt', opt]
    return cmd + (['--auto_resume'] if auto_resume else [])


def train_cell(options_dir, cell, nproc=1, master_port=None, auto_resume=False, dry_run=False):
    """Print :func:`train_command` and run it (not with ``dry_run``) in a subprocess; whether it succeeded."""
    cmd = train_command(options_dir, cell, nproc, master_port, auto_resume)
    print(' '.join(shlex.quote(c) for c in cmd), flush=True)
    return dry_run or subprocess.run(cmd).returncode == 0


def table_markdown(metrics_path, metric='fid'):
    """Table 1's layout (rows: archs; columns: training data) from an evaluation's metrics.json."""
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


@dataclass
class GridEvaluation:
    """What :func:`evaluate_cells` did: the cells restored and scored, those whose restoring failed (left out of
    the table), the images the evaluation could not score, and Table 1 in Markdown (None when images failed)."""
    scored: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    unscored_images: list = field(default_factory=list)
    table: str = None


def restore_cell(options_dir, cell, model, testset, out_dir, device):
    """Restore every (aligned) face of ``testset`` with the cell's final checkpoint ``model`` (its EMA weights)
    into ``out_dir``; whether every face was restored (an error is printed, not raised: the other cells go on)."""
    from dlst_plugin.inference.restore_files import RestoreSettings, restore_files
    settings = RestoreSettings(opt=str(option_file(options_dir, cell)), aligned=True, device=device)
    try:
        return not restore_files([testset], out_dir, model, settings).failed
    except (DLSTError, OSError) as err:
        print(f'error: {cell}: {err}', file=sys.stderr, flush=True)
        return False


def evaluate_cells(options_dir, testset, output, device='auto', evaluation=None):
    """Restore the test faces ``testset`` with every finished cell into ``output/restored/<cell>``, score them
    (:func:`~dlst_plugin.metrics.evaluation.evaluate` with ``evaluation``, its EvaluationSettings: FID needs a
    reference) into ``output/evaluation`` and write ``output/table1.md``; return a :class:`GridEvaluation`.
    InputError when no cell has finished."""
    from dlst_plugin.metrics.evaluation import evaluate
    out = Path(output)
    models = {cell: finished_model(options_dir, cell) for cell in table1.cells()}
    done = [cell for cell, model in models.items() if model]
    if not done:
        raise InputError(f'no cell has finished training (looked for net_g_latest.pth under {options_dir}\'s '
                         'experiments); see `dlst-table1 status`')
    result = GridEvaluation()
    for cell in done:
        ok = restore_cell(options_dir, cell, models[cell], testset, out / 'restored' / cell, device)
        (result.scored if ok else result.failed).append(cell)
    methods = [(cell, out / 'restored' / cell / 'restored_faces') for cell in result.scored]
    result.unscored_images = evaluate(methods, out / 'evaluation', evaluation,
                                      command=['dlst-table1', 'evaluate']).failed
    if not result.unscored_images:
        result.table = table_markdown(out / 'evaluation' / 'metrics.json')
        atomic_write_text(out / 'table1.md', result.table)
        print(result.table + f'wrote {out / "table1.md"}')
    return result
