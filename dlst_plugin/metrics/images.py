"""Image folders for evaluation: which files count, how they are read, how methods are matched.

Every metric reads images the same way (``IMAGE_FORMAT``), and images of different folders
are matched by file stem, so ``face_0001.png`` restored pairs with ``face_0001.jpg`` ground truth.
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.fileio.images import IMAGE_EXTENSIONS, is_image_file, list_files

IMAGE_FORMAT = 'OpenCV imread IMREAD_COLOR: 8-bit BGR, gray expanded to 3 channels, alpha dropped'


class EvaluationError(InputError):
    """Bad input to the evaluation (unreadable image, no images, mismatched statistics; exit code 1)."""


class EvaluationSetupError(ConfigError, EvaluationError):
    """A flag naming a folder or file that is not there or cannot be used: nothing was scored (exit code 2)."""


def warn(message):
    print(f'warning: {message}', file=sys.stderr)


def list_images(folder, role='folder'):
    """``({stem: path}, skipped)`` for the images directly in ``folder``.

    Non-image files and a second file with an already seen stem are skipped with a warning
    (``skipped`` holds ``{'file', 'reason'}`` records for the JSON report).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationSetupError(f'{role} {folder} does not exist or is not a directory')
    images, skipped = {}, []
    for _, path in list_files(folder, recursive=False):
        path = Path(path)
        if not is_image_file(path):
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
