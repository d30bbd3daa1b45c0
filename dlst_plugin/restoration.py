"""Restore the faces of whole photos with a Skip-Transformer (or any BasicSR restorer): the library
behind ``dlst-restore`` (SPEC.md section 1, steps 6-7).

Per photo: detect -> align each face to the FFHQ template at the restorer's size -> restore the
faces in batches -> paste each back through the inverse affine with a feathered square mask whose
feather is a fixed fraction of the face, so it scales with the face's size in the photo.

Use from Python::

    restorer = FaceRestorer.from_files('net_g_latest.pth', opt='options/test_dlst.yml')
    result = restorer.restore_image(cv2.imread('photo.jpg', cv2.IMREAD_UNCHANGED))
    result.image, result.faces  # restored photo (same mode as the input), restored aligned faces
"""
import copy
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from dlst_plugin.faces.alignment import align_face, inverse_affine, transform_points
from dlst_plugin.faces.detection import build_detector, resolve_weights_dir

DEFAULT_OPT = Path(__file__).resolve().parents[1] / 'options' / 'test_dlst.yml'  # its network_g is the default
CHECKPOINT_KEYS = ('params_ema', 'params')  # BasicSR net_g_*.pth: the EMA weights first
FEATHER_FRACTION = 1 / 20  # feather width / aligned face side (paste_face's default, GFP-GAN-like)
MIN_IMAGE_SIDE = 16  # below this no detector finds anything: say so instead
MAX_IMAGE_PIXELS = 20000 * 20000  # larger photos would need tens of GB as float: refuse clearly
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
STAGES = ('detect', 'align', 'restore', 'paste')


class RestoreError(ValueError):
    """One photo (or option) that cannot be restored; the message says why."""


# -- loading --------------------------------------------------------------------------------------

def read_network_options(opt_path=None):
    """``network_g`` of a BasicSR option file (default: options/test_dlst.yml of this checkout)."""
    import yaml
    path = Path(opt_path) if opt_path else DEFAULT_OPT
    if not path.is_file():
        raise RestoreError(f'option file {path} not found' + ('' if opt_path else
                           ': pass --opt X.yml whose network_g matches the checkpoint'))
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise RestoreError(f'option file {path} is not valid YAML: {err}') from err
    network = (opt or {}).get('network_g') if isinstance(opt, dict) else None
    if not isinstance(network, dict) or 'type' not in network:
        raise RestoreError(f'option file {path} has no network_g with a type')
    network = copy.deepcopy(network)
    if 'decoder_load_path' in network:
        network['decoder_load_path'] = None  # the restorer checkpoint holds the decoder
    return network


def resolve_model_path(model, weights_dir=None):
    """``model`` as given if it exists, else the file of that name in the weights folder."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    candidate = Path(resolve_weights_dir(weights_dir)) / path.name
    if candidate.is_file():
        return candidate
    raise RestoreError(f'checkpoint {model} not found (also looked for {candidate}; set --weights-dir '
                       f'or $DLST_WEIGHTS_DIR to the folder holding it)')


def load_state_dict(path):
    """The restorer's weights: ``params_ema``, else ``params``, else the file as a state dict."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # pickle / zip errors of all kinds: name the file
        raise RestoreError(f'cannot read checkpoint {path}: {err}') from err
    if not isinstance(ckpt, dict):
        raise RestoreError(f'checkpoint {path} holds a {type(ckpt).__name__}, not a state dict')
    state = next((ckpt[k] for k in CHECKPOINT_KEYS if isinstance(ckpt.get(k), dict)), ckpt)
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def build_restorer_network(network_opt, model_path):
    """Build ``network_g`` with BasicSR's registry and load the checkpoint strictly."""
    from basicsr.archs import build_network

    import dlst_plugin  # noqa: F401  (fills the registries)
    try:
        net = build_network(copy.deepcopy(network_opt))
    except (KeyError, TypeError, ValueError) as err:
        raise RestoreError(f'cannot build network_g {network_opt.get("type")!r}: {err}') from err
    state = load_state_dict(model_path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RestoreError(f'checkpoint {model_path} does not fit network_g {network_opt["type"]} '
                           f'(wrong --opt?): {str(err)[:600]}') from err
    return net.eval().requires_grad_(False)


def resolve_device(device='auto', dtype='float32'):
    """(torch.device, torch.dtype); float16 needs CUDA, bfloat16 works on both."""
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise RestoreError('--device cuda: no CUDA device is available (use --device cpu or auto)')
    if dtype not in DTYPES:
        raise RestoreError(f'--dtype {dtype!r}: choose one of {sorted(DTYPES)}')
    if dtype == 'float16' and device != 'cuda':
        raise RestoreError('--dtype float16 runs on CUDA only; on CPU use bfloat16 or float32')
    return torch.device(device), DTYPES[dtype]


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


# -- the restorer ---------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    image: np.ndarray  # the restored photo, in the input's form (grey / BGR / BGRA, 8 bits)
    faces: list  # restored aligned faces (BGR, size x size), one per selected face
    inputs: list  # the aligned input faces, same order
    boxes: list  # detection boxes (x1, y1, x2, y2) in photo pixels (empty for --aligned input)
    affines: list  # 2x3 alignment transforms, photo px -> aligned face px (empty for --aligned input)
    notes: list  # what was done to fit the input (16-bit, grey, alpha, resized)
    timings: dict  # seconds per stage: detect, align, restore, paste


class FaceRestorer:
    """Detector + restorer network + paste-back; one object restores any number of photos."""

    def __init__(self, net, face_size=None, device='cpu', dtype=torch.float32, detector='yunet', weights_dir=None,
                 select='all', min_face_size=0.0, batch_size=4, score_threshold=None):
        self.device, self.dtype = torch.device(device), dtype
        self.net = net.to(self.device, dtype).eval()
        self.face_size = int(face_size or getattr(net, 'out_size', 0) or 512)
        self.detector_name, self.weights_dir = detector, weights_dir
        self.detector_opts = {} if score_threshold is None else {'score_threshold': score_threshold}
        self._detector = None
        if select not in ('all', 'largest'):
            raise RestoreError(f'face selection {select!r}: choose all or largest')
        self.select, self.min_face_size, self.batch_size = select, float(min_face_size), max(1, int(batch_size))

    @classmethod
    def from_files(cls, model, opt=None, device='auto', dtype='float32', weights_dir=None, **kwargs):
        """Load ``model`` (a BasicSR checkpoint) into the ``network_g`` of ``opt``."""
        network_opt = read_network_options(opt)
        dev, torch_dtype = resolve_device(device, dtype)
        net = build_restorer_network(network_opt, resolve_model_path(model, weights_dir))
        return cls(net, face_size=network_opt.get('out_size'), device=dev, dtype=torch_dtype,
                   weights_dir=weights_dir, **kwargs)

    @property
    def detector(self):
        if self._detector is None:
            self._detector = build_detector(self.detector_name, weights_dir=self.weights_dir, **self.detector_opts)
        return self._detector

    def select_faces(self, faces):
        faces = [f for f in faces if min(f.width, f.height) >= self.min_face_size]
        if self.select == 'largest' and faces:
            faces = [max(faces, key=lambda f: f.width * f.height)]
        return faces

    @torch.no_grad()
    def restore_faces(self, crops):
        """Aligned BGR uint8 faces (size x size) -> restored BGR uint8 faces, in batches."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.stack(crops[start:start + self.batch_size])[..., ::-1]  # BGR -> RGB
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2)
            x = x.to(self.dtype).div_(127.5).sub_(1)
            y = self.net(x)
            y = y[0] if isinstance(y, (tuple, list)) else y  # GFP-GAN-style nets return (image, extras)
            y = ((y.float().clamp_(-1, 1) + 1) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            out += [np.ascontiguousarray(face[..., ::-1]) for face in y]
        return out

    def restore_image(self, img, aligned=False):
        """Restore every selected face of ``img`` (grey/BGR/BGRA, 8/16 bit): a :class:`RestoreResult`.

        ``aligned``: ``img`` is one already aligned face (resized to the restorer's size if needed).
        Raises :class:`RestoreError` for unsupported images and when no face is found."""
        bgr, mode = to_bgr8(img)
        timings = dict.fromkeys(STAGES, 0.0)
        if aligned:
            return self._restore_aligned(bgr, mode, timings)
        t0 = time.perf_counter()
        faces = self.select_faces(self.detector.detect(bgr))
        timings['detect'] = time.perf_counter() - t0
        if not faces:
            size_rule = f' of at least {self.min_face_size:g} px' if self.min_face_size else ''
            raise RestoreError(f'no face found{size_rule}')
        t0 = time.perf_counter()
        crops, affines = [], []
        for face in faces:
            crop, affine = align_face(bgr, face.landmarks, self.face_size, border='reflect')
            crops.append(crop)
            affines.append(affine)
        timings['align'] = time.perf_counter() - t0
        t0 = time.perf_counter()
        restored = self.restore_faces(crops)
        timings['restore'] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = bgr.copy()
        for face, affine in zip(restored, affines):
            paste_back(out, face, affine)
        timings['paste'] = time.perf_counter() - t0
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
