"""Restore the faces of whole photos with a Skip-Transformer (or any BasicSR restorer): the library
behind ``dlst-restore``.

Per photo: detect -> align each face to the FFHQ template at the restorer's size -> restore the
faces in batches -> paste each back through the inverse affine with a feathered square mask whose
feather is a fixed fraction of the face, so it scales with the face's size in the photo.

Use from Python::

    restorer = FaceRestorer.from_files('net_g_latest.pth')  # or .safetensors; opt=X.yml overrides the network
    result = restorer.restore_image(cv2.imread('photo.jpg', cv2.IMREAD_UNCHANGED), upscale=2)
    result.image, result.faces  # restored photo (same mode as the input), restored aligned faces

The checkpoint says which network it holds (its metadata, else its tensor shapes: :mod:`dlst_plugin.loading.networks`);
``upscale`` > 1 pastes the faces onto an enlarged photo (``background``: e.g. a super-resolved copy).
"""
import functools
import math
import sys
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from dlst_plugin.archs.face_input import first_output
from dlst_plugin.checkpoints.files import resolve_model_path
from dlst_plugin.errors import ConfigError, short_reason
from dlst_plugin.faces.alignment import align_face, inverse_affine, transform_points
from dlst_plugin.faces.detection import build_detector
from dlst_plugin.loading.networks import RestoreError, RestoreSetupError, face_sizes, load_restorer, resolve_device

FEATHER_FRACTION = 1 / 20  # feather width / aligned face side (paste_face's default, GFP-GAN-like)
MIN_IMAGE_SIDE = 16  # below this no detector finds anything: say so instead
MAX_IMAGE_PIXELS = 20000 * 20000  # larger photos would need tens of GB as float: refuse clearly
STAGES = ('detect', 'align', 'restore', 'paste')
SELECTIONS = ('all', 'largest', 'center')


# -- image modes ----------------------------------------------------------------------------------

@dataclass
class ImageMode:
    """How a photo differs from 8-bit BGR, so the output can be given the same form."""
    gray: bool = False
    alpha: np.ndarray = None  # 8-bit alpha channel, put back on the restored photo
    notes: list = field(default_factory=list)


def to_bgr8(img):
    """(8-bit BGR image, ImageMode) of a grey / BGR / BGRA photo of 8 or 16 bits."""
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.size == 0:
        raise RestoreError('not an image (expected an array of H x W or H x W x C pixels)')
    h, w = img.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise RestoreError(f'image is {w}x{h} px: too small to hold a face (need at least {MIN_IMAGE_SIDE} px)')
    if h * w > MAX_IMAGE_PIXELS:
        raise RestoreError(f'image is {w}x{h} px: more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels')
    mode = ImageMode()
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
        mode.notes.append('16-bit image scaled to 8 bits')
    elif img.dtype != np.uint8:
        raise RestoreError(f'{img.dtype} pixels are not supported (8- or 16-bit images only)')
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        mode.gray = True
        mode.notes.append('grayscale image: restored in colour, written back as grayscale')
        img = cv2.cvtColor(img.reshape(h, w), cv2.COLOR_GRAY2BGR)
    elif channels == 4:
        mode.alpha = img[:, :, 3].copy()
        mode.notes.append('alpha channel kept unchanged')
        img = np.ascontiguousarray(img[:, :, :3])
    elif channels != 3:
        raise RestoreError(f'images with {channels} channels are not supported (1, 3 or 4)')
    return img, mode


def from_bgr8(img, mode):
    """Give a restored 8-bit BGR image the input's form back (grey, alpha)."""
    if mode.gray:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if mode.alpha is not None:
        return np.dstack([img, mode.alpha])
    return img


# -- paste-back -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def feather_mask(size):
    """Square mask of an aligned face: 1 inside, a Gaussian ramp to 0 over ``size / 20`` px."""
    feather = max(1, round(size * FEATHER_FRACTION))
    mask = np.zeros((size, size), np.float32)
    mask[feather:size - feather, feather:size - feather] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), feather / 2)
    mask.setflags(write=False)
    return mask


def face_region(affine, size, shape):
    """(x0, y0, x1, y1): the photo pixels the aligned square covers (clipped), or None."""
    corners = transform_points([[0, 0], [size, 0], [0, size], [size, size]], inverse_affine(affine))
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def paste_back(img, face, affine):
    """Blend the restored aligned ``face`` into ``img`` (in place) where the aligned square lies.

    Unlike ``faces.alignment.paste_face`` this warps and blends only the face's bounding box,
    not the whole photo, so its cost follows the face size, not the photo size; the feather
    (1/20 of the aligned side) scales with the face as the mask is warped with it."""
    size = face.shape[0]
    region = face_region(affine, size, img.shape)
    if region is None:
        return img
    x0, y0, x1, y1 = region
    inv = inverse_affine(affine)
    inv[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, inv, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(feather_mask(size), inv, dsize, flags=cv2.INTER_LINEAR)[:, :, None]
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(roi + (warped.astype(np.float32) - roi) * mask + 0.5, 0, 255).astype(np.uint8)
    return img


def scale_affine(affine, sx, sy):
    """The alignment transform of a photo resized by (sx, sy) (pixel centres kept: cv2.resize's grid)."""
    affine = np.asarray(affine, np.float64)
    linear = affine[:, :2] / [sx, sy]
    offset = affine[:, 2] + affine[:, :2] @ [0.5 / sx - 0.5, 0.5 / sy - 0.5]
    return np.hstack([linear, offset[:, None]])


def output_canvas(bgr, upscale=1, background=None):
    """(photo the faces are pasted on, sx, sy): ``bgr`` itself, resized ``upscale`` x (Lanczos), or
    ``background`` (e.g. a super-resolved copy) brought to that size."""
    h, w = bgr.shape[:2]
    size = (max(1, int(w * upscale)), max(1, int(h * upscale)))
    if background is not None:
        background = to_bgr8(background)[0]
        canvas = background if background.shape[1::-1] == size else \
            cv2.resize(background, size, interpolation=cv2.INTER_LANCZOS4)
    elif size != (w, h):
        canvas = cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4)
    else:
        canvas = bgr.copy()
    return np.ascontiguousarray(canvas), size[0] / w, size[1] / h


# -- the restorer ---------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    image: np.ndarray  # the restored photo, in the input's form (grey / BGR / BGRA, 8 bits), upscale x its size
    faces: list  # restored aligned faces (BGR, size x size), one per selected face
    inputs: list  # the aligned input faces, same order
    boxes: list  # detection boxes (x1, y1, x2, y2) in photo pixels (empty for --aligned input)
    affines: list  # 2x3 alignment transforms, photo px -> aligned face px (empty for --aligned input)
    notes: list  # what was done to fit the input (16-bit, grey, alpha, resized)
    timings: dict  # seconds per stage: detect, align, restore, paste


class FaceRestorer:
    """Detector + restorer network + paste-back; one object restores any number of photos.

    ``select``: ``all`` faces, the ``largest``, or the one nearest the ``center`` of the photo.
    ``min_face_size`` (box side) and ``min_eye_distance`` (px between the eyes) drop small detections.
    ``in_size``: the network's input size when it differs from its output size ``face_size`` (GLEAN
    super-resolution): faces are aligned at ``face_size`` and resized to ``in_size`` for the network."""

    def __init__(self, net, face_size=None, device='cpu', dtype=torch.float32, detector='yunet', weights_dir=None,
                 select='all', min_face_size=0.0, batch_size=4, score_threshold=None, in_size=None,
                 min_eye_distance=0.0, compile=False):
        self.device, self.dtype = torch.device(device), dtype
        self.net = net.to(self.device, dtype).eval()
        self.eager_net, self.compiled = self.net, False
        if compile:
            self.net, self.compiled = compile_network(self.net), True
        self.in_size, self.face_size = face_sizes({'in_size': in_size, 'out_size': face_size}, net)
        self.detector_name, self.weights_dir = detector, weights_dir
        self.detector_opts = {} if score_threshold is None else {'score_threshold': score_threshold}
        self._detector = None
        if select not in SELECTIONS:
            raise RestoreSetupError(f'--faces {select!r}: choose one of {", ".join(SELECTIONS)}')
        self.select, self.min_face_size, self.batch_size = select, float(min_face_size), max(1, int(batch_size))
        self.min_eye_distance = float(min_eye_distance)
        self.network_opt = None  # the network_g block, when built by from_files

    @classmethod
    def from_files(cls, model, opt=None, device='auto', dtype='auto', weights_dir=None, **kwargs):
        """Load ``model`` (a ``.pth`` or ``.safetensors`` checkpoint) into the network it describes (its
        metadata, else its tensor shapes), or into the ``network_g`` of the option file ``opt``. ``dtype``:
        ``auto`` (the device's native precision), ``float32``, ``bfloat16``, ``float16`` (CUDA);
        ``compile=True`` compiles the network (``torch.compile``; eager with a one-line note where it cannot)."""
        dev, torch_dtype = resolve_device(device, dtype)
        try:
            model_path = resolve_model_path(model, weights_dir)
        except ConfigError as err:
            raise RestoreSetupError(str(err)) from None
        net, network_opt = load_restorer(model_path, opt)
        in_size, out_size = face_sizes(network_opt, net)
        restorer = cls(net, face_size=out_size, in_size=in_size, device=dev, dtype=torch_dtype,
                       weights_dir=weights_dir, **kwargs)
        restorer.network_opt = network_opt  # the network_g block the file was built from
        return restorer

    @property
    def detector(self):
        if self._detector is None:
            self._detector = build_detector(self.detector_name, weights_dir=self.weights_dir, **self.detector_opts)
        return self._detector

    def select_faces(self, faces, shape=None, select=None):
        """The detections to restore (``shape``: the photo's, for ``select='center'``; ``select``: this call's
        choice, default the restorer's)."""
        select = select or self.select
        faces = [f for f in faces if min(f.width, f.height) >= self.min_face_size]
        if self.min_eye_distance > 0:
            faces = [f for f in faces if np.linalg.norm(np.subtract(f.landmarks[0], f.landmarks[1]))
                     >= self.min_eye_distance]
        if select == 'largest' and faces:
            faces = [max(faces, key=lambda f: f.width * f.height)]
        elif select == 'center' and faces and shape is not None:
            centre = np.array([shape[1], shape[0]]) / 2
            faces = [min(faces, key=lambda f: np.linalg.norm((np.asarray(f.box[:2]) + f.box[2:4]) / 2 - centre))]
        return faces

    @torch.no_grad()
    def restore_faces(self, crops):
        """Aligned BGR uint8 faces (face_size x face_size) -> restored BGR uint8 faces, in batches."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            if self.in_size != self.face_size:
                batch = [cv2.resize(c, (self.in_size, self.in_size), interpolation=cv2.INTER_AREA) for c in batch]
            batch = np.stack(batch)[..., ::-1]  # BGR -> RGB
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2)  # moved as uint8
            x = x.to(self.dtype, memory_format=torch.contiguous_format)  # one copy: NCHW in the network's dtype
            y = self.run_network(x.div_(127.5).sub_(1))  # already on the device in the dtype: no second copy
            y = ((y + 1) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            out += [np.ascontiguousarray(face[..., ::-1]) for face in y]
        return out

    @torch.no_grad()
    def run_network(self, x):
        """(b, 3, in_size, in_size) RGB in [-1, 1] -> the restored faces, float32 RGB in [-1, 1] (clamped)."""
        x = x.to(self.device, self.dtype)
        try:
            y = self.net(x)
        except Exception as err:  # compiling happens at the first call: a missing compiler, an unsupported op
            if not self.compiled or self.net is self.eager_net:
                raise
            print(f'note: --compile: the network cannot be compiled here ({short_reason(err)}); it runs eagerly',
                  file=sys.stderr, flush=True)
            self.net = self.eager_net
            y = self.net(x)
        y = first_output(y)
        return y.float().clamp_(-1, 1)

    def restore_image(self, img, aligned=False, upscale=1, background=None, require_face=True, select=None):
        """Restore every selected face of ``img`` (grey/BGR/BGRA, 8/16 bit): a :class:`RestoreResult`.

        ``aligned``: ``img`` is one already aligned face (resized to the restorer's size if needed).
        ``upscale``: the restored photo is ``upscale`` x the input's size, faces pasted at that scale onto
        ``background`` (e.g. a super-resolved copy of ``img``; resized to fit) or a Lanczos-resized copy.
        Raises :class:`RestoreError` for unsupported images, and when no face is found if ``require_face``
        (else the result holds no face and the photo as it would be without them)."""
        bgr, mode = to_bgr8(img)
        timings = dict.fromkeys(STAGES, 0.0)
        if aligned:
            return self._restore_aligned(bgr, mode, timings)
        t0 = time.perf_counter()
        faces = self.select_faces(self.detector.detect(bgr), bgr.shape, select)
        timings['detect'] = time.perf_counter() - t0
        if not faces and require_face:
            size_rule = f' of at least {self.min_face_size:g} px' if self.min_face_size else ''
            raise RestoreError(f'no face found{size_rule}')
        t0 = time.perf_counter()
        aligned_faces = [align_face(bgr, face.landmarks, self.face_size, border='reflect') for face in faces]
        crops, affines = [c for c, _ in aligned_faces], [a for _, a in aligned_faces]
        timings['align'] = time.perf_counter() - t0
        t0 = time.perf_counter()
        restored = self.restore_faces(crops)
        timings['restore'] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, sx, sy = output_canvas(bgr, upscale, background)
        for face, affine in zip(restored, affines):
            paste_back(out, face, affine if (sx, sy) == (1, 1) else scale_affine(affine, sx, sy))
        timings['paste'] = time.perf_counter() - t0
        if mode.alpha is not None and out.shape[:2] != mode.alpha.shape:
            mode.alpha = cv2.resize(mode.alpha, out.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return RestoreResult(from_bgr8(out, mode), restored, crops, [f.box for f in faces], affines, mode.notes,
                             timings)

    def _restore_aligned(self, bgr, mode, timings):
        h, w = bgr.shape[:2]
        crop = bgr
        if (h, w) != (self.face_size, self.face_size):
            mode.notes.append(f'aligned face {w}x{h} resized to {self.face_size} px for the restorer and back')
            interp = cv2.INTER_AREA if min(h, w) > self.face_size else cv2.INTER_CUBIC
            crop = cv2.resize(bgr, (self.face_size, self.face_size), interpolation=interp)
        t0 = time.perf_counter()
        face = self.restore_faces([crop])[0]
        timings['restore'] = time.perf_counter() - t0
        image = face if face.shape[:2] == (h, w) else cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC)
        return RestoreResult(from_bgr8(image, mode), [face], [crop], [], [], mode.notes, timings)


def side_by_side(left, right):
    """Comparison image ``left | right`` (same height; grey / alpha made BGR)."""
    def bgr(img):
        return to_bgr8(img)[0] if img.ndim == 2 or img.shape[2] != 3 else img
    left, right = bgr(left), bgr(right)
    if left.shape[0] != right.shape[0]:
        scale = left.shape[0] / right.shape[0]
        right = cv2.resize(right, (max(1, math.floor(right.shape[1] * scale)), left.shape[0]))
    return np.hstack([left, right])


def compile_network(net):
    """``torch.compile`` of an inference network (the first forward compiles it, minutes on a CPU); the network
    itself where this PyTorch cannot compile at all, with a one-line note."""
    try:
        import torch._dynamo as dynamo
        if not dynamo.is_dynamo_supported():
            raise RuntimeError('torch.compile is not supported on this Python/platform')
        return torch.compile(net, dynamic=False)
    except (ImportError, RuntimeError) as err:
        print(f'note: --compile: {short_reason(err)}; the network runs eagerly', file=sys.stderr, flush=True)
        return net
