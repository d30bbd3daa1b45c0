"""What a BasicSR training run leaves behind: its experiment folder, its final checkpoint, its log as curves.

BasicSR writes a run into ``path.experiments_root`` of its option file, else ``./experiments/<name>``:
``models/net_g_latest.pth`` once training finished, and ``train_<name>_<time>.log`` with one line per
``print_freq`` iterations (``[..][epoch: 0, iter: 1,020, lr:(...)] [eta: ..., time (data): ...] l_g_pix: 3.7e-03
...``). The demo's report and ``dlst-table1`` read runs through here, so the log format is parsed in one place.
"""
import re
from pathlib import Path

from dlst_plugin.options.file import read_option_file

ITER = re.compile(r'\biter:\s*([\d,]+)')
VALUE = re.compile(r'\b([A-Za-z_]\w*):\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))(?=\s|$)')
NOT_CURVES = {'lr', 'epoch', 'iter', 'eta', 'time', 'data', 'nonfinite_steps'}  # logged, but not training curves
FINAL_CHECKPOINT = Path('models') / 'net_g_latest.pth'


def experiment_dir(option_path):
    """Where BasicSR puts the run of the option file ``option_path``: ``path.experiments_root`` or
    ``./experiments/<name>`` (relative to the working folder, as BasicSR resolves it)."""
    opt = read_option_file(option_path)
    root = (opt.get('path') or {}).get('experiments_root')
    return Path(root).expanduser() if root else Path('experiments') / opt['name']


def final_checkpoint(run_dir):
    """The run's ``models/net_g_latest.pth`` (BasicSR saves it at the last iteration), or None before that."""
    path = Path(run_dir) / FINAL_CHECKPOINT
    return path if path.is_file() else None


def parse_log(text):
    """``{name: [(iteration, value)]}`` of every ``name: number`` after the iteration in BasicSR's log lines
    (the learning rates, eta and timings excluded)."""
    curves = {}
    for line in text.splitlines():
        m = ITER.search(line)
        if not m:
            continue
        tail = line[m.end():]
        tail = tail[tail.rfind(']') + 1:]  # after "lr:(...)] [eta: ..., time (data): ...]"
        it = int(m.group(1).replace(',', ''))
        for name, value in VALUE.findall(tail):
            if name not in NOT_CURVES:
                curves.setdefault(name, []).append((it, float(value)))
    return curves


def newest_log(run_dir):
    """The newest ``train_*.log`` of a run folder (a resumed run starts a new one), or None."""
    logs = sorted(Path(run_dir).glob('train_*.log'), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else None


def training_curves(run_dir):
    """:func:`parse_log` of the run's newest log (``{}`` when there is none)."""
    log = newest_log(run_dir)
    return parse_log(log.read_text(errors='replace')) if log else {}
