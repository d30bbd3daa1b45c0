"""Where weight files named by a flag (``--model``, ``--inception-weights``, detector weights) are looked up: a
bare file name in the weights folder (``--weights-dir``, ``$DLST_WEIGHTS_DIR``, ``./weights``), and
``X.safetensors`` beside ``X.pth``. Reading them is :func:`dlst_plugin.checkpoints.reading.read_checkpoint`, the
one checkpoint reader of the plugin."""
import os
from pathlib import Path

from dlst_plugin.errors import MissingFileError

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
