"""One typed option schema: each block the plugin owns is declared once (type, default, range, description);
the check, the models' reading and docs/options.md come from it; every check runs before any side effect."""
import dataclasses
from pathlib import Path

import pytest
import yaml
from helpers import REPO, face_crops, fill_option_paths, run
from tiny_restorers import save_degrader_checkpoint

import dlst_plugin  # noqa: F401
from dlst_plugin.errors import ConfigError
from dlst_plugin.options import blocks, reference
from dlst_plugin.options.check import check_options
from dlst_plugin.options.schema import OptionsError, Range, option

ST_TINY = REPO / 'tests' / 'options' / 'train_st_tiny.yml'


def test_docs_options_md_is_generated_from_the_declarations():
    assert reference.main(['--check']) == 0, 'docs/options.md is stale: python -m dlst_plugin.options.reference --write'
    text = (REPO / 'docs' / 'options.md').read_text()
    for field in dataclasses.fields(blocks.StreamPairs):
        assert f'| `{field.name}` |' in text  # every declared key is documented
    assert '| `max_loss` | float or ~ | `~` | > 0 |' in text


def test_decoding_fills_defaults_converts_and_keeps_none_where_it_is_a_value():
    train = blocks.RestorerTrain.decode({'total_iter': 5e3, 'optim_g': {'type': 'Adam', 'lr': 1e-4},
                                         'grad_clip': None, 'amp_dtype': None}, 'train')
    assert train.total_iter == 5000 and isinstance(train.total_iter, int)  # !!float 5e3 is a whole number
    assert train.amp_dtype == 'bfloat16' and train.grad_clip is None and train.ema_decay == 0.0
    from dlst_plugin.data.degradations import FaceDegradation
    recipe = FaceDegradation.decode({'noise_range': None, 'jpeg_range': [70, 90]}, 'datasets.train')
    assert recipe.noise_range is None and recipe.jpeg_range == (70.0, 90.0)  # ~ switches a stage off


def test_every_problem_of_a_nested_block_is_named_with_its_path():
    with pytest.raises(OptionsError) as err:
        blocks.RestorerTrain.decode({'optim_g': {}, 'accum_iter': 0, 'stream_pairs': {
            'ration': 0.3, 'mode': 'method2', 'degrader': 'x.pth', 'degradation': {}}}, 'train')
    assert err.value.problems == [
        'train.accum_iter: must be >= 1, got 0',
        'train.stream_pairs.ration: unknown key; did you mean ratio?',
        'train.stream_pairs.mode: must be one of second_order, method1, got the string \'method2\'',
        'train.total_iter: missing (required)']
    assert isinstance(err.value, ConfigError) and err.value.exit_code == 2


def test_adding_a_train_option_is_one_declaration(monkeypatch):
    """A model with one more field in its train block: the check accepts the key and its range, the model
    reads the default, and the reference documents it; nothing else is written."""
    from basicsr.utils.registry import MODEL_REGISTRY

    from dlst_plugin.models.face_restoration_model import FaceRestorationModel

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WeightedTrain(blocks.RestorerTrain):
        edge_weight: float = option(0.5, Range(0), 'weight of an extra edge term')

    class EdgeModel(FaceRestorationModel):
        TRAIN_OPTIONS = WeightedTrain

    monkeypatch.setitem(MODEL_REGISTRY._obj_map, 'EdgeModel', EdgeModel)
    opt = yaml.safe_load(ST_TINY.read_text())
    opt['model_type'] = 'EdgeModel'
    check_options(opt)
    opt['train']['edge_weight'] = -1
    with pytest.raises(OptionsError, match='train.edge_weight: must be >= 0, got -1'):
        check_options(opt)
    assert WeightedTrain.decode({'total_iter': 1, 'optim_g': {}}, 'train').edge_weight == 0.5
    assert '| `edge_weight` | float | `0.5` | >= 0 | weight of an extra edge term |' in reference.block_table(
        WeightedTrain)


def _st_options(tmp_path, **updates):
    face_crops(tmp_path / 'faces', size=32, count=4)
    return fill_option_paths(ST_TINY, tmp_path / 'st.yml', tmp_path / 'faces', updates)


def _degrader(tmp_path, size):
    return save_degrader_checkpoint(tmp_path / f'degrader_{size}.pth', out_size=size, trained=False)


@pytest.mark.slow
def test_late_problems_stop_a_fresh_start_before_the_old_experiment_folder_is_touched(tmp_path):
    """stream_pairs typos and a ratio that is no number (both named in one message) and a degrader of another
    face size each stop the run with exit code 2 before BasicSR archives the existing experiment folder."""
    old = tmp_path / 'experiments' / 'tiny_st'
    (old / 'models').mkdir(parents=True)
    (old / 'models' / 'net_g_1000.pth').write_bytes(b'weights of an earlier run')
    degrader = str(_degrader(tmp_path, 32))
    cases = [({'degrader': degrader, 'ration': 0.3, 'ratio': 'half'},
              ['train.stream_pairs.ration: unknown key; did you mean ratio?',
               "train.stream_pairs.ratio: expected a number, got the string 'half'"]),
             ({'degrader': str(_degrader(tmp_path, 64))}, ['draws 64 px faces but network_g restores 32 px faces'])]
    for i, (stream, messages) in enumerate(cases):
        opt = _st_options(tmp_path / f'c{i}', **{'train:stream_pairs': stream})
        proc = run(['python', '-m', 'basicsr.train', '-opt', opt], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert all(message in proc.stderr for message in messages), proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'experiments').iterdir()) == ['tiny_st']  # nothing archived
    assert [p.name for p in (old / 'models').iterdir()] == ['net_g_1000.pth']
    assert Path(old / 'models' / 'net_g_1000.pth').read_bytes() == b'weights of an earlier run'
