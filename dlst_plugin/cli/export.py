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
import sys

from dlst_plugin.cli.common import add_weights_dir_argument, make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT
from dlst_plugin.inference.export import FORMATS, ExportSettings, export_restorer

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
    add_weights_dir_argument(p, 'a bare checkpoint name is looked up')
    return p


def chosen_formats(args):
    formats = list(dict.fromkeys((args.format or []) + ['torchscript'] * args.torchscript + ['onnx'] * args.onnx))
    return formats or ['torchscript', 'onnx']


def run(args):
    settings = ExportSettings(opt=args.opt, name=args.name, batch_size=args.batch_size, opset=args.opset,
                              sample=args.sample, atol=args.atol, weights_dir=args.weights_dir)
    above_atol = export_restorer(args.model, args.output, chosen_formats(args), settings,
                                 require_onnx=args.onnx or 'onnx' in (args.format or []))
    return EXIT_INPUT if above_atol else 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='files finished before the interruption are kept')


if __name__ == '__main__':
    sys.exit(main())
