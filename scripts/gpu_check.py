"""The GPU acceptance check behind ``scripts/gpu_check.sh``: one command that proves the 512 px training
and inference paths on a CUDA GPU and measures them, exiting non-zero on any failure.

Steps: (1) the ``cuda``-marked tests (half-precision inference parity, AMP training steps); (2) a 512 px
Skip-Transformer run and a 512 px degrader run through ``torchrun --nproc_per_node=1 ... --launcher
pytorch`` (NCCL) with bf16 AMP, random weights and faces cut from the shipped photos; (3) the training
step benchmark and the ST inference benchmark on the GPU. One table at the end: it/s, images/s, peak
memory per run; everything also in ``OUT/gpu_check.json``.

    bash scripts/gpu_check.sh [--out DIR] [--iters 300]
    bash scripts/gpu_check.sh --smoke      # the same plumbing on a CPU, tiny sizes (CI runs this)
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))

from helpers import face_crops, torchrun  # noqa: E402  (tests/ is on the path only from the line above)


def run_options(kind, faces, out, size, narrow, iters, batch, amp):
    """A training option file for the ST or degrader run."""
    base = REPO / 'tests' / 'options' / ('train_st_tiny.yml' if kind == 'st' else 'train_dl_tiny.yml')
    opt = yaml.safe_load(base.read_text())
    opt['name'] = f'gpu_check_{kind}'
    opt['num_gpu'] = 'auto'
    opt['path'] = {'experiments_root': str(out / 'experiments' / kind)}
    for key in ('network_g', 'network_d'):
        opt[key].update(out_size=size, narrow=narrow)
    if kind == 'st':
        opt['model_type'] = 'FaceRestorationModel'
        opt['network_g'].update(num_style_feat=512 if narrow == 1 else 32, num_mlp=8 if narrow == 1 else 2,
                                use_checkpoint=True)
    else:
        opt['network_g'].update(num_style_feat=512 if narrow == 1 else 32, num_mlp=8 if narrow == 1 else 2)
    data = opt['datasets']['train']
    data.update(out_size=size, batch_size_per_gpu=batch, num_worker_per_gpu=4 if amp else 0,
                **{'dataroot_gt' if kind == 'st' else 'dataroot_lq': str(faces)})
    opt['datasets'] = {'train': data}
    opt.pop('val', None)
    opt['train'].update(total_iter=iters, use_amp=amp, amp_dtype='bfloat16')
    opt['train'].pop('scheduler', None)
    opt['logger'].update(print_freq=max(1, iters // 6), save_checkpoint_freq=iters)
    path = out / f'{kind}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def parse_log(folder):
    """Seconds per iteration (BasicSR's smoothed ``time``) and peak GPU memory from a run's log."""
    logs = sorted(Path(folder).glob('train_*.log'))
    text = logs[-1].read_text() if logs else ''
    times = [float(t) for t in re.findall(r'time \(data\): ([\d.]+)', text)]
    peaks = [float(t) for t in re.findall(r'peak_mem_gb: ([\d.eE+-]+)', text)]
    return (times[-1] if times else None), (max(peaks) if peaks else None)


def train_run(kind, args, faces, out, table):
    size, narrow = (32, 1 / 32) if args.smoke else (512, 1)
    batch = 2 if args.smoke else args.batch
    opt = run_options(kind, faces, out, size, narrow, args.iters, batch, amp=not args.smoke)
    cmd = [sys.executable, *torchrun(1, '-m', 'dlst_plugin.train', '-opt', str(opt), '--launcher', 'pytorch')[1:]]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.time() - start
    (out / f'{kind}.out').write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f'{kind} {size} px run failed ({proc.returncode}); see {out / (kind + ".out")}:\n'
                         f'{proc.stderr[-3000:]}')
    seconds, peak = parse_log(out / 'experiments' / kind)
    mode = 'fp32' if args.smoke else 'bf16 AMP'
    table.append({'run': f'{kind} {size}px train {mode}' + (' +ckpt' if kind == 'st' else ''), 'batch': batch,
                  'it_s': 1 / seconds if seconds else None, 'img_s': batch / seconds if seconds else None,
                  'peak_gb': peak, 'wall_s': wall})


def bench(args, out, table):
    script = REPO / 'benchmarks' / 'bench_train_step.py'
    size, batch = (32, 2) if args.smoke else (512, args.batch)
    flags = ['--size', str(size), '--batch', str(batch), '--iters', '1' if args.smoke else '5',
             '--narrow', '0.0625' if args.smoke else '1',
             '--models', 'st,gfpgan' if args.smoke else 'st,dl,glean,gfpgan',
             '--modes', 'fp32,ckpt' if args.smoke else 'fp32,amp,amp+ckpt', '--json', str(out / 'bench.json'),
             *([] if args.smoke else ['--estimate-512'])]  # on the GPU: the 512 px batch-8 memory with AMP
    proc = subprocess.run([sys.executable, str(script), *flags], capture_output=True, text=True)
    (out / 'bench_train_step.out').write_text(proc.stdout + proc.stderr)
    print(proc.stdout)
    if proc.returncode:
        raise SystemExit(f'bench_train_step.py failed:\n{proc.stderr[-3000:]}')
    for key, r in json.loads((out / 'bench.json').read_text()).items():
        if 'seconds' in r:
            table.append({'run': f'bench {key} {size}px', 'batch': batch, 'it_s': 1 / r['seconds'],
                          'img_s': batch / r['seconds'], 'peak_gb': r['peak_mb'] / 1024, 'wall_s': None})
    if args.smoke:  # the CPU smoke run checks the training plumbing; the inference benchmark is GPU-only here
        return
    st = [sys.executable, str(REPO / 'benchmarks' / 'bench_skip_transformer.py'), '--size', str(size),
          '--repeats', '5', '--device', 'cuda']
    proc = subprocess.run(st, capture_output=True, text=True)
    (out / 'bench_skip_transformer.out').write_text(proc.stdout + proc.stderr)
    print(proc.stdout)
    if proc.returncode:
        raise SystemExit(f'bench_skip_transformer.py failed:\n{proc.stderr[-3000:]}')


def print_table(table):
    print(f'{"run":40s} {"batch":>5s} {"it/s":>8s} {"img/s":>8s} {"peak GB":>8s} {"wall s":>7s}')
    for row in table:
        cells = [f'{row[k]:8.2f}' if isinstance(row[k], float) else f'{"-":>8s}' for k in ('it_s', 'img_s', 'peak_gb')]
        wall = f'{row["wall_s"]:7.0f}' if row['wall_s'] else f'{"-":>7s}'
        print(f'{row["run"]:40s} {row["batch"]:5d} {" ".join(cells)} {wall}')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='gpu_check_out', help='folder for logs, data and gpu_check.json')
    p.add_argument('--iters', type=int, default=300, help='iterations of each 512 px training run')
    p.add_argument('--batch', type=int, default=8, help='batch of the 512 px runs and benchmarks (paper: 8)')
    p.add_argument('--smoke', action='store_true', help='CPU plumbing check at 32 px (no GPU needed)')
    args = p.parse_args(argv)
    import torch
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit('gpu_check: no CUDA GPU is available (use --smoke for the CPU plumbing check)')
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f'# torch {torch.__version__}; ' + (f'{torch.cuda.get_device_name()}, bf16 '
          f'{torch.cuda.is_bf16_supported()}' if torch.cuda.is_available() else 'CPU smoke run'), flush=True)
    if not args.smoke:
        tests = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-m', 'cuda', '-p', 'no:cacheprovider',
                                str(REPO / 'tests')], cwd=REPO)
        if tests.returncode:
            raise SystemExit('gpu_check: the cuda-marked tests failed')
    faces = out / 'faces'
    face_crops(faces, size=32 if args.smoke else 512, count=16, seed=0)
    table = []
    if args.smoke:
        args.iters = 4
    for kind in ('st', 'dl'):
        train_run(kind, args, faces, out, table)
    bench(args, out, table)
    print_table(table)
    (out / 'gpu_check.json').write_text(json.dumps(table, indent=1))
    print(f'gpu_check: all steps passed; figures in {out / "gpu_check.json"}')


if __name__ == '__main__':
    main()
