"""Seconds per training iteration of the degrader (DL) and the Skip-Transformer (ST) models: this
checkout against an earlier revision of the plugin, in the same run.

Question (issue: one adversarial training core): is the step of the models on the shared core no
slower than the step of the hand-written models it replaced? Target: ratio (before / after) >= 1.0.

    python benchmarks/bench_gan_core.py [--baseline-ref e5b1067] [--size 32 64] [--iters 20] [--rounds 3]

The baseline revision is extracted with ``git archive`` into a temporary folder; each measurement
runs in a fresh process importing one tree, with that tree's own tiny option files
(``tests/options/train_{dl,st}_tiny.yml``), the size overridden (widths stay tiny: these runs are
dominated by per-op overhead, as the demo's and the tests' are), one thread, a fixed batch of 2.
Rounds alternate between the trees so machine load hits both alike; the best round counts.
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {'dl': 'train_dl_tiny.yml', 'st': 'train_st_tiny.yml'}


def worker(tree, model, size, iters):
    """Runs in a child process: time ``iters`` steps of ``model`` built from ``tree``."""
    import time

    import torch
    import yaml
    sys.path.insert(0, tree)
    from basicsr.models import build_model

    import dlst_plugin  # noqa: F401
    torch.set_num_threads(1)
    torch.manual_seed(0)
    opt = yaml.safe_load((Path(tree) / 'tests' / 'options' / OPTIONS[model]).read_text())
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1)
    opt['path'] = {'visualization': tempfile.mkdtemp(), 'models': '', 'training_states': ''}
    for key in ('network_g', 'network_d'):
        opt[key]['out_size'] = size
    m = build_model(opt)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    data = {'lq': gt} if model == 'dl' else {'lq': (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(-1, 1),
                                             'gt': gt}
    m.feed_data(data)
    for it in range(1, 4):  # warm-up
        m.optimize_parameters(it)
    t0 = time.process_time()  # CPU time of this one-thread process: other load on the machine does not count
    for it in range(4, 4 + iters):
        m.optimize_parameters(it)
    return (time.process_time() - t0) / iters


def extract(ref, dest):
    archive = Path(dest) / 'tree.tar'
    subprocess.run(['git', '-C', str(REPO), 'archive', '-o', str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(Path(dest) / 'tree', filter='data')
    return str(Path(dest) / 'tree')


def measure(tree, model, size, iters):
    code = f'import sys, json; sys.path.insert(0, {str(REPO / "benchmarks")!r}); import bench_gan_core as b; ' \
           f'print(json.dumps(b.worker({tree!r}, {model!r}, {size}, {iters})))'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env=dict(env, OMP_NUM_THREADS='1'))
    if proc.returncode:
        raise SystemExit(f'measurement failed ({tree}, {model}, {size}):\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--baseline-ref', default='e5b1067', help='git revision to compare with (default: %(default)s, '
                   'the last revision with the hand-written models)')
    p.add_argument('--size', type=int, nargs='+', default=[32, 64], help='face sizes (default: %(default)s)')
    p.add_argument('--iters', type=int, default=20, help='timed iterations per measurement')
    p.add_argument('--rounds', type=int, default=3, help='alternating rounds; the best counts')
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {'before': extract(args.baseline_ref, tmp), 'after': str(REPO)}
        print(f'# CPU seconds per iteration, batch 2, 1 thread; before = {args.baseline_ref}, after = this checkout')
        print(f'{"model":6s} {"size":>5s} {"before":>9s} {"after":>9s} {"before/after":>13s}')
        for model in OPTIONS:
            for size in args.size:
                best = {name: float('inf') for name in trees}
                for _ in range(args.rounds):
                    for name, tree in trees.items():
                        best[name] = min(best[name], measure(tree, model, size, args.iters))
                print(f'{model:6s} {size:5d} {best["before"]:9.4f} {best["after"]:9.4f} '
                      f'{best["before"] / best["after"]:12.2f}x')


if __name__ == '__main__':
    main()
