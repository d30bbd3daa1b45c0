"""Seconds per FID value: dlst's eigendecomposition Frechet distance vs BasicSR's ``calculate_fid`` (sqrtm).

Question: with 2048-dim Inception statistics, how much faster is ``frechet_distance`` than
``basicsr.metrics.fid.calculate_fid`` (scipy ``sqrtm``), and do both give the same number?
Statistics come from random non-negative features (like post-ReLU pooled Inception features) of
``--images`` samples per side; the same pair is timed with both, one round each (sqrtm is slow).

    python benchmarks/bench_fid_distance.py [--dims 2048] [--images 600] [--rounds 2]

BLAS threads fight other processes on a loaded machine: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 steadies it.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import REPO, header  # noqa: E402

sys.path.insert(0, str(REPO))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dims', type=int, default=2048, help='feature size (2048 = standard FID)')
    p.add_argument('--images', type=int, default=600, help='samples per side (the paper test set: 653)')
    p.add_argument('--rounds', type=int, default=2, help='timed rounds per tool, best one reported')
    args = p.parse_args()
    import dlst_plugin  # noqa: F401  (BasicSR compatibility patches before basicsr is imported)
    # isort: split
    from basicsr.metrics.fid import calculate_fid as basicsr_fid

    from dlst_plugin.metrics.fid import feature_statistics, frechet_distance
    header(f'FID distance, {args.dims} dims, {args.images} images per side')
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(args.images, args.dims)))
    b = np.abs(rng.normal(0.1, 1.1, size=(args.images, args.dims)))
    stats_a, stats_b = feature_statistics(a), feature_statistics(b)
    tools = {'basicsr calculate_fid (sqrtm)': basicsr_fid, 'dlst frechet_distance (eigh)': frechet_distance}
    times = {name: [] for name in tools}
    values = {}
    for round_ in range(args.rounds):  # alternate the order so that machine load hits both alike
        for name in (list(tools) if round_ % 2 == 0 else list(tools)[::-1]):
            t0 = time.perf_counter()
            values[name] = float(tools[name](*stats_a, *stats_b))
            times[name].append(time.perf_counter() - t0)
    for name in tools:
        print(f'{name:32s} best {min(times[name]):8.2f} s   FID {values[name]:.6f}')
    (t_ref, t_new), (v_ref, v_new) = [min(t) for t in times.values()], values.values()
    print(f'speed-up x{t_ref / t_new:.1f}, relative difference {abs(v_new - v_ref) / abs(v_ref):.2e}')


if __name__ == '__main__':
    main()
