"""Which files count as images, for every tool of the plugin (one list, one place)."""
import os

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')


def is_image_file(path):
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS
