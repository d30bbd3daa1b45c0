"""SecondOrderFaceDataset: generated pairs + FFHQ, second-order degradation, Method (1)
(docs/design.md#second-order-set)."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from helpers import face_crops

import dlst_plugin  # noqa: F401
from dlst_plugin.fileio.lmdb import LmdbWriter

SIZE = 32


def to_tensor(path):
    img = cv2.imread(str(path)).astype(np.float32) / 255.0
    return torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy()) * 2 - 1


@pytest.fixture
def pairs(tmp_path):
    """4 (clean, degraded) pairs with the same file names; degraded = darker, blurred clean."""
    clean = face_crops(tmp_path / 'clean', size=SIZE, count=4, seed=1)
    (tmp_path / 'degraded').mkdir()
    for path in clean:
        img = cv2.GaussianBlur(cv2.imread(str(path)), (5, 5), 1.5) // 2
        cv2.imwrite(str(tmp_path / 'degraded' / path.name), img)
    face_crops(tmp_path / 'ffhq', size=SIZE, count=6, seed=2)
    return tmp_path


def opt(root, **changes):
    base = {'name': 'so', 'type': 'SecondOrderFaceDataset', 'phase': 'train', 'dataroot_clean': str(root / 'clean'),
            'dataroot_degraded': str(root / 'degraded'), 'dataroot_hq': str(root / 'ffhq'), 'out_size': SIZE,
            'mean': [0.5] * 3, 'std': [0.5] * 3, 'seed': 0}
    base.update(changes)
    return base


def equal_or_flipped(a, b):
    return torch.equal(a, b) or torch.equal(a, b.flip(-1))


def test_default_mix_is_half_generated_half_ffhq_and_shows_every_image(pairs):
    dataset = build_dataset(opt(pairs))
    assert len(dataset) == 12  # 6 FFHQ faces need 12 samples at 50 %
    samples = [dataset[i] for i in range(len(dataset))]
    assert sum(s['source'] == 'generated' for s in samples) == 6
    assert {s['gt_path'] for s in samples if s['source'] == 'ffhq'} == {str(p) for p in (pairs / 'ffhq').glob('*')}


@pytest.mark.parametrize('ratio, generated', [(0.25, 4), (1.0, 4), (0.0, 0)])
def test_ratio_sets_the_share_of_generated_pairs(pairs, ratio, generated):
    dataset = build_dataset(opt(pairs, ratio=ratio))
    assert sum(dataset[i]['source'] == 'generated' for i in range(len(dataset))) == generated
    assert len(dataset) == {0.25: 16, 1.0: 4, 0.0: 6}[ratio]  # every image of both sources at least once


def test_generated_input_is_the_degraded_face_degraded_again_and_target_is_clean(pairs):
    dataset = build_dataset(opt(pairs, ratio=1.0, color_jitter_prob=None, color_jitter_pt_prob=None, gray_prob=None))
    sample = dataset[2]
    name = sample['gt_path'].split('/')[-1]
    assert sample['lq_path'].endswith(f'degraded/{name}')
    clean, degraded = to_tensor(pairs / 'clean' / name), to_tensor(pairs / 'degraded' / name)
    assert equal_or_flipped(sample['gt'], clean)
    flipped = torch.equal(sample['gt'], clean.flip(-1)) and not torch.equal(sample['gt'], clean)
    source = degraded.flip(-1) if flipped else degraded
    assert not torch.equal(sample['lq'], source)  # GFP-GAN's degradation was applied on top
    # ... of the degraded face, not of the clean one: the lq keeps the degraded face's darker mean
    assert abs(sample['lq'].mean() - source.mean()) < abs(sample['lq'].mean() - clean.mean())


def test_method1_mixes_clean_plus_gfpgan_and_untouched_green_faces(pairs):
    dataset = build_dataset(opt(pairs, mode='method1', dataroot_hq=None))
    samples = [dataset[i] for i in range(len(dataset))]
    assert len(samples) == 8 and {s['source'] for s in samples} == {'clean_gfpgan', 'green'}
    for s in samples:
        name = s['gt_path'].split('/')[-1]
        clean, degraded = to_tensor(pairs / 'clean' / name), to_tensor(pairs / 'degraded' / name)
        if s['source'] == 'green':  # no further degradation; input and target flipped together
            assert (torch.equal(s['lq'], degraded) and torch.equal(s['gt'], clean)) or \
                   (torch.equal(s['lq'], degraded.flip(-1)) and torch.equal(s['gt'], clean.flip(-1)))
        else:
            assert s['lq_path'] == s['gt_path'] and not equal_or_flipped(s['lq'], clean)
            assert not any(p.endswith('ffhq') for p in (s['lq_path'], s['gt_path']))  # only synthetic HQ


def test_sharded_lmdb_pairs_are_read_as_one_set(pairs, tmp_path):
    shards = []
    for shard, names in enumerate((['face_01_0000', 'face_01_0002'], ['face_01_0001', 'face_01_0003'])):
        roots = []
        for kind in ('clean', 'degraded'):
            root = tmp_path / f'shard{shard}' / f'{kind}.lmdb'
            with LmdbWriter(root) as writer:
                for name in names:
                    writer.put(name, (pairs / kind / f'{name}.png').read_bytes(), (SIZE, SIZE, 3))
            roots.append(str(root))
        shards.append(roots)
    dataset = build_dataset(opt(pairs, ratio=1.0, dataroot_clean=[s[0] for s in shards],
                                dataroot_degraded=[s[1] for s in shards]))
    assert len(dataset) == 4
    assert sorted(dataset[i]['gt_path'] for i in range(4)) == [f'face_01_000{i}' for i in range(4)]


def test_pairs_with_different_keys_are_refused(pairs):
    (pairs / 'degraded' / 'face_01_0003.png').rename(pairs / 'degraded' / 'other.png')
    with pytest.raises(ValueError, match='same keys.*face_01_0003'):
        build_dataset(opt(pairs))


@pytest.mark.parametrize('changes, message', [({'mode': 'method3'}, 'mode'), ({'ratio': 1.5}, 'ratio'),
                                              ({'dataroot_hq': None}, 'dataroot_hq'), ({'gt_size': 3}, 'gt_size')])
def test_bad_options_are_named(pairs, changes, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(opt(pairs, **changes))


def test_a_validation_set_repeats_both_sources_exactly(pairs):
    """phase val: every pass draws the same degradation, for the generated pairs and the FFHQ share."""
    dataset = build_dataset(opt(pairs, phase='val'))
    first = [dataset[i] for i in range(len(dataset))]
    again = [dataset[i] for i in range(len(dataset))]
    assert {s['source'] for s in first} == {'generated', 'ffhq'}
    for a, b in zip(first, again):
        assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt']), a['source']
