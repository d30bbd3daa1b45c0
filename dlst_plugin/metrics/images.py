"""Image folders for evaluation: which files count, how they are read, how methods are matched.

Every metric reads images the same way (``IMAGE_FORMAT``), and images of different folders
are matched by file stem, so ``face_0001.png`` restored pairs with ``face_0001.jpg`` ground truth.
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from dlst_plugin.image_files import IMAGE_EXTENSIONS  # noqa: F401  (re-exported)

IMAGE_FORMAT = 'OpenCV imread IMREAD_COLOR: 8-bit BGR, gray expanded to 3 channels, alpha dropped'


class EvaluationError(Exception):
    """Bad input to the evaluation (missing folder, unreadable image, mismatched statistics)."""


def warn(message):
    print(f'warning: {message}', file=sys.stderr)


def list_images(folder, role='folder'):
    """``({stem: path}, skipped)`` for the images directly in ``folder``.

    Non-image files and a second file with an already seen stem are skipped with a warning
    (``skipped`` holds ``{'file', 'reason'}`` records for the JSON report).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f'{role} {folder} does not exist or is not a directory')
    images, skipped = {}, []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = f'not an image (extension not in {", ".join(IMAGE_EXTENSIONS)})'
        elif path.stem in images:
            reason = f'same stem as {images[path.stem].name}'
        else:
            images[path.stem] = path
            continue
        warn(f'skipping {path}: {reason}')
        skipped.append({'file': str(path), 'reason': reason})
    if not images:
        raise EvaluationError(f'{role} {folder} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    return images, skipped


def read_image(path):
    """The image at ``path`` as ``IMAGE_FORMAT`` (H, W, 3 uint8 BGR); EvaluationError when unreadable."""
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise EvaluationError(f'cannot decode image {path}')
    return img
