"""Which files are images, and how a folder of them is listed: one list, one scan, for every tool of
the plugin (commands, datasets, evaluation).

A scan is sorted by relative path (``/``-separated), skips hidden files and folders (``.name``) and
LMDB folders (``*.lmdb``), follows symbolic links to folders once (a link loop is not followed twice).
"""
import fnmatch
import os

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')


def is_image_file(path):
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def list_files(root, recursive=True):
    """Sorted ``[(relative path with '/', path)]`` of every (non-hidden) file under ``root``."""
    root = os.fspath(root)
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symbolic link back into the tree
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.') and not d.endswith('.lmdb')) \
            if recursive else []
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not name.startswith('.') and os.path.isfile(path):
                found.append((os.path.relpath(path, root).replace(os.sep, '/'), path))
    return sorted(found)


def list_images(root, pattern=None, recursive=True):
    """Sorted ``[(relative path with '/', path)]`` of the images under ``root`` (:data:`IMAGE_EXTENSIONS`).

    ``pattern`` (fnmatch, e.g. ``'*.png'`` or ``'train/*'``) is matched against the relative path."""
    return [(rel, path) for rel, path in list_files(root, recursive)
            if is_image_file(rel) and (pattern is None or fnmatch.fnmatch(rel, pattern))]
