"""Samples/s of SecondOrderFaceDataset vs GFP-GAN's FFHQDegradationDataset, one thread, same images.

Question (issue: degradation learning, item 8): does the second-order training set (generated
pairs + FFHQ, GFP-GAN's degradation on both) keep up with GFP-GAN's own dataset per data-loader
worker? Target: ratio >= 1.0x.

    python benchmarks/bench_second_order_dataset.py [--size 512] [--samples 48] [--rounds 3]

All datasets read the same PNG faces (cut from the sample photos into a temporary folder): they
are GFP-GAN's HQ faces, the FFHQ source and the clean faces of the pairs; the "degraded" faces of
the pairs are blurred copies. Same degradation block (GFP-GAN's train_gfpgan_v1.yml); rounds
alternate so machine load hits all alike; CPU time of this single-threaded process.
"""
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import cv2  # noqa: E402
from bench_degradation_dataset import (  # noqa: E402
    GFPGAN_V1_BLOCK,
    gfpgan_dataset,
    parse_dataset_bench_args,
    time_samples,
)
from helpers import face_crops  # noqa: E402

import dlst_plugin  # noqa: E402,F401
from dlst_plugin.data.second_order_face_dataset import SecondOrderFaceDataset  # noqa: E402


def main(argv=None):
    args = parse_dataset_bench_args(argv, __doc__.split('\n')[0])
    with tempfile.TemporaryDirectory() as tmp:
        faces = Path(tmp) / 'faces'
        paths = face_crops(faces, size=args.size, count=args.faces, seed=0)
        (Path(tmp) / 'degraded').mkdir()
        for path in paths:
            cv2.imwrite(str(Path(tmp) / 'degraded' / path.name), cv2.GaussianBlur(cv2.imread(str(path)), (0, 0), 2))
        block = dict(GFPGAN_V1_BLOCK, dataroot_clean=str(faces), dataroot_degraded=str(Path(tmp) / 'degraded'),
                     dataroot_hq=str(faces), out_size=args.size, seed=0)
        datasets = {
            'SecondOrderFaceDataset': SecondOrderFaceDataset(block),
            'SecondOrder (method1)': SecondOrderFaceDataset(dict(block, mode='method1', dataroot_hq=None)),
            'gfpgan FFHQDegradationDataset': gfpgan_dataset(faces, args.size),
        }
        totals = {name: 0.0 for name in datasets}
        for ds in datasets.values():  # warm-up (imports, caches)
            time_samples(ds, 2, 0)
        for r in range(args.rounds):
            for name, ds in datasets.items():
                totals[name] += time_samples(ds, args.samples, r * args.samples)[0]
    n = args.samples * args.rounds
    print(f'{args.size} px, {n} samples each, 1 thread (one data-loader worker)')
    for name, cpu in totals.items():
        print(f'  {name:32s} {n / cpu:6.1f} samples/s (CPU time)')
    base = totals['gfpgan FFHQDegradationDataset']
    for name in ('SecondOrderFaceDataset', 'SecondOrder (method1)'):
        print(f'  ratio {name} / FFHQDegradationDataset: {base / totals[name]:.2f}x (target >= 1.0x)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
