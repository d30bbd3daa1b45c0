"""Eye and mouth boxes for GFPGANModel (docs/table1.md#component-boxes): the template's, GFP-GAN's landmark
file, and the ``loc_*`` keys DegradedFaceDataset and SecondOrderFaceDataset add to their samples."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from helpers import face_crops

import dlst_plugin  # noqa: F401
from dlst_plugin.data.face_components import (
    component_locations,
    flip_boxes,
    read_component_file,
    template_boxes,
)
from dlst_plugin.errors import ConfigError
from dlst_plugin.faces.alignment import face_template

SIZE = 32
LOC_KEYS = ('loc_left_eye', 'loc_right_eye', 'loc_mouth')


def same_boxes(found, expected):
    """The same parts, each box equal within float tolerance (pytest.approx compares no nested dicts)."""
    return found.keys() == expected.keys() and all(list(found[k]) == pytest.approx(list(expected[k])) for k in found)


def gfpgan_component_file(path, count, size):
    """A landmark file as GFP-GAN's scripts/parse_landmark.py writes one: np.float64 values, 8-digit keys."""
    boxes = {f'{i:08d}': {part: [np.float64(v + i) for v in box] for part, box in template_boxes(size).items()}
             for i in range(count)}
    torch.save(boxes, path)
    return path


def locs(boxes, ratio=1.4):
    return {k: v.tolist() for k, v in component_locations(boxes, ratio).items()}


def test_template_boxes_sit_on_the_template_points_with_gfpgans_crop_sizes():
    points = face_template(512)
    loc = locs(template_boxes(512))
    left = loc['loc_left_eye']
    centre = ((left[0] + left[2] - 1) / 2, (left[1] + left[3] - 1) / 2)
    assert centre == pytest.approx(tuple(points[0]), abs=1e-4)
    assert 79 < left[2] - left[0] + 1 < 82  # GFP-GAN resizes eye crops to 80 px at 512
    mouth = loc['loc_mouth']
    assert abs((mouth[0] + mouth[2] - 1) / 2 - (points[3, 0] + points[4, 0]) / 2) < 1e-4
    assert abs((mouth[2] - mouth[0] + 1) - np.linalg.norm(points[4] - points[3])) < 1e-4  # corner to corner


def test_flip_mirrors_the_boxes_and_swaps_the_eyes():
    boxes = template_boxes(512)
    flipped = flip_boxes(boxes, 512)
    assert flipped['left_eye'][0] == pytest.approx(512 - boxes['right_eye'][0])
    assert flipped['right_eye'][0] == pytest.approx(512 - boxes['left_eye'][0])
    assert flipped['mouth'][1] == boxes['mouth'][1]
    assert same_boxes(flip_boxes(flipped, 512), boxes)


def test_gfpgan_landmark_file_reads_safely(tmp_path):
    path = gfpgan_component_file(tmp_path / 'landmarks.pth', 3, 512)
    boxes = read_component_file(path)
    assert sorted(boxes) == [0, 1, 2]
    assert boxes[2]['mouth'] == pytest.approx([v + 2 for v in template_boxes(512)['mouth']])
    torch.save({'00000000': {'left_eye': [1.0, 2.0]}}, tmp_path / 'bad.pth')
    with pytest.raises(ConfigError, match="entry '00000000' is not GFP-GAN's"):
        read_component_file(tmp_path / 'bad.pth')


def _dataset(faces, **changes):
    opt = {'name': 'd', 'type': 'DegradedFaceDataset', 'phase': 'train', 'dataroot_gt': str(faces),
           'io_backend': {'type': 'disk'}, 'out_size': SIZE, 'mean': [0.5] * 3, 'std': [0.5] * 3, 'seed': 0,
           'crop_components': True, 'eye_enlarge_ratio': 1.4, **changes}
    return build_dataset(opt)


def _stored(path, size=SIZE):
    img = cv2.resize(cv2.imread(str(path)), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy()) * 2 - 1


def test_degraded_faces_carry_template_boxes_that_flip_with_the_face(tmp_path):
    faces = face_crops(tmp_path / 'faces', size=SIZE, count=6, seed=0)
    dataset = _dataset(tmp_path / 'faces')
    plain, mirrored = locs(template_boxes(SIZE)), locs(flip_boxes(template_boxes(SIZE), SIZE))
    seen = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        stored = _stored(faces[[str(p) for p in faces].index(sample['gt_path'])])
        flipped = not torch.allclose(sample['gt'], stored, atol=1e-5)
        assert not flipped or torch.allclose(sample['gt'], stored.flip(-1), atol=1e-5)
        assert same_boxes({k: sample[k].tolist() for k in LOC_KEYS}, mirrored if flipped else plain)
        seen.add(flipped)
    assert seen == {True, False}  # both cases were checked


def test_boxes_of_a_landmark_file_are_scaled_to_out_size(tmp_path):
    face_crops(tmp_path / 'faces', size=64, count=3, seed=0)  # stored at 64 px, returned at 32
    path = gfpgan_component_file(tmp_path / 'landmarks.pth', 3, 64)
    dataset = _dataset(tmp_path / 'faces', component_path=str(path), use_hflip=False)
    boxes = read_component_file(path)
    for i in range(3):
        expected = locs({part: [v / 2 for v in box] for part, box in boxes[i].items()})
        assert same_boxes({k: dataset[i][k].tolist() for k in LOC_KEYS}, expected)


def test_a_landmark_file_missing_faces_is_refused_at_start(tmp_path):
    face_crops(tmp_path / 'faces', size=SIZE, count=3, seed=0)
    path = gfpgan_component_file(tmp_path / 'landmarks.pth', 2, SIZE)
    with pytest.raises(ConfigError, match='no entry for 1 of the 3 faces'):
        _dataset(tmp_path / 'faces', component_path=str(path))


def test_without_crop_components_samples_have_no_boxes(tmp_path):
    face_crops(tmp_path / 'faces', size=SIZE, count=2, seed=0)
    assert not set(LOC_KEYS) & set(_dataset(tmp_path / 'faces', crop_components=False)[0])


@pytest.mark.parametrize('mode', ['second_order', 'method1'])
def test_second_order_samples_carry_boxes_of_the_template_or_the_ffhq_file(tmp_path, mode):
    clean = face_crops(tmp_path / 'clean', size=SIZE, count=3, seed=1)
    (tmp_path / 'degraded').mkdir()
    for path in clean:
        cv2.imwrite(str(tmp_path / 'degraded' / path.name), cv2.GaussianBlur(cv2.imread(str(path)), (5, 5), 1.5))
    face_crops(tmp_path / 'ffhq', size=SIZE, count=3, seed=2)
    landmarks = gfpgan_component_file(tmp_path / 'landmarks.pth', 3, SIZE)
    dataset = build_dataset({
        'name': 'so', 'type': 'SecondOrderFaceDataset', 'phase': 'train', 'mode': mode,
        'dataroot_clean': str(tmp_path / 'clean'), 'dataroot_degraded': str(tmp_path / 'degraded'),
        'dataroot_hq': str(tmp_path / 'ffhq'), 'out_size': SIZE, 'mean': [0.5] * 3, 'std': [0.5] * 3, 'seed': 0,
        'crop_components': True, 'component_path': str(landmarks), 'eye_enlarge_ratio': 1.4})
    template = [locs(template_boxes(SIZE)), locs(flip_boxes(template_boxes(SIZE), SIZE))]
    from_file = [locs(b) for i in range(3) for b in (read_component_file(landmarks)[i],
                                                      flip_boxes(read_component_file(landmarks)[i], SIZE))]
    sources = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        found = {k: sample[k].tolist() for k in LOC_KEYS}
        expected = from_file if sample['source'] == 'ffhq' else template
        assert any(same_boxes(found, e) for e in expected), sample['source']
        sources.add(sample['source'])
    assert sources == ({'generated', 'ffhq'} if mode == 'second_order' else {'clean_gfpgan', 'green'})


def test_template_boxes_are_computed_once_per_size_and_read_only():
    template_boxes.cache_clear()
    first = template_boxes(SIZE)
    assert template_boxes(SIZE) is first and template_boxes.cache_info().misses == 1
    with pytest.raises(TypeError):
        first['mouth'] = (0.0, 0.0, 1.0)  # a caller cannot change the boxes every other sample shares
    flip_boxes(first, SIZE)
    assert template_boxes(SIZE)['left_eye'][0] < SIZE / 2  # flipping makes a new mapping
