"""UnpairedFaceDataset: real LQ faces from a folder or an LMDB, resized, flipped, bad files named."""
import pytest
import torch
from basicsr.data import build_dataset

import dlst_plugin  # noqa: F401
from dlst_plugin.data.face_image_source import BadImageError
from dlst_plugin.fileio.lmdb import LmdbWriter


def opt(root, **changes):
    base = {'name': 'lq', 'type': 'UnpairedFaceDataset', 'phase': 'train', 'dataroot_lq': str(root),
            'io_backend': {'type': 'disk'}, 'out_size': 32}
    base.update(changes)
    return base


def test_folder_faces_are_resized_to_the_generator_range(faces_dir):
    dataset = build_dataset(opt(faces_dir, use_hflip=False))
    assert len(dataset) == 12
    sample = dataset[0]
    assert set(sample) == {'lq', 'lq_path'}
    assert sample['lq'].shape == (3, 32, 32) and sample['lq'].dtype == torch.float32
    assert sample['lq'].min() >= -1 and sample['lq'].max() <= 1 and sample['lq'].min() < 0  # [-1, 1]
    assert sample['lq_path'].endswith('face_00_0000.png')


def test_lmdb_gives_the_same_faces_as_the_folder(faces_dir, tmp_path):
    with LmdbWriter(tmp_path / 'lq.lmdb') as writer:
        for path in sorted(faces_dir.glob('*.png')):
            writer.put(path.stem, path.read_bytes(), (64, 64, 3))
    from_lmdb = build_dataset(opt(tmp_path / 'lq.lmdb', io_backend={'type': 'lmdb'}, use_hflip=False))
    from_disk = build_dataset(opt(faces_dir, use_hflip=False))
    assert from_lmdb[3]['lq_path'] == 'face_00_0003'
    assert torch.equal(from_lmdb[3]['lq'], from_disk[3]['lq'])


def test_hflip_flips_about_half_the_samples(faces_dir):
    plain = build_dataset(opt(faces_dir, use_hflip=False))[0]['lq']
    flipping = build_dataset(opt(faces_dir, use_hflip=True))
    results = [flipping[0]['lq'] for _ in range(40)]
    flipped = sum(torch.equal(r, plain.flip(-1)) for r in results)
    assert sum(torch.equal(r, plain) for r in results) + flipped == 40
    assert 5 <= flipped <= 35


def test_a_corrupt_file_is_named_or_skipped(faces_dir):
    (faces_dir / 'face_00_0001.png').write_bytes(b'not a png')
    with pytest.raises(BadImageError, match='face_00_0001.png'):
        build_dataset(opt(faces_dir))[1]
    sample = build_dataset(opt(faces_dir, skip_bad_images=True))[1]
    assert sample['lq_path'].endswith('face_00_0002.png')


@pytest.mark.parametrize('changes, message', [({'out_size': None}, 'out_size'), ({'gt_size': 32}, 'gt_size'),
                                              ({'std': [0.5, 0, 0.5]}, 'std')])
def test_bad_options_are_named(faces_dir, changes, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(opt(faces_dir, **changes))
