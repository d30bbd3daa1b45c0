"""The demo's data: photo variants, option files filled for a run, face regions for scoring."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml

from dlst_plugin.errors import InputError
from dlst_plugin.faces.harvest import FACES_CSV, read_csv_rows
from dlst_plugin.fileio.atomic import atomic_write_image, atomic_write_text
from dlst_plugin.fileio.images import list_images
from dlst_plugin.options.file import read_option_file, set_dotted

# the in-the-wild photos: each face is made this wide (detector box, px), the size of real LQ faces in
# crowd photos (paper 4.1: <= 40 px); aligned to the FFHQ template a face fills about 2x its box, so the
# restorer's 64 px faces are pasted back at 0.6-1x: never enlarged, so never blurrier for being enlarged
WILD_FACE_WIDTH = (20.0, 30.0)
HQ_SCALE = (0.8, 1.2)  # the HQ photos: mild rescaling only (aligned faces come out larger than 64 px)
REGION_SCALE = 2.0  # face region scored by NIQE: a square 2x the detector box, about what the restorer pastes


class DemoError(InputError):
    """A demo stage that cannot go on; the message names the step, its log or the missing input (exit 1)."""


def source_photos(folder):
    sources = [Path(path) for _, path in list_images(folder, recursive=False)]
    if not sources:
        raise DemoError(f'no images in {folder}')
    return sources


def largest_face_width(img):
    """Width of the largest face YuNet finds in ``img`` (None: none found)."""
    from dlst_plugin.faces.detection import detect_faces
    faces = detect_faces(img)
    return max((f.width for f in faces), default=None)


def warp_variant(img, scale, angle, rng):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += np.array([w, h]) * (scale - 1) / 2  # keep the scaled photo centred
    size = (max(16, int(w * scale)), max(16, int(h * scale)))
    var = cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return var[:, ::-1] if rng.random() < 0.5 else var


def make_photos(photos, out_dir, variants, seed, degrade):
    """Photo variants: random scale, small rotation and flip. ``degrade``: faces shrunk to
    ``WILD_FACE_WIDTH`` and the demo's hidden 'real-world' process (blur, noise, strong JPEG) that the
    degrader must learn from the faces alone."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in source_photos(photos):
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if img is None:
            raise DemoError(f'cannot read {src}')
        face = largest_face_width(img) if degrade else None
        for k in range(variants):
            if degrade:
                scale = rng.uniform(*WILD_FACE_WIDTH) / face if face else rng.uniform(0.2, 0.35)
            else:
                scale = rng.uniform(*HQ_SCALE)
            var = warp_variant(img, min(scale, 1.0) if degrade else scale, rng.uniform(-8, 8), rng)
            name = out_dir / f'{src.stem}_{k:02d}'
            if degrade:
                var = cv2.GaussianBlur(var, (0, 0), rng.uniform(0.6, 1.2))
                var = np.clip(var + rng.normal(0, rng.uniform(3, 8), var.shape), 0, 255).astype(np.uint8)
                atomic_write_image(f'{name}.jpg', var, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 45))])
            else:
                atomic_write_image(f'{name}.png', var)


def read_faces_csv(folder):
    """The rows of a harvest's ``faces.csv`` in ``folder`` ([] when it has none)."""
    return read_csv_rows(Path(folder) / FACES_CSV)


def photos_with_faces(out):
    """The in-the-wild photos the collection stage found a face in (a hard profile may have none)."""
    sources = sorted({row['source'] for row in read_faces_csv(out / 'real_lq')})
    if not sources:
        raise DemoError(f'no face was found in {out / "wild_photos"}')
    return [out / 'wild_photos' / name for name in sources]


def fill_options(template, dest, paths, updates):
    """Copy a demo option file: its FILLED_BY_DEMO data roots from ``paths`` ({'phase:key' or 'key': path}),
    then ``updates`` ({'a:b:c': value}) set."""
    opt = read_option_file(template)
    for phase, ds in opt['datasets'].items():
        for key in list(ds):
            if ds[key] == 'FILLED_BY_DEMO':
                ds[key] = str(paths[f'{phase}:{key}'] if f'{phase}:{key}' in paths else paths[key])
    for dotted, value in updates.items():
        set_dotted(opt, dotted, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, yaml.safe_dump(opt, sort_keys=False))
    return dest


def training_updates(iters, size, val=True):
    """Iteration counts and face size of a demo training option file."""
    updates = {'train:total_iter': iters, 'logger:save_checkpoint_freq': iters, 'network_g:out_size': size,
               'network_d:out_size': size}
    if val:
        updates['val:val_freq'] = iters
    return updates


def face_region(row, shape, scale=REGION_SCALE):
    """(x0, y0, x1, y1): a square ``scale`` x the detector box of a faces.csv row, inside the photo."""
    x1, y1, x2, y2 = (float(row[k]) for k in ('x1', 'y1', 'x2', 'y2'))
    side = scale * max(x2 - x1, y2 - y1)
    side = min(side, shape[0], shape[1])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0 = int(round(min(max(cx - side / 2, 0), shape[1] - side)))
    y0 = int(round(min(max(cy - side / 2, 0), shape[0] - side)))
    return x0, y0, x0 + int(side), y0 + int(side)


def write_face_regions(out):
    """The same face region cut from each in-the-wild photo and from its restored version, into
    ``evaluation_regions/input`` and ``/restored`` (one file per photo: its largest face)."""
    largest = {}
    for row in read_faces_csv(out / 'real_lq'):
        size = float(row['width']) * float(row['height'])
        if row['source'] not in largest or size > largest[row['source']][0]:
            largest[row['source']] = (size, row)
    shutil.rmtree(out / 'evaluation_regions', ignore_errors=True)  # nothing left from an earlier run
    dirs = {k: out / 'evaluation_regions' / k for k in ('input', 'restored')}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    for source, (_, row) in sorted(largest.items()):
        stem = Path(source).stem
        restored = out / 'restored' / 'restored_imgs' / f'{stem}.png'
        if not restored.is_file():
            continue
        photo = cv2.imread(str(out / 'wild_photos' / source), cv2.IMREAD_COLOR)
        x0, y0, x1, y1 = face_region(row, photo.shape)
        atomic_write_image(dirs['input'] / f'{stem}.png', photo[y0:y1, x0:x1])
        atomic_write_image(dirs['restored'] / f'{stem}.png', cv2.imread(str(restored), cv2.IMREAD_COLOR)[y0:y1, x0:x1])
    return dirs
