"""Checkpoints and weight files named by a flag (``--model``, ``--inception-weights``, detector weights):
where a bare file name is looked up (and ``X.safetensors`` beside ``X.pth``), and one clear configuration
error when the file is missing, is not a checkpoint or is truncated. The reading itself is
:func:`dlst_plugin.checkpoints.reading.read_checkpoint` (``torch.load(weights_only=True)``, or safetensors), the one
checkpoint reader of the plugin."""
import os
from pathlib import Path

from dlst_plugin.errors import ConfigError, MissingFileError

WEIGHTS_ENV = 'DLST_WEIGHTS_DIR'
DEFAULT_WEIGHTS_DIR = 'weights'
TORCH_SUFFIXES = ('.pth', '.pt', '.ckpt')
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + ('.safetensors', '.pkl', '.bin')


def resolve_weights_dir(weights_dir=None):
    """The weights folder: the argument, else ``$DLST_WEIGHTS_DIR``, else ``./weights`` (absolute)."""
    return os.path.abspath(weights_dir or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR)


def safetensors_twin(path):
    """``X.safetensors`` beside ``X.pth`` / ``X.pt`` / ``X.ckpt`` when it exists, else None."""
    path = Path(path)
    twin = path.with_suffix('.safetensors')
    return twin if path.suffix.lower() in TORCH_SUFFIXES and twin.is_file() else None


def resolve_model_path(model, weights_dir=None, flag='--model', prefer_safetensors=False):
    """``model`` as given if it is a file, else the file of that name in the weights folder. A name without
    a file (``net_g_latest``) also finds ``NAME.safetensors`` or ``NAME.pth``. ``prefer_safetensors``:
    ``X.safetensors`` next to a given ``X.pth`` is used instead (same weights, no pickle)."""
    path = Path(model).expanduser()
    folder = Path(resolve_weights_dir(weights_dir))
    for candidate in (path, folder / path.name):
        found = _existing(candidate)
        if found is not None:
            return (safetensors_twin(found) or found) if prefer_safetensors else found
    raise MissingFileError(f'{flag} {model}: checkpoint not found (also looked for {folder / path.name}; set '
                           f'--weights-dir or ${WEIGHTS_ENV} to the folder holding it)')


def _existing(path):
    if path.is_file():
        return path
    if not path.suffix or path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        return next((p for p in (Path(f'{path}.safetensors'), Path(f'{path}.pth')) if p.is_file()), None)
    return None


def load_checkpoint(path, expected, flag='--model'):
    """The dict a checkpoint holds, read by ``read_checkpoint``; a missing or unreadable file is one
    :class:`~dlst_plugin.errors.ConfigError` line naming ``flag``, the file and what was ``expected``."""
    from dlst_plugin.checkpoints.reading import CheckpointLayoutError, read_checkpoint
    where = f'{flag} ' if flag else ''
    if Path(path).is_dir():
        raise ConfigError(f'{where}{path} is a folder, not a checkpoint file; expected {expected}')
    if not Path(path).is_file():
        raise MissingFileError(f'{where}{path}: no such file; expected {expected}')
    try:
        return read_checkpoint(path)
    except (CheckpointLayoutError, OSError) as err:
        raise ConfigError(f'{where}{err}; expected {expected}') from None
