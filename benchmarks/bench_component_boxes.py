"""How far the alignment template's eye and mouth boxes land from the boxes of detected landmarks.

The GFP-GAN rows of Table 1 hand GFPGANModel eye and mouth boxes; for generated and second-order
faces they are the boxes of the five-point FFHQ template (dlst_plugin/data/face_components.py). This
script measures, on aligned faces, how far those fixed boxes are from the boxes the same rule builds
from YuNet's five landmarks of each face:

    python benchmarks/bench_component_boxes.py        # the shipped photos, aligned after random similarity
                                                      # jitters, and scikit-image's LFW faces
    python benchmarks/bench_component_boxes.py --aligned DIR    # aligned faces, e.g. samples of a prior

Per part: centre offset (px at 512), half-side ratio, and IoU of the boxes GFPGANModel crops (eyes
enlarged 1.4x, as GFP-GAN's recipe). For the jittered photos also YuNet's own repeatability: the five
points found on the aligned face vs the points found on the jittered photo, mapped through the alignment
(two detections of one face), and the alignment's fit residual (mapped points vs template).
docs/table1.md quotes the figures.
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlst_plugin.data.face_components import PARTS, box_corners, boxes_from_points, template_boxes  # noqa: E402
from dlst_plugin.faces.alignment import align_face, face_template, transform_points  # noqa: E402
from dlst_plugin.faces.detection import detect_faces  # noqa: E402

SIZE = 512
PHOTOS = ('astronaut.png', 'grace_hopper.jpg')


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def compare(aligned):
    """{part: (offset px, half ratio, IoU)} for one aligned 512 px face, or None when YuNet finds no face."""
    faces = detect_faces(aligned)
    if not faces:
        return None
    detected = boxes_from_points(faces[0].landmarks, SIZE)
    template = template_boxes(SIZE)
    out = {}
    for part in PARTS:
        enlarge = 1.4 if 'eye' in part else 1.0
        d, t = detected[part], template[part]
        out[part] = (float(np.hypot(d[0] - t[0], d[1] - t[1])), d[2] / t[2],
                     iou(box_corners(d, enlarge), box_corners(t, enlarge)))
    return out


def jitter(img, rng, centre):
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.8, 1.25)
    matrix = cv2.getRotationMatrix2D(tuple(float(c) for c in centre), angle, scale)
    matrix[:, 2] += rng.uniform(-8, 8, 2)
    return cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


REPEATABILITY = []  # (per point: detected on the aligned face vs mapped, mapped vs template), px at 512


def photo_faces(jitters, rng):
    """Aligned 512 px faces of the shipped photos, each aligned again after ``jitters`` random
    rotations (+-15 deg), scalings (0.8-1.25) and shifts (+-8 px)."""
    for name in PHOTOS:
        img = cv2.imread(str(REPO / 'datasets' / 'samples' / 'faces' / name))
        face = detect_faces(img)[0]
        for _ in range(jitters):
            moved = jitter(img, rng, face.landmarks.mean(0))
            found = detect_faces(moved)
            if found:
                aligned, affine = align_face(moved, found[0].landmarks, SIZE)
                mapped = transform_points(found[0].landmarks, affine)
                again = detect_faces(aligned)
                if again:
                    REPEATABILITY.append((np.linalg.norm(again[0].landmarks - mapped, axis=1),
                                          np.linalg.norm(mapped - face_template(SIZE), axis=1)))
                yield f'{name}', aligned


def lfw_faces(upscale=200):
    """scikit-image's LFW subset (25 px grey faces) enlarged, detected and aligned to 512 px."""
    try:
        from skimage import data
    except ImportError:
        return
    for img in data.lfw_subset()[:100]:
        img = cv2.resize((img * 255).astype(np.uint8), (upscale, upscale), interpolation=cv2.INTER_CUBIC)
        img = cv2.cvtColor(cv2.copyMakeBorder(img, upscale // 2, upscale // 2, upscale // 2, upscale // 2,
                                              cv2.BORDER_REFLECT_101), cv2.COLOR_GRAY2BGR)
        found = detect_faces(img)
        if found:
            yield 'lfw', align_face(img, found[0].landmarks, SIZE)[0]


def aligned_folder(folder):
    for path in sorted(Path(folder).iterdir()):
        img = cv2.imread(str(path))
        if img is not None:
            yield path.name, cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def summarise(title, results):
    if not results:
        print(f'{title}: no face detected')
        return
    print(f'{title}: {len(results)} faces (offsets in px at {SIZE}; IoU of the boxes GFPGANModel crops)')
    print('  part       offset mean/p95/max   half-side ratio mean [min, max]   IoU mean/min')
    for part in PARTS:
        off, ratio, overlap = (np.array([r[part][k] for r in results]) for k in range(3))
        print(f'  {part:9s}  {off.mean():5.1f} /{np.percentile(off, 95):5.1f} /{off.max():5.1f}      '
              f'{ratio.mean():.2f} [{ratio.min():.2f}, {ratio.max():.2f}]                  '
              f'{overlap.mean():.2f} / {overlap.min():.2f}')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--aligned', help='folder of aligned faces to measure instead of the built-in sets')
    p.add_argument('--jitters', type=int, default=20, help='jittered alignments per shipped photo')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    sets = {}
    if args.aligned:
        sets[args.aligned] = aligned_folder(args.aligned)
    else:
        sets['shipped photos, jittered and aligned'] = photo_faces(args.jitters, np.random.default_rng(args.seed))
        sets['LFW subset (25 px, enlarged), aligned'] = lfw_faces()
    for title, faces in sets.items():
        results = [r for r in (compare(face) for _, face in faces) if r is not None]
        summarise(title, results)
        if REPEATABILITY:
            redetect, residual = (np.array([r[k] for r in REPEATABILITY]) for k in range(2))
            print(f'  YuNet run twice on one face (aligned vs jittered photo), per point: {redetect.mean():.1f} px '
                  f'mean, {np.percentile(redetect, 95):.1f} p95; alignment fit residual: {residual.mean():.1f} px mean')
            REPEATABILITY.clear()


if __name__ == '__main__':
    main()
