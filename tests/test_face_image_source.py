"""FaceImageSource start-up checks: an LMDB whose meta_info.txt lists a key data.mdb lacks is refused when
the dataset is built (naming the key and the files), not when the key is first read mid-training."""
import numpy as np
import pytest

from dlst_plugin.data.face_image_source import FaceImageSource, scan_image_folder
from dlst_plugin.errors import ConfigError
from dlst_plugin.fileio.lmdb import META_INFO, LmdbWriter


@pytest.fixture
def faces_lmdb(tmp_path):
    path = tmp_path / 'faces.lmdb'
    with LmdbWriter(path) as writer:
        for i in range(3):
            writer.put_image(f'face_{i}', np.full((8, 8, 3), 40 * i, np.uint8))
    return path


def test_listed_key_missing_from_data_mdb_fails_at_start_up(faces_lmdb):
    with open(faces_lmdb / META_INFO, 'a', encoding='ascii') as f:
        f.write('ghost_face.png (8,8,3) 1\n')
    with pytest.raises(ConfigError) as err:
        FaceImageSource(str(faces_lmdb), {'type': 'lmdb'}, option='dataroot_lq')
    message = str(err.value)
    assert message.startswith('dataroot_lq:') and "'ghost_face'" in message
    assert str(faces_lmdb / META_INFO) in message and str(faces_lmdb / 'data.mdb') in message


def test_a_sound_lmdb_reads_and_can_be_opened_twice_in_one_process(faces_lmdb):
    first = FaceImageSource(str(faces_lmdb), {'type': 'lmdb'})
    assert len(first) == 3 and first.read(2).shape == (8, 8, 3)  # its LMDB handle is now open
    second = FaceImageSource(str(faces_lmdb), {'type': 'lmdb'})  # the check must not trip over that handle
    assert second.keys == first.keys


def test_dataset_built_on_an_incomplete_lmdb_names_the_key(faces_lmdb):
    from dlst_plugin.data.unpaired_face_dataset import UnpairedFaceDataset
    lines = (faces_lmdb / META_INFO).read_text().splitlines()
    (faces_lmdb / META_INFO).write_text('\n'.join(lines + ['lost.png (8,8,3) 1']) + '\n')
    with pytest.raises(ValueError, match="'lost'"):
        UnpairedFaceDataset({'dataroot_lq': str(faces_lmdb), 'io_backend': {'type': 'lmdb'}, 'out_size': 8,
                             'mean': [0.5] * 3, 'std': [0.5] * 3, 'phase': 'train'})


def test_folder_scan_skips_hidden_files_and_sorts(tmp_path):
    (tmp_path / 'b').mkdir()
    for name in ('b/2.png', 'a.jpg', '.hidden.png', 'notes.txt', 'b/1.PNG'):
        (tmp_path / name).write_bytes(b'x')
    assert scan_image_folder(str(tmp_path)) == ['a.jpg', 'b/1.PNG', 'b/2.png']
