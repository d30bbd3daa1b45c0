"""dlst-export: a restorer checkpoint -> TorchScript, ONNX, safetensors or .pth, all with the network's metadata.

Each output carries the network's arch and constructor options; the traced graphs are checked against PyTorch.

``--format`` picks the outputs (several may be given; default: torchscript and onnx):

- ``safetensors``: ``NAME.safetensors``, the weights the checkpoint restores with (``params_ema``, else
  ``params``) as a flat dict of tensors, the metadata JSON-encoded in the header's ``dlst_meta`` entry.
  Loaded by dlst-restore, DLSTer, spandrel (after ``dlst_plugin.integrations.spandrel.install()``) and
  safetensors' own ``load_file``; no pickle is involved.
- ``pth``: ``NAME.pth`` = ``{'params_ema': weights, 'params': the same, 'meta': metadata}``: a checkpoint without
  optimiser or training state that BasicSR, GFP-GAN's loaders and spandrel read.
- ``torchscript`` / ``onnx``: the network traced in eval mode: the Skip-Transformer's decoder then uses
  its stored noise maps (``randomize_noise=False``), so the exported model is deterministic and is
  compared with PyTorch on a sample (max abs diff printed). The graph is traced for a fixed batch
  size (--batch-size) and the restorer's face size. The metadata travels as the TorchScript extra file
  ``dlst_meta.json`` and as the ONNX model's ``dlst_meta`` metadata property.

ONNX needs the ``onnx`` package and its check ``onnxruntime`` (``pip install 'dlst-plugin[onnx]'``);
without them the other formats still run and the missing part says what to install.
Exported files are written atomically and replace files of the same name.
"""
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from dlst_plugin.checkpoints.files import WEIGHTS_ENV, resolve_model_path
from dlst_plugin.checkpoints.meta import HEADER_KEY, META_KEY, network_metadata
from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT, MissingPackageError
from dlst_plugin.fileio.atomic import atomic_path, atomic_torch_save
from dlst_plugin.inference.face_restorer import to_bgr8
from dlst_plugin.loading.networks import RestoreSetupError, face_sizes, load_restorer

ONNX_HINT = "pip install 'dlst-plugin[onnx]'"
FORMATS = ('torchscript', 'onnx', 'safetensors', 'pth')
EXAMPLE = ('examples:\n  dlst-export --model net_g_latest.pth -o exported --format torchscript onnx\n'
           '  dlst-export --model net_g_latest.pth -o exported --format safetensors')


def build_parser():
    p = make_parser('dlst-export', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('--model', required=True,
                   help='restorer checkpoint (.pth: params_ema, else params; or .safetensors)')
    p.add_argument('--opt', default=None,
                   help='BasicSR option file whose network_g builds the restorer; overrides what the checkpoint says '
                        '(default: its metadata, else what its tensor shapes give)')
    p.add_argument('-o', '--output', '--out', dest='output', required=True,
                   help='output folder for NAME.ts.pt, NAME.onnx, NAME.safetensors, NAME.pth (--out: old spelling)')
    p.add_argument('--name', default=None, help='base name of the exported files (default: the checkpoint stem)')
    p.add_argument('--format', nargs='+', choices=FORMATS, default=None, metavar='FORMAT',
                   help=f'what to write, one or more of {", ".join(FORMATS)} (default: torchscript onnx)')
    p.add_argument('--torchscript', action='store_true', help='same as --format torchscript')
    p.add_argument('--onnx', action='store_true', help='same as --format onnx (needs onnx; parity check: onnxruntime)')
    p.add_argument('--batch-size', type=int, default=1, help='batch size the graph is traced for')
    p.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    p.add_argument('--sample', default=None,
                   help='aligned face image for the parity check (default: seeded random input in [-1, 1])')
    p.add_argument('--atol', type=float, default=1e-3, help='largest max abs diff accepted by the parity check')
    p.add_argument('--weights-dir', default=None,
                   help=f'folder to look up a bare checkpoint name in (default: ${WEIGHTS_ENV}, else ./weights)')
    return p


def sample_input(args, size):
    """(batch, 3, size, size) in [-1, 1]: the --sample face (RGB) or seeded noise."""
    if args.sample:
        data = np.fromfile(args.sample, np.uint8) if Path(args.sample).is_file() else np.zeros(0, np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            raise RestoreSetupError(f'--sample {args.sample}: no such file, or not an image')
        img = cv2.resize(to_bgr8(img)[0], (size, size), interpolation=cv2.INTER_AREA)[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 127.5 - 1
        return x.expand(args.batch_size, -1, -1, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    return torch.rand(args.batch_size, 3, size, size, generator=gen) * 2 - 1


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


def chosen_formats(args):
    formats = list(dict.fromkeys((args.format or []) + ['torchscript'] * args.torchscript + ['onnx'] * args.onnx))
    return formats or ['torchscript', 'onnx']


def export_graphs(args, net, network_opt, meta, out_dir, name, formats):
    """TorchScript / ONNX exports with their parity lines; the exit code."""
    size = face_sizes(network_opt, net)[0]
    x = sample_input(args, size)
    check = x.flip(-1)  # parity on an input other than the traced one: nothing input-specific was frozen
    with torch.no_grad():
        reference = net(check)
    failed = False
    if 'torchscript' in formats:
        path = out_dir / f'{name}.ts.pt'
        diff = export_torchscript(net, x, check, reference, path, meta)
        failed |= report(f'TorchScript: {path} (batch {args.batch_size}, {size} px)', diff, args.atol)
    if 'onnx' in formats:
        path = out_dir / f'{name}.onnx'
        try:
            diff = export_onnx(net, x, check, reference, path, args.opset, meta)
        except MissingPackageError as err:  # only when onnx was not asked for by name: the rest is the export
            print(f'ONNX: not exported: {err}', file=sys.stderr)
            return EXIT_INPUT if failed else 0
        failed |= report(f'ONNX: {path}', diff, args.atol, ' (onnxruntime)')
    return EXIT_INPUT if failed else 0


def run(args):
    if args.batch_size < 1:
        raise RestoreSetupError('--batch-size must be at least 1')
    formats = chosen_formats(args)
    asked_onnx = args.onnx or 'onnx' in (args.format or [])
    if asked_onnx and importlib.util.find_spec('onnx') is None:  # asked for: stop before any work
        raise MissingPackageError(f'--onnx needs the onnx package, which is not installed: {ONNX_HINT}')
    model_path = resolve_model_path(args.model, args.weights_dir)
    net, network_opt = load_restorer(model_path, args.opt)
    meta = network_metadata(network_opt)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or model_path.stem
    for fmt in ('safetensors', 'pth'):
        if fmt in formats and (out_dir / f'{name}.{fmt}').resolve() == model_path.resolve():
            raise RestoreSetupError(f'--format {fmt} would overwrite the checkpoint it reads ({model_path}); choose '
                                    'another -o/--output folder or --name')
    for fmt in ('safetensors', 'pth'):
        if fmt in formats:
            export_weights(net.state_dict(), meta, out_dir / f'{name}.{fmt}', fmt)
    if 'torchscript' in formats or 'onnx' in formats:
        return export_graphs(args, net, network_opt, meta, out_dir, name, formats)
    return 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='files finished before the interruption are kept')


if __name__ == '__main__':
    sys.exit(main())
