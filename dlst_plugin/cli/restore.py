"""dlst-restore: restore the faces in photos with a Skip-Transformer (or GLEAN, GFP-GAN) checkpoint.

Inputs are files, folders (their images, recursively) or glob patterns. Per photo: detect,
align, restore the faces in batches, paste them back with a feathered mask, and write
OUTPUT/restored_imgs/NAME.png, OUTPUT/restored_faces/NAME_00.png ... and, with --compare,
OUTPUT/cmp/NAME.png (input | restored); files of the same name are replaced. A photo that fails
(no face, unreadable, too small ...) is reported and skipped; the run ends with a summary and
exits 1 if any photo failed.

The output is checked first (its folders made and a test file written in each): an output that cannot be
written stops the run before any photo is restored. A write that fails during the run because the disk is
full or the output read-only stops the run at that photo (exit 1), saying which photos were finished; a
photo's files are written atomically and a photo that fails takes back the files it had written, so the
output folder holds finished photos only.
"""
import sys

from dlst_plugin.cli.common import (
    add_device_argument,
    add_weights_dir_argument,
    make_parser,
    run_command,
    settings_from_args,
)
from dlst_plugin.devices import PRECISIONS
from dlst_plugin.faces.detection import available_backends
from dlst_plugin.inference.face_restorer import SELECTIONS
from dlst_plugin.inference.restore_files import RestoreSettings, restore_files

EXAMPLE = ('example:\n  dlst-restore -i photos/ \'more/*.jpg\' one.png -o results '
           '--model experiments/DLST_512/models/net_g_latest.pth --compare')


def build_parser():
    p = make_parser('dlst-restore', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('-i', '--input', nargs='+', required=True,
                   help='image files, folders (searched recursively) or glob patterns (quote them)')
    p.add_argument('-o', '--output', required=True,
                   help='output folder (restored_imgs/, restored_faces/, cmp/); checked with a test write before any '
                        'photo is restored. A full or read-only disk stops the run at the first failed write '
                        '(exit 1, naming the photos finished); a failed photo leaves none of its files')
    p.add_argument('--model', required=True,
                   help='restorer checkpoint: X.pth (BasicSR net_g_*.pth; params_ema, else params) or X.safetensors '
                        '(dlst-export --format safetensors). When X.safetensors lies next to a given X.pth, the '
                        '.safetensors file is used (same weights, no pickle). A bare name is also looked up in the '
                        'weights folder')
    p.add_argument('--opt', default=None,
                   help='BasicSR option file whose network_g builds the restorer; overrides what the checkpoint '
                        'says (default: the network the checkpoint describes in its metadata, else the one its '
                        'tensor shapes give)')
    p.add_argument('--aligned', action='store_true',
                   help='inputs are already aligned faces: no detection, no paste-back')
    add_device_argument(p, 'the restorer and the face detector')
    p.add_argument('--dtype', choices=PRECISIONS, default='auto',
                   help='restorer precision: auto = bfloat16 where the device computes it natively (CUDA GPUs with '
                        'bf16, CPUs with AMX / AVX512-BF16), float16 on other CUDA GPUs, else float32 (the choice '
                        'is printed); float16 runs on CUDA only')
    p.add_argument('--compile', action='store_true',
                   help='compile the restorer (torch.compile): the first face waits for the compilation (minutes '
                        'on a CPU), later ones run faster; falls back to eager with a note where it cannot')
    p.add_argument('--batch-size', type=int, default=4, help='faces restored per forward pass')
    p.add_argument('--faces', choices=list(SELECTIONS), default='all',
                   help='which detected faces to restore: all, the largest, or the one nearest the centre')
    p.add_argument('--min-face-size', type=float, default=0,
                   help='ignore faces whose box is smaller than this many px on either side')
    p.add_argument('--detector', choices=available_backends(), default='yunet', help='face detection backend')
    p.add_argument('--score-threshold', type=float, default=None,
                   help="minimum detection score (default: the detector's own)")
    add_weights_dir_argument(p, 'a bare --model file name and the detector weights are looked up')
    p.add_argument('--compare', action='store_true', help='also write cmp/NAME.png: input | restored')
    p.add_argument('--no-faces', action='store_true', help='do not write restored_faces/')
    return p


def restore_settings(args):
    """The :class:`~dlst_plugin.inference.restore_files.RestoreSettings` of parsed ``dlst-restore`` flags."""
    return settings_from_args(RestoreSettings, args, write_faces=not args.no_faces)


def run(args):
    summary = restore_files(args.input, args.output, args.model, restore_settings(args))
    return 1 if summary.failed else 0


def main(argv=None):
    return run_command(build_parser(), run, argv, interrupted='the photos finished so far are in the output folder')


if __name__ == '__main__':
    sys.exit(main())
