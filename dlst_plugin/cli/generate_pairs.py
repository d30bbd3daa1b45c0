"""dlst-generate-pairs: a trained degrader -> N (clean, degraded) face pairs in two LMDBs (paper 3.2.4).

Pair ``i`` is drawn from its own seed (``--seed``, i): z -> shared mapping -> red (clean) and
green (degraded) networks with the same noise, so the output does not depend on the batch size,
the number of shards or interruptions. Keys are the zero-padded pair index in both LMDBs
(BasicSR ``meta_info.txt`` layout), so ``PairedImageDataset``-style readers and
``SecondOrderFaceDataset`` match them by key.

Rerunning the same command after an interruption (Ctrl-C, SIGTERM, a kill, a crash) continues where it
stopped: a pair counts as done only when both LMDBs hold its key, a key is never stored twice, and
a pair only one LMDB holds (a kill between the two commits) is finished, so both always end with
the same keys. The summary says how many pairs the output holds, which may be more than ``-n``
after an earlier run with a larger one (``--overwrite`` starts again).
Shards: ``--rank R --world-size W`` (or torchrun's RANK/WORLD_SIZE) makes the pairs with
``i % W == R`` into ``OUT/shard{R}of{W}/``; list the shard folders in the dataset options.
"""
import sys

from dlst_plugin.cli.common import (
    add_device_argument,
    add_positional_alias,
    add_weights_dir_argument,
    make_parser,
    run_command,
    settings_from_args,
)
from dlst_plugin.inference.pairs import PairSettings, generate_pairs

EXAMPLE = ('example:\n  dlst-generate-pairs --model experiments/DL_StyleGAN2_512/models/net_g_latest.pth '
           '-o datasets/dl_pairs -n 35000')


def build_parser():
    p = make_parser('dlst-generate-pairs', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('--model', metavar='CKPT', help='degrader checkpoint saved by DegradationLearningModel '
                                                   '(experiments/<name>/models/net_g_<iter>.pth)')
    p.add_argument('-o', '--output', metavar='OUT',
                   help='output folder: gets clean.lmdb and degraded.lmdb (or shard folders)')
    add_positional_alias(p, 'model', 'CKPT', '--model')
    add_positional_alias(p, 'output', 'OUT', '-o/--output')
    p.add_argument('-n', '--count', type=int, required=True, help='number of pairs in all (over every shard)')
    p.add_argument('--overwrite', action='store_true',
                   help="delete the pairs already in OUT (this shard's clean.lmdb, degraded.lmdb) and start again")
    p.add_argument('--seed', type=int, default=0, help='seed; pair i always comes from (seed, i)')
    p.add_argument('--weights', choices=['params_ema', 'params'], default='params_ema',
                   help='which weights of the checkpoint: the EMA of the green network or the last ones')
    p.add_argument('--truncation', type=float, default=1.0, help='truncation psi (1 = none)')
    p.add_argument('--mixing-prob', type=float, default=0.0, help='probability of style mixing per pair')
    p.add_argument('--batch-size', type=int, default=8, help='pairs generated at once on the device')
    add_device_argument(p, 'the degrader')
    add_weights_dir_argument(p, 'a bare --model file name is looked up')
    p.add_argument('--rank', type=int, default=None, help='shard index (default: $RANK, else 0)')
    p.add_argument('--world-size', type=int, default=None, help='number of shards (default: $WORLD_SIZE, else 1)')
    p.add_argument('--png-level', type=int, choices=range(10), default=1, metavar='0-9', help='PNG compression level')
    p.add_argument('--encode-threads', type=int, default=2, help='threads encoding PNGs while the device works')
    p.add_argument('--commit-every', type=int, default=64, help='pairs per LMDB transaction')
    return p


def run(args):
    generate_pairs(args.model, args.output, args.count, settings_from_args(PairSettings, args))
    return 0


def main(argv=None):
    return run_command(build_parser(), run, argv)


if __name__ == '__main__':
    sys.exit(main())
