import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import face_crops  # noqa: E402

# pytest-xdist (pyproject: -n 2): the workers share the cores, so each takes its share of torch threads
# instead of all of them (two workers x all threads on 2 cores made multi-threaded tests 5x slower)
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT'])))


# a slow (end-to-end) test takes seconds, another test a tenth of a second or less
SLOW_WEIGHT = 50


def pytest_collection_modifyitems(config, items):
    """Longest files first. pytest-xdist (pyproject: --dist loadfile --no-loadscope-reorder) hands the two
    workers one file at a time in this order: a long file left for last would keep one worker busy while the
    other has nothing to do; short files at the end even out the finish. A file's length is reckoned from its
    tests, a slow one as SLOW_WEIGHT others; the order of the tests within a file is kept."""
    weight = Counter()
    for item in items:
        weight[item.nodeid.split('::')[0]] += SLOW_WEIGHT if item.get_closest_marker('slow') else 1
    items.sort(key=lambda item: -weight[item.nodeid.split('::')[0]])


@pytest.fixture
def faces_dir(tmp_path):
    """A folder of 12 tiny (64 px) face crops made from the shipped sample photos."""
    face_crops(tmp_path / 'faces', size=64, count=12, seed=0)
    return tmp_path / 'faces'


@pytest.fixture
def one_thread():
    """Tiny networks are bound by per-op overhead: one thread is as fast, and far faster when
    other processes compete for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
