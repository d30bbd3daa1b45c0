"""Images/s of dlst-make-lmdb vs BasicSR's make_lmdb_from_imgs on the same images, and LMDB read speed.

Question (docs/design.md#toolchain: BasicSR's make_lmdb_from_imgs makes about 75 images/s at 512 px):
with two worker processes, does dlst-make-lmdb write at least 1.5x as many images/s? And how
fast do BasicSR's FileClient + imfrombytes read the result back, against reading the PNG folder?

    python benchmarks/bench_make_lmdb.py [--size 512] [--images 200] [--workers 2] [--rounds 2]

The images are face crops cut from the sample photos (real content, so PNG sizes are realistic),
written once to a temporary folder; every tool then reads that folder with PNG level 1 (BasicSR's
default). Rounds alternate the tools so that machine load hits all alike; figures are the best
round's wall time, with the CPU time per image (this process and its workers): on a loaded machine the
wall-time ratio of a multi-process tool shows only the cores it could get, the CPU time shows the work.
"""
import argparse
import contextlib
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import cv2  # noqa: E402
from helpers import face_crops  # noqa: E402

from dlst_plugin.cli import make_lmdb  # noqa: E402


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def cpu_seconds():
    """CPU time of this process and its finished children (the tools' worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def basicsr_make(src, dst, names, **kwargs):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    make_lmdb_from_imgs(str(src), str(dst), names, [os.path.splitext(n)[0] for n in names], **kwargs)


def dlst_make(src, dst, workers, *extra):
    code = make_lmdb.main([str(src), str(dst), '--workers', str(workers), '--png-level', '1', *extra])
    assert code == 0, code


def read_lmdb(path, keys):
    from basicsr.utils import FileClient, imfrombytes
    client = FileClient('lmdb', db_paths=[str(path)], client_keys=['default'])
    for key in keys:
        img = imfrombytes(client.get(key), float32=True)
    client.client._client['default'].close()
    return img


def read_folder(src, names):
    for name in names:
        img = cv2.imread(os.path.join(src, name)).astype('float32') / 255
    return img


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=512, help='image side in px')
    p.add_argument('--images', type=int, default=200, help='number of images')
    p.add_argument('--workers', type=int, default=2, help='dlst-make-lmdb worker processes')
    p.add_argument('--rounds', type=int, default=2, help='alternating rounds; the best is reported')
    args = p.parse_args(argv)

    print(f'# dlst-make-lmdb vs BasicSR make_lmdb_from_imgs: {args.images} images of {args.size} px, '
          f'{os.cpu_count()} CPUs, dlst workers {args.workers}')
    tmp = Path(tempfile.mkdtemp(prefix='bench_make_lmdb_'))
    try:
        src = tmp / 'src'
        face_crops(src, size=args.size, count=args.images, seed=0)
        names = sorted(os.listdir(src))
        makers = {
            'basicsr make_lmdb_from_imgs (one process)': lambda dst: basicsr_make(src, dst, names),
            f'basicsr make_lmdb_from_imgs (multiprocessing_read, n_thread={args.workers})':
                lambda dst: basicsr_make(src, dst, names, multiprocessing_read=True, n_thread=args.workers),
            'dlst-make-lmdb (--workers 1)': lambda dst: dlst_make(src, dst, 1),
            f'dlst-make-lmdb (--workers {args.workers})': lambda dst: dlst_make(src, dst, args.workers),
            f'dlst-make-lmdb (--workers {args.workers} --copy-png: no re-encoding)':
                lambda dst: dlst_make(src, dst, args.workers, '--copy-png'),
        }
        best = {name: float('inf') for name in makers}
        cpu = {name: float('inf') for name in makers}
        read_from = f'dlst-make-lmdb (--workers {args.workers})'  # PNG level 1, like BasicSR's
        for r in range(args.rounds):
            for i, (name, make) in enumerate(makers.items()):
                dst = tmp / f'r{r}_{i}.lmdb'
                t0, c0 = time.perf_counter(), cpu_seconds()
                with quiet():
                    make(str(dst))
                best[name] = min(best[name], time.perf_counter() - t0)
                cpu[name] = min(cpu[name], cpu_seconds() - c0)
                if name == read_from:
                    lmdb_path = dst
                else:
                    shutil.rmtree(dst)
        base = best[next(iter(makers))]
        print(f'{"write":<72} {"images/s":>9} {"ratio":>6} {"CPU ms/image":>12}')
        for name, seconds in best.items():
            cpu_ms = 1000 * cpu[name] / args.images
            print(f'{name:<72} {args.images / seconds:9.1f} {base / seconds:6.2f} {cpu_ms:12.1f}')

        keys = [os.path.splitext(n)[0] for n in names]
        read_best = {'PNG folder, cv2.imread': float('inf'), 'LMDB, BasicSR FileClient + imfrombytes': float('inf')}
        for _ in range(args.rounds):
            for name, read in zip(read_best, (lambda: read_folder(src, names), lambda: read_lmdb(lmdb_path, keys))):
                t0 = time.perf_counter()
                read()
                read_best[name] = min(read_best[name], time.perf_counter() - t0)
        base = read_best['PNG folder, cv2.imread']
        print(f'{"read (decode to float32, one process)":<72} {"images/s":>9} {"ratio":>6}')
        for name, seconds in read_best.items():
            print(f'{name:<72} {args.images / seconds:9.1f} {base / seconds:6.2f}')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
