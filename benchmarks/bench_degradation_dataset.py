"""Samples/s of DegradedFaceDataset vs GFP-GAN's FFHQDegradationDataset, one thread, same images.

Question (docs/design.md#toolchain): does the plugin's GFP-GAN degradation keep up with GFP-GAN's own
dataset (about 29 samples/s at 512 px on one thread)? Target: ratio >= 1.0.

    python benchmarks/bench_degradation_dataset.py [--size 512] [--samples 48] [--rounds 3]

Both datasets read the same PNG faces (cut from the sample photos into a temporary folder) with
the dataset block of GFP-GAN's options/train_gfpgan_v1.yml (facial components off). Rounds
alternate between the two so that machine load hits both alike; the figure is CPU time of this
single-threaded process (wall time also printed). GFP-GAN's dataset passes a float JPEG quality
that OpenCV >= 4.12 rejects; the run wraps BasicSR's JPEG helper to cast it to int.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from helpers import face_crops  # noqa: E402

import dlst_plugin  # noqa: E402,F401
from dlst_plugin.data.degraded_face_dataset import DegradedFaceDataset  # noqa: E402

GFPGAN_V1_BLOCK = {
    'use_hflip': True, 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5],
    'blur_kernel_size': 41, 'kernel_list': ['iso', 'aniso'], 'kernel_prob': [0.5, 0.5], 'blur_sigma': [0.1, 10],
    'downsample_range': [0.8, 8], 'noise_range': [0, 20], 'jpeg_range': [60, 100],
    'color_jitter_prob': 0.3, 'color_jitter_shift': 20, 'color_jitter_pt_prob': 0.3, 'gray_prob': 0.01,
}


def gfpgan_dataset(root, size):
    from basicsr.data import degradations
    from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset

    if not getattr(degradations.random_add_jpg_compression, 'int_quality', False):
        def random_add_jpg_compression(img, quality_range=(90, 100)):
            return degradations.add_jpg_compression(img, int(np.random.uniform(quality_range[0], quality_range[1])))
        random_add_jpg_compression.int_quality = True
        degradations.random_add_jpg_compression = random_add_jpg_compression
    return FFHQDegradationDataset(dict(GFPGAN_V1_BLOCK, dataroot_gt=str(root), io_backend={'type': 'disk'},
                                       out_size=size))


def time_samples(dataset, count, start):
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        sample = dataset[(start + i) % len(dataset)]
    assert sample['lq'].shape == sample['gt'].shape
    return time.process_time() - cpu, time.perf_counter() - wall


def parse_dataset_bench_args(argv, description):
    """Options shared by the dataset benchmarks; pins one thread (samples/s per data-loader worker)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--size', type=int, default=512, help='face size in pixels')
    parser.add_argument('--samples', type=int, default=48, help='samples per dataset per round')
    parser.add_argument('--rounds', type=int, default=3, help='alternating rounds per dataset')
    parser.add_argument('--faces', type=int, default=24, help='distinct face images to write')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(0)
    return args


def main(argv=None):
    args = parse_dataset_bench_args(argv, __doc__.split('\n')[0])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / 'faces'
        face_crops(root, size=args.size, count=args.faces, seed=0)
        datasets = {
            'DegradedFaceDataset': DegradedFaceDataset(dict(GFPGAN_V1_BLOCK, dataroot_gt=str(root),
                                                            io_backend={'type': 'disk'}, out_size=args.size, seed=0)),
            'gfpgan FFHQDegradationDataset': gfpgan_dataset(root, args.size),
        }
        totals = {name: [0.0, 0.0] for name in datasets}
        for name, ds in datasets.items():  # warm-up (imports, caches)
            time_samples(ds, 2, 0)
        for r in range(args.rounds):
            for name, ds in datasets.items():
                cpu, wall = time_samples(ds, args.samples, r * args.samples)
                totals[name][0] += cpu
                totals[name][1] += wall
    n = args.samples * args.rounds
    rates = {}
    print(f'{args.size} px, {n} samples each, 1 thread')
    for name, (cpu, wall) in totals.items():
        rates[name] = n / cpu
        print(f'  {name:32s} {n / cpu:6.1f} samples/s (CPU time)   {n / wall:6.1f} samples/s (wall)')
    ours, theirs = rates.values()
    print(f'  ratio DegradedFaceDataset / FFHQDegradationDataset: {ours / theirs:.2f}x (target >= 1.0x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
