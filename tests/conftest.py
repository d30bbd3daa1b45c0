import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import face_crops  # noqa: E402


@pytest.fixture
def faces_dir(tmp_path):
    """A folder of 12 tiny (64 px) face crops made from the shipped sample photos."""
    face_crops(tmp_path / 'faces', size=64, count=12, seed=0)
    return tmp_path / 'faces'
