"""dlst-export: a restorer checkpoint -> TorchScript and ONNX, with fixed noise, checked against PyTorch.

The exported graph is the network in eval mode: the Skip-Transformer's decoder then uses its
stored noise maps (``randomize_noise=False``), so the exported model is deterministic and
can be compared with PyTorch output on a sample (max abs diff printed). The graph is traced
for a fixed batch size (--batch-size) and the restorer's face size.

ONNX needs the ``onnx`` package and its check ``onnxruntime`` (``pip install 'dlst-plugin[onnx]'``);
without them the TorchScript export still runs and the missing part says what to install.
"""
import argparse
import contextlib
import importlib.util
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from dlst_plugin.faces.detection import WEIGHTS_ENV
from dlst_plugin.restoration import (
    DEFAULT_OPT,
    RestoreError,
    build_restorer_network,
    read_network_options,
    resolve_model_path,
    to_bgr8,
)

ONNX_HINT = "pip install 'dlst-plugin[onnx]'"


def build_parser():
    p = argparse.ArgumentParser(prog='dlst-export', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--model', required=True, help='restorer checkpoint (BasicSR net_g_*.pth; params_ema, else params)')
    p.add_argument('--opt', default=None,
                   help=f'BasicSR option file whose network_g builds the restorer (default: {DEFAULT_OPT.name})')
    p.add_argument('--out', required=True, help='output folder for NAME.ts.pt and NAME.onnx')
    p.add_argument('--name', default=None, help='base name of the exported files (default: the checkpoint stem)')
    p.add_argument('--torchscript', action='store_true', help='export TorchScript (torch.jit.trace)')
    p.add_argument('--onnx', action='store_true', help='export ONNX (needs onnx; parity check needs onnxruntime)')
    p.add_argument('--batch-size', type=int, default=1, help='batch size the graph is traced for')
    p.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    p.add_argument('--sample', default=None,
                   help='aligned face image for the parity check (default: seeded random input in [-1, 1])')
    p.add_argument('--atol', type=float, default=1e-3, help='largest max abs diff accepted by the parity check')
    p.add_argument('--weights-dir', default=None,
                   help=f'folder to look up a bare checkpoint name in (default: ${WEIGHTS_ENV}, else ./weights)')
    return p


@contextlib.contextmanager
def traceable(net):
    """Make a SkipTransformer traceable while exporting.

    Under tracing ``tensor.shape[-1]`` is a tensor, so the encoder's {resolution: feature} dict
    and the skip hook's resolution lookups get tensor keys and fail; here both are turned back
    into ints (constants of the traced graph; the input size is fixed anyway). Other networks
    are left alone."""
    encoder, decoder = getattr(net, 'encoder', None), getattr(net, 'decoder', None)
    if encoder is None or not hasattr(decoder, 'synthesis'):
        yield net
        return
    encoder_forward, synthesis = encoder.forward, decoder.synthesis

    def int_key_encoder(x):
        features, w = encoder_forward(x)
        return {int(res): feat for res, feat in features.items()}, w

    def int_key_synthesis(latent, noise=None, feature_hook=None, dtype=None):
        hook = None if feature_hook is None else (lambda res, feat: feature_hook(int(res), feat))
        return synthesis(latent, noise, feature_hook=hook, dtype=dtype)

    encoder.forward, decoder.synthesis = int_key_encoder, int_key_synthesis
    try:
        yield net
    finally:
        del encoder.forward, decoder.synthesis  # back to the class methods


def sample_input(args, size):
    """(batch, 3, size, size) in [-1, 1]: the --sample face (RGB) or seeded noise."""
    if args.sample:
        img = cv2.imdecode(np.fromfile(args.sample, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise RestoreError(f'--sample {args.sample}: not an image')
        img = cv2.resize(to_bgr8(img)[0], (size, size), interpolation=cv2.INTER_AREA)[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 127.5 - 1
        return x.expand(args.batch_size, -1, -1, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    return torch.rand(args.batch_size, 3, size, size, generator=gen) * 2 - 1


def export_torchscript(net, x, check, reference, path):
    with traceable(net), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings (shape constants: the graph is fixed-size), deprecations
        traced = torch.jit.trace(net, x, check_trace=False)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        out = loaded(check)
    return float((out - reference).abs().max())


def export_onnx(net, x, check, reference, path, opset):
    """Max abs diff against PyTorch, None when onnxruntime is missing; RestoreError without onnx."""
    if importlib.util.find_spec('onnx') is None:
        raise RestoreError(f'ONNX export needs the onnx package, which is not installed: {ONNX_HINT}')
    with traceable(net), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=opset, input_names=['input'],
                          output_names=['output'])
    if importlib.util.find_spec('onnxruntime') is None:
        return None
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = session.run(None, {'input': check.numpy()})[0]
    return float(np.abs(out - reference.numpy()).max())


def run(args):
    if args.batch_size < 1:
        raise RestoreError('--batch-size must be at least 1')
    network_opt = read_network_options(args.opt)
    model_path = resolve_model_path(args.model, args.weights_dir)
    net = build_restorer_network(network_opt, model_path)
    size = int(network_opt.get('out_size') or getattr(net, 'out_size', 0) or 512)
    x = sample_input(args, size)
    check = x.flip(-1)  # parity on an input other than the traced one: nothing input-specific was frozen
    with torch.no_grad():
        reference = net(check)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or model_path.stem
    both = not (args.torchscript or args.onnx)
    failed = False
    if args.torchscript or both:
        path = out_dir / f'{name}.ts.pt'
        diff = export_torchscript(net, x, check, reference, path)
        failed |= diff > args.atol
        print(f'TorchScript: {path} (batch {args.batch_size}, {size} px); max abs diff vs PyTorch {diff:.3g}'
              + ('  ABOVE --atol' if diff > args.atol else ''))
    if args.onnx or both:
        path = out_dir / f'{name}.onnx'
        try:
            diff = export_onnx(net, x, check, reference, path, args.opset)
        except RestoreError as err:  # onnx missing: a failure only when --onnx was asked for
            print(f'ONNX: not exported: {err}', file=sys.stderr)
            return 1 if args.onnx or failed else 0
        if diff is None:
            print(f'ONNX: {path}; parity check skipped: onnxruntime is not installed ({ONNX_HINT})')
        else:
            failed |= diff > args.atol
            print(f'ONNX: {path}; max abs diff vs PyTorch (onnxruntime) {diff:.3g}'
                  + ('  ABOVE --atol' if diff > args.atol else ''))
    return 1 if failed else 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except RestoreError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
