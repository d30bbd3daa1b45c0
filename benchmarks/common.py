"""Small timing helpers shared by the benchmark scripts."""
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))  # reference wrappers shared with the tests


def time_call(fn, repeat=3, warmup=1):
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def count_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def header(title):
    print(f'# {title}')
    print(f'# torch {torch.__version__}, threads {torch.get_num_threads()}, '
          f'device {"cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}')
