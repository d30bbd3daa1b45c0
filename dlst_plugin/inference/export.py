"""A restorer checkpoint -> TorchScript, ONNX, safetensors or .pth, all with the network's metadata: the library
behind ``dlst-export``.

- ``safetensors``: ``NAME.safetensors``, the weights the checkpoint restores with (``params_ema``, else ``params``)
  as a flat dict of tensors, the metadata JSON-encoded in the header's ``dlst_meta`` entry.
- ``pth``: ``NAME.pth`` = ``{'params_ema': weights, 'params': the same, 'meta': metadata}``: a checkpoint without
  optimiser or training state that BasicSR, GFP-GAN's loaders and spandrel read.
- ``torchscript`` / ``onnx``: the network traced in eval mode (the Skip-Transformer's decoder then uses its stored
  noise maps, so the export is deterministic) for a fixed batch size and the restorer's face size, and compared
  with PyTorch on an input other than the traced one (max abs diff printed). The metadata travels as the
  TorchScript extra file ``dlst_meta.json`` and as the ONNX model's ``dlst_meta`` metadata property.

Exported files are written atomically and replace files of the same name. Messages name the ``dlst-export`` flags.
"""
import importlib.util
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dlst_plugin.checkpoints.files import resolve_model_path
from dlst_plugin.checkpoints.meta import HEADER_KEY, META_KEY, network_metadata
from dlst_plugin.errors import MissingPackageError
from dlst_plugin.fileio.atomic import atomic_path, atomic_torch_save
from dlst_plugin.inference.face_restorer import to_bgr8
from dlst_plugin.loading.networks import RestoreSetupError, face_sizes, load_restorer

ONNX_HINT = "pip install 'dlst-plugin[onnx]'"
FORMATS = ('torchscript', 'onnx', 'safetensors', 'pth')


@dataclass
class ExportSettings:
    """How to export; each field is the ``dlst-export`` flag of the same name."""
    opt: str = None  # option file whose network_g builds the restorer (default: what the checkpoint says)
    name: str = None  # base name of the exported files (default: the checkpoint stem)
    batch_size: int = 1  # the batch size the graphs are traced for
    opset: int = 17
    sample: str = None  # aligned face image for the parity check (default: seeded noise in [-1, 1])
    atol: float = 1e-3  # largest max abs diff the parity check accepts
    weights_dir: str = None


def sample_input(sample, batch_size, size):
    """(batch, 3, size, size) in [-1, 1]: the --sample face (RGB) or seeded noise."""
    if sample:
        data = np.fromfile(sample, np.uint8) if Path(sample).is_file() else np.zeros(0, np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            raise RestoreSetupError(f'--sample {sample}: no such file, or not an image')
        img = cv2.resize(to_bgr8(img)[0], (size, size), interpolation=cv2.INTER_AREA)[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 127.5 - 1
        return x.expand(batch_size, -1, -1, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1


def export_torchscript(net, x, check, reference, path, meta):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings (shape constants: the graph is fixed-size), deprecations
        traced = torch.jit.trace(net, x, check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={f'{HEADER_KEY}.json': json.dumps(meta, sort_keys=True)})
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        out = loaded(check)
    return float((out - reference).abs().max())


def export_onnx(net, x, check, reference, path, opset, meta):
    """Max abs diff against PyTorch, None when onnxruntime is missing; MissingPackageError without onnx."""
    if importlib.util.find_spec('onnx') is None:
        raise MissingPackageError(f'ONNX export needs the onnx package, which is not installed: {ONNX_HINT}')
    import onnx
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=['input'],
                          output_names=['output'])
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {HEADER_KEY: json.dumps(meta, sort_keys=True)})
        onnx.save(model, str(tmp))
    if importlib.util.find_spec('onnxruntime') is None:
        return None
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = session.run(None, {'input': check.numpy()})[0]
    return float(np.abs(out - reference.numpy()).max())


def export_weights(state, meta, path, fmt):
    """``NAME.safetensors`` (flat tensors, meta in the header) or ``NAME.pth`` (params_ema/params + meta)."""
    from dlst_plugin.checkpoints.reading import write_safetensors
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if fmt == 'safetensors':
        write_safetensors(state, path, meta)
    else:
        atomic_torch_save({'params_ema': state, 'params': state, META_KEY: meta}, path)
    print(f'{fmt}: {path} ({len(state)} tensors, {meta["arch"]} metadata)')


def report(what, diff, atol, against=''):
    """Print one export's parity line; True when its difference is above ``atol``."""
    above = diff is not None and diff > atol
    parity = f'parity check skipped: onnxruntime is not installed ({ONNX_HINT})' if diff is None else \
        f'max abs diff vs PyTorch{against} {diff:.3g}' + ('  ABOVE --atol' if above else '')
    print(f'{what}; {parity}')
    return above


def export_graphs(settings, net, network_opt, meta, out_dir, name, formats):
    """TorchScript / ONNX exports with their parity lines; whether a parity check was above ``settings.atol``."""
    size = face_sizes(network_opt, net)[0]
    x = sample_input(settings.sample, settings.batch_size, size)
    check = x.flip(-1)  # parity on an input other than the traced one: nothing input-specific was frozen
    with torch.no_grad():
        reference = net(check)
    failed = False
    if 'torchscript' in formats:
        path = out_dir / f'{name}.ts.pt'
        diff = export_torchscript(net, x, check, reference, path, meta)
        failed |= report(f'TorchScript: {path} (batch {settings.batch_size}, {size} px)', diff, settings.atol)
    if 'onnx' in formats:
        path = out_dir / f'{name}.onnx'
        try:
            diff = export_onnx(net, x, check, reference, path, settings.opset, meta)
        except MissingPackageError as err:  # only when onnx was not asked for by name: the rest is the export
            print(f'ONNX: not exported: {err}', file=sys.stderr)
            return failed
        failed |= report(f'ONNX: {path}', diff, settings.atol, ' (onnxruntime)')
    return failed


def export_restorer(model, output, formats=('torchscript', 'onnx'), settings=None, require_onnx=False):
    """Export the restorer checkpoint ``model`` (a path, or a bare name looked up in the weights folder) into the
    folder ``output`` in each of ``formats`` (:data:`FORMATS`); return whether a traced graph's parity check was
    above ``settings.atol`` (the files are written all the same). ONNX without the onnx package is skipped with
    a note, unless ``require_onnx`` (then MissingPackageError before any work). ``settings``:
    :class:`ExportSettings`."""
    settings = settings or ExportSettings()
    if settings.batch_size < 1:
        raise RestoreSetupError('--batch-size must be at least 1')
    if require_onnx and importlib.util.find_spec('onnx') is None:  # asked for: stop before any work
        raise MissingPackageError(f'--onnx needs the onnx package, which is not installed: {ONNX_HINT}')
    model_path = resolve_model_path(model, settings.weights_dir)
    net, network_opt = load_restorer(model_path, settings.opt)
    meta = network_metadata(network_opt)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = settings.name or model_path.stem
    for fmt in ('safetensors', 'pth'):
        if fmt in formats and (out_dir / f'{name}.{fmt}').resolve() == model_path.resolve():
            raise RestoreSetupError(f'--format {fmt} would overwrite the checkpoint it reads ({model_path}); choose '
                                    'another -o/--output folder or --name')
    for fmt in ('safetensors', 'pth'):
        if fmt in formats:
            export_weights(net.state_dict(), meta, out_dir / f'{name}.{fmt}', fmt)
    if 'torchscript' in formats or 'onnx' in formats:
        return export_graphs(settings, net, network_opt, meta, out_dir, name, formats)
    return False
