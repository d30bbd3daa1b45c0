"""What every restorer arch shares: aligned faces ``(batch, 3, S, S)`` in [-1, 1] in, an image (first) out."""


def first_output(out):
    """The restored image of a restorer's output: GFP-GAN-style networks return ``(image, extras)``."""
    return out[0] if isinstance(out, (tuple, list)) else out


def check_face_input(x, size, arch):
    """Raise a ValueError naming ``arch`` and the expected shape unless ``x`` is ``(b, 3, size, size)``."""
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
        raise ValueError(f'{arch} expects images of shape (batch, 3, {size}, {size}) in [-1, 1]; got '
                         f'{tuple(x.shape)}. Resize or align faces to {size}x{size} first.')
