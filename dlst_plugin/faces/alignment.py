"""FFHQ-style face alignment from five landmarks, and paste-back through the inverse affine.

The template is the five-point FFHQ template of facexlib's ``FaceRestoreHelper`` (the one
GFP-GAN restores with), so aligned crops match the faces the restorer and StyleGAN2 were
trained on (paper 3.2.1: "all images are aligned"; docs/design.md#pipeline, steps 1 and 6).
"""
import cv2
import numpy as np

# left eye, right eye (as seen in the image), nose tip, left and right mouth corner, at 512 px
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], np.float64)
BORDER_MODES = {'reflect': cv2.BORDER_REFLECT_101, 'constant': cv2.BORDER_CONSTANT, 'replicate': cv2.BORDER_REPLICATE}
INTERPOLATIONS = {'area': cv2.INTER_AREA, 'linear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC,
                  'lanczos': cv2.INTER_LANCZOS4, 'nearest': cv2.INTER_NEAREST}


def face_template(size=512):
    """The five template points (5, 2) for a ``size`` x ``size`` aligned face."""
    return FFHQ_TEMPLATE_512 * (size / 512.0)


def estimate_affine(landmarks, size=512):
    """2x3 similarity transform (rotation, uniform scale, shift) taking ``landmarks`` onto the template."""
    src = np.asarray(landmarks, np.float64).reshape(5, 2)
    affine, _ = cv2.estimateAffinePartial2D(src, face_template(size), method=cv2.LMEDS)
    if affine is None or not np.all(np.isfinite(affine)):
        raise ValueError(f'cannot fit the alignment template to landmarks {src.tolist()}')
    return affine


def align_face(img, landmarks, size=512, border='reflect', interpolation='linear'):
    """Warp ``img`` so its five ``landmarks`` land on the template; return (crop, affine).

    ``affine`` (2x3) maps image pixels to crop pixels; keep :func:`inverse_affine` of it to
    paste a restored crop back. ``border`` fills what lies outside the photo: ``reflect``
    (default, no flat frames in training data), ``constant`` (black) or ``replicate``."""
    affine = estimate_affine(landmarks, size)
    crop = cv2.warpAffine(img, affine, (size, size), flags=INTERPOLATIONS[interpolation],
                          borderMode=BORDER_MODES[border])
    return crop, affine


def inverse_affine(affine):
    """The 2x3 transform from crop pixels back to image pixels."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))


def transform_points(points, affine):
    """Apply a 2x3 affine to (N, 2) points."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ np.asarray(affine, np.float64)[:, :2].T + np.asarray(affine, np.float64)[:, 2]


def paste_face(img, face, inv_affine, feather=None):
    """Blend an aligned (possibly restored, possibly upscaled) ``face`` back into ``img``.

    ``inv_affine`` is :func:`inverse_affine` of the alignment affine of ``img``; a face
    ``k`` times larger than the aligned crop is handled by passing ``inv_affine`` scaled by
    1/k on its 2x2 part. The seam is feathered over ``feather`` px (default: 1/20 of the face)."""
    h, w = img.shape[:2]
    size = face.shape[0]
    feather = max(1, int(feather if feather is not None else size // 20))
    warped = cv2.warpAffine(face, inv_affine, (w, h), flags=cv2.INTER_LINEAR)
    mask = np.zeros((size, size), np.float32)
    mask[feather:size - feather, feather:size - feather] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), feather / 2)
    mask = cv2.warpAffine(mask, inv_affine, (w, h), flags=cv2.INTER_LINEAR)
    if img.ndim == 3:
        mask = mask[:, :, None]
    out = img.astype(np.float32) * (1 - mask) + warped.astype(np.float32) * mask
    return np.clip(out + 0.5, 0, 255).astype(img.dtype) if img.dtype == np.uint8 else out.astype(img.dtype)
