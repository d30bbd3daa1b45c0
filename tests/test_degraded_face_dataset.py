"""DegradedFaceDataset and FaceImageSource: folders, LMDB, bad files, seeding (docs/design.md#second-order-set)."""
import logging
import random
import shutil

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

import dlst_plugin  # noqa: F401
from dlst_plugin.data.degraded_face_dataset import DegradedFaceDataset
from dlst_plugin.data.face_image_source import BadImageError, FaceImageSource

# GFP-GAN's options/train_gfpgan_v1.yml datasets.train block (out_size shrunk for the test)
GFPGAN_TRAIN_BLOCK = {
    'name': 'FFHQ', 'type': 'DegradedFaceDataset', 'io_backend': {'type': 'disk'},
    'use_hflip': True, 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5], 'out_size': 32,
    'blur_kernel_size': 41, 'kernel_list': ['iso', 'aniso'], 'kernel_prob': [0.5, 0.5], 'blur_sigma': [0.1, 10],
    'downsample_range': [0.8, 8], 'noise_range': [0, 20], 'jpeg_range': [60, 100],
    'color_jitter_prob': 0.3, 'color_jitter_shift': 20, 'color_jitter_pt_prob': 0.3, 'gray_prob': 0.01,
    'crop_components': True, 'component_path': 'experiments/pretrained_models/FFHQ_eye_mouth_landmarks_512.pth',
    'eye_enlarge_ratio': 1.4, 'use_shuffle': True, 'num_worker_per_gpu': 6, 'batch_size_per_gpu': 3,
    'dataset_enlarge_ratio': 1, 'prefetch_mode': None, 'phase': 'train', 'scale': 1,
}


def dataset_opt(root, **changes):
    opt = {'dataroot_gt': str(root), 'io_backend': {'type': 'disk'}, 'out_size': 32, 'mean': [0.5] * 3,
           'std': [0.5] * 3, 'seed': 0}
    opt.update(changes)
    return opt


def make_lmdb(faces_dir, lmdb_path):
    names = sorted(p.name for p in faces_dir.glob('*.png'))
    make_lmdb_from_imgs(str(faces_dir), str(lmdb_path), names, [n[:-4] for n in names], n_thread=1)
    return names


@pytest.fixture
def warnings_of_basicsr():
    """Messages BasicSR's root logger (which does not propagate) warns about."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def assert_sample(sample, size=32):
    assert set(sample) == {'lq', 'gt', 'lq_path', 'gt_path'}
    for key in ('lq', 'gt'):
        t = sample[key]
        assert t.shape == (3, size, size) and t.dtype == torch.float32
        assert -1 <= t.min() and t.max() <= 1  # mean 0.5, std 0.5
    assert sample['lq_path'] == sample['gt_path']


def test_folder_samples_have_basicsr_keys_shapes_and_ranges(faces_dir):
    ds = DegradedFaceDataset(dataset_opt(faces_dir))
    assert len(ds) == 12
    sample = ds[3]
    assert_sample(sample)
    assert sample['gt_path'].endswith('face_00_0003.png')
    assert sample['gt'].std() > 0.05 and not torch.equal(sample['lq'], sample['gt'])


def test_gt_is_the_image_in_rgb_normalised(faces_dir):
    import cv2
    ds = DegradedFaceDataset(dataset_opt(faces_dir, out_size=64, use_hflip=False))
    bgr = cv2.imread(str(faces_dir / 'face_00_0000.png')).astype(np.float32) / 255
    expected = torch.from_numpy(bgr[..., ::-1].transpose(2, 0, 1).copy()) * 2 - 1
    assert torch.allclose(ds[0]['gt'], expected, atol=1e-6)


def test_folder_is_scanned_recursively_for_images_only(faces_dir):
    (faces_dir / 'sub').mkdir()
    shutil.copy(faces_dir / 'face_00_0000.png', faces_dir / 'sub' / 'extra.PNG')
    (faces_dir / 'notes.txt').write_text('not an image')
    source = FaceImageSource(faces_dir)
    assert len(source) == 13 and 'sub/extra.PNG' in source.keys and 'notes.txt' not in source.keys


def test_lmdb_gives_the_same_gt_as_the_folder(faces_dir, tmp_path):
    make_lmdb(faces_dir, tmp_path / 'faces.lmdb')
    opt = dataset_opt(faces_dir, use_hflip=False, gray_prob=None)
    from_lmdb = DegradedFaceDataset(dict(opt, dataroot_gt=str(tmp_path / 'faces.lmdb'), io_backend={'type': 'lmdb'}))
    from_folder = DegradedFaceDataset(opt)
    assert len(from_lmdb) == 12 and from_lmdb.source.keys[0] == 'face_00_0000'
    a, b = from_lmdb[5], from_folder[5]
    assert_sample(a)
    assert a['gt_path'] == 'face_00_0005' and torch.equal(a['gt'], b['gt'])


def test_lmdb_is_opened_in_each_dataloader_worker(faces_dir, tmp_path):
    make_lmdb(faces_dir, tmp_path / 'faces.lmdb')
    ds = DegradedFaceDataset(dataset_opt(tmp_path / 'faces.lmdb', io_backend={'type': 'lmdb'}))
    ds[0]  # opens the LMDB in this process first: workers must not reuse that handle
    batches = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert len(batches) == 3 and all(b['lq'].shape == (4, 3, 32, 32) for b in batches)
    assert [key for b in batches for key in b['gt_path']] == ds.source.keys  # each record read, in order


def run_loader(ds, torch_seed):
    torch.manual_seed(torch_seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    return torch.cat([b['lq'] for b in loader])


def test_loader_runs_repeat_with_the_same_seeds_and_differ_otherwise(faces_dir):
    ds = DegradedFaceDataset(dataset_opt(faces_dir, use_hflip=False))
    first, again, other_epoch = run_loader(ds, 1), run_loader(ds, 1), run_loader(ds, 2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other_epoch)
    assert len({tuple(x.flatten()[:64].tolist()) for x in first}) == len(first)  # every sample its own draw


def test_same_index_read_twice_draws_a_new_degradation(faces_dir):
    ds = DegradedFaceDataset(dataset_opt(faces_dir, use_hflip=False))
    assert not torch.equal(ds[0]['lq'], ds[0]['lq'])
    fresh_a = DegradedFaceDataset(dataset_opt(faces_dir, use_hflip=False, seed=4))[2]['lq']
    fresh_b = DegradedFaceDataset(dataset_opt(faces_dir, use_hflip=False, seed=4))[2]['lq']
    assert torch.equal(fresh_a, fresh_b)


def test_corrupt_image_error_names_the_file(faces_dir):
    bad = faces_dir / 'face_00_0001.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
    ds = DegradedFaceDataset(dataset_opt(faces_dir))
    with pytest.raises(BadImageError, match='face_00_0001.png'):
        ds[1]


def test_bad_image_in_a_dataloader_worker_names_the_file(faces_dir):
    (faces_dir / 'face_00_0004.png').write_bytes(b'')
    loader = torch.utils.data.DataLoader(DegradedFaceDataset(dataset_opt(faces_dir)), batch_size=12, num_workers=1)
    with pytest.raises(BadImageError, match='face_00_0004.png'):
        next(iter(loader))


def test_deleted_image_error_names_the_file(faces_dir):
    ds = DegradedFaceDataset(dataset_opt(faces_dir))
    (faces_dir / 'face_00_0002.png').unlink()
    with pytest.raises(BadImageError, match='face_00_0002.png'):
        ds[2]


def test_missing_lmdb_key_error_names_the_key(faces_dir, tmp_path):
    lmdb_path = tmp_path / 'faces.lmdb'
    make_lmdb(faces_dir, lmdb_path)
    with open(lmdb_path / 'meta_info.txt', 'a') as f:
        f.write('ghost_face.png (64,64,3) 1\n')
    with pytest.raises(ValueError, match='ghost_face'):  # at start-up (keys checked against data.mdb), not mid-run
        DegradedFaceDataset(dataset_opt(lmdb_path, io_backend={'type': 'lmdb'}))


def test_skip_bad_images_warns_and_returns_another_sample(faces_dir, warnings_of_basicsr):
    (faces_dir / 'face_00_0001.png').write_bytes(b'garbage')
    ds = DegradedFaceDataset(dataset_opt(faces_dir, skip_bad_images=True))
    sample = ds[1]
    assert_sample(sample)
    assert sample['gt_path'].endswith('face_00_0002.png')
    assert any('face_00_0001.png' in r.getMessage() for r in warnings_of_basicsr)


@pytest.mark.parametrize('make', ['missing', 'empty', 'no_lmdb_meta'])
def test_missing_or_empty_dataroot_error_names_option_and_path(tmp_path, make):
    root = tmp_path / 'nowhere'
    backend = 'disk'
    if make == 'empty':
        root.mkdir()
    if make == 'no_lmdb_meta':
        root.mkdir()
        backend = 'lmdb'
    with pytest.raises(ValueError, match='dataroot_gt') as err:
        DegradedFaceDataset(dataset_opt(root, io_backend={'type': backend}))
    assert str(root) in str(err.value)


def test_unknown_option_error_names_it(faces_dir):
    with pytest.raises(ValueError, match='out_szie'):
        DegradedFaceDataset(dataset_opt(faces_dir, out_szie=32))


def test_gfpgan_train_block_builds_through_the_registry(faces_dir, tmp_path):
    from table1_cells import component_file
    landmarks = component_file(tmp_path / 'landmarks.pth', 12, 64)  # in GFP-GAN's landmark-file format
    ds = build_dataset(dict(GFPGAN_TRAIN_BLOCK, dataroot_gt=str(faces_dir), component_path=str(landmarks)))
    assert isinstance(ds, DegradedFaceDataset)
    assert ds.degradation.blur_sigma == (0.1, 10) and ds.degradation.color_jitter_pt_prob == 0.3
    sample = ds[0]
    assert_sample({k: v for k, v in sample.items() if not k.startswith('loc_')})
    assert {k: tuple(v.shape) for k, v in sample.items() if k.startswith('loc_')} == \
        {'loc_left_eye': (4, ), 'loc_right_eye': (4, ), 'loc_mouth': (4, )}  # crop_components: GFPGANModel's boxes


def test_matches_gfpgan_dataset_on_a_near_fixed_recipe(faces_dir, monkeypatch):
    """With every range pinned, GFP-GAN's FFHQDegradationDataset and ours give the same LQ."""
    pytest.importorskip('gfpgan')
    from basicsr.data import degradations
    from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset

    # OpenCV >= 4.12 rejects GFP-GAN's float JPEG quality: cast it (docs/design.md#toolchain)
    monkeypatch.setattr(degradations, 'random_add_jpg_compression',
                        lambda img, q: degradations.add_jpg_compression(img, int(np.random.uniform(*q))))
    pinned = {'blur_kernel_size': 41, 'kernel_list': ['iso'], 'kernel_prob': [1], 'blur_sigma': [2.0, 2.00001],
              'downsample_range': [1.99999, 2.0], 'noise_range': [0, 1e-6], 'jpeg_range': [80, 80.5],
              'color_jitter_prob': None, 'color_jitter_pt_prob': None, 'gray_prob': None, 'use_hflip': False,
              'mean': [0.5] * 3, 'std': [0.5] * 3, 'out_size': 64, 'io_backend': {'type': 'disk'},
              'dataroot_gt': str(faces_dir)}
    theirs = FFHQDegradationDataset(dict(pinned))
    ours = DegradedFaceDataset(dict(pinned, seed=0))
    for i in range(3):
        a = theirs[i]  # GFP-GAN lists the folder unsorted
        b = ours[[str(faces_dir / k) for k in ours.source.keys].index(a['gt_path'])]
        assert torch.equal(a['gt'], b['gt'])
        diff = (a['lq'] - b['lq']).abs() / 2 * 255  # in 8-bit levels
        assert diff.mean() < 0.1 and diff.max() <= 3


def test_degradation_statistics_match_gfpgan_dataset(faces_dir, monkeypatch):
    """Same recipe, default ranges: the mean LQ error and its spread agree with GFP-GAN's."""
    pytest.importorskip('gfpgan')
    from basicsr.data import degradations
    from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset

    monkeypatch.setattr(degradations, 'random_add_jpg_compression',
                        lambda img, q: degradations.add_jpg_compression(img, int(np.random.uniform(*q))))
    opt = dict(GFPGAN_TRAIN_BLOCK, dataroot_gt=str(faces_dir), out_size=64, crop_components=False)
    theirs = FFHQDegradationDataset({k: v for k, v in opt.items() if k != 'type'})
    ours = DegradedFaceDataset(dict(opt, seed=0))
    random.seed(0)  # BasicSR's kernel choice and flips draw from Python's random: unseeded, the spread varied by 20 %
    np.random.seed(0)
    torch.manual_seed(0)

    def errors(ds):
        return np.array([(s['lq'] - s['gt']).abs().mean().item() for s in (ds[i % len(ds)] for i in range(120))])

    e_theirs, e_ours = errors(theirs), errors(ours)
    assert abs(e_ours.mean() - e_theirs.mean()) < 0.1 * e_theirs.mean()
    assert abs(e_ours.std() - e_theirs.std()) < 0.2 * e_theirs.std()
