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
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from dlst_plugin.checkpoints.files import WEIGHTS_ENV, resolve_model_path
from dlst_plugin.cli.common import (
    add_positional_alias,
    check_resume_settings,
    interruption,
    make_parser,
    run_command,
)
from dlst_plugin.devices import pick_device
from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.fileio.atomic import atomic_write_text
from dlst_plugin.loading.networks import load_degrader, weights_digest

SETTINGS_FILE = 'generate_pairs.json'  # what a folder was made with; a resume must match it
LMDB_NAMES = ('degraded.lmdb', 'clean.lmdb')  # written in this order: a pair is done once its clean face is in
KEY_DIGITS = 8
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
    p.add_argument('--device', default='auto', help="'auto' (the local GPU if any, else CPU), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--weights-dir', default=None,
                   help=f'folder to look up a bare --model file name in (default: ${WEIGHTS_ENV}, else ./weights)')
    p.add_argument('--rank', type=int, default=None, help='shard index (default: $RANK, else 0)')
    p.add_argument('--world-size', type=int, default=None, help='number of shards (default: $WORLD_SIZE, else 1)')
    p.add_argument('--png-level', type=int, choices=range(10), default=1, metavar='0-9', help='PNG compression level')
    p.add_argument('--encode-threads', type=int, default=2, help='threads encoding PNGs while the device works')
    p.add_argument('--commit-every', type=int, default=64, help='pairs per LMDB transaction')
    return p


def shard_of(args):
    rank = args.rank if args.rank is not None else int(os.environ.get('RANK', 0))
    world = args.world_size if args.world_size is not None else int(os.environ.get('WORLD_SIZE', 1))
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f'--rank must be in [0, --world-size); got rank {rank}, world size {world}')
    return rank, world


def pair_key(index):
    return f'{index:0{KEY_DIGITS}d}'


def pair_index(key):
    """The pair index a key stands for, or None when it is no key this command writes."""
    return int(key) if key.isdigit() and pair_key(int(key)) == key else None


def pair_seed(seed, index):
    """64-bit seed of pair ``index``: independent streams for every (seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def shard_folder(out, rank, world):
    return out if world == 1 else os.path.join(out, f'shard{rank}of{world}')


def clear_folder(folder):
    """``--overwrite``: remove the pairs and settings this command wrote into ``folder`` (nothing else)."""
    for name in LMDB_NAMES:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    if os.path.isfile(os.path.join(folder, SETTINGS_FILE)):
        os.remove(os.path.join(folder, SETTINGS_FILE))


def check_settings(folder, settings):
    """Refuse to resume a folder made with other settings (the pairs would not match)."""
    path = os.path.join(folder, SETTINGS_FILE)
    check_resume_settings(path, settings, folder)
    atomic_write_text(path, json.dumps(settings, indent=1))


def plan(writers, mine, rank, world, folder):
    """Indices to generate: this shard's pairs under ``-n`` that either LMDB lacks, plus every pair only
    one LMDB holds (left by a kill between the two commits, perhaps of a run with a larger ``-n``)."""
    degraded, clean = set(writers[0].keys()), set(writers[1].keys())
    halves = degraded ^ clean
    foreign = sorted(k for k in halves if pair_index(k) is None or pair_index(k) % world != rank)
    if foreign:
        raise InputError(f'{folder}: key(s) {", ".join(foreign[:5])} are in only one of clean.lmdb and '
                         f'degraded.lmdb and are no pair of shard {rank} of {world}; pass --overwrite or choose '
                         'another output folder')
    todo = {i for i in mine if pair_key(i) not in degraded or pair_key(i) not in clean}
    return sorted(todo | {pair_index(k) for k in halves})


@torch.no_grad()
def generate_batch(net, indices, seed, device):
    """(clean, degraded) uint8 BGR arrays (b, h, w, 3) of the given pair indices."""
    from dlst_plugin.archs.coupled_stylegan2_arch import CoupledCodes
    from dlst_plugin.models.degradation_learning_utils import to_bgr_uint8
    codes = CoupledCodes.cat([net.draw_codes(1, torch.Generator().manual_seed(pair_seed(seed, i))) for i in indices])
    clean, degraded = net.generate(codes.to(device))
    return to_bgr_uint8(clean), to_bgr_uint8(degraded)


def write_pairs(net, todo, writers, args, device, desc):
    """Generate and store the pairs ``todo``; return how many were made."""
    from dlst_plugin.fileio.lmdb import encode_png
    start, made = time.time(), 0
    with ThreadPoolExecutor(args.encode_threads) as encode, \
            tqdm(total=len(todo), unit='pair', desc=desc, dynamic_ncols=True) as bar:
        for first in range(0, len(todo), args.batch_size):
            indices = todo[first:first + args.batch_size]
            clean, degraded = generate_batch(net, indices, args.seed, device)
            pngs = list(encode.map(lambda img: encode_png(img, args.png_level), [*degraded, *clean]))
            for j, i in enumerate(indices):  # degraded first: a pair is done once its clean face is in
                writers[0].put(pair_key(i), pngs[j], degraded[j].shape, args.png_level)
                writers[1].put(pair_key(i), pngs[len(indices) + j], clean[j].shape, args.png_level)
            made += len(indices)
            bar.update(len(indices))
            bar.set_postfix(images_per_s=f'{2 * made / max(time.time() - start, 1e-9):.2f}')
    return made


def summary(folder, writers, mine, count, made, seconds):
    """What the output holds (not only what this run made); InputError if the two LMDBs disagree."""
    degraded, clean = set(writers[0].keys()), set(writers[1].keys())
    if degraded != clean:
        raise InputError(f'{folder}: clean.lmdb and degraded.lmdb hold different keys ({len(clean ^ degraded)} '
                         'differ); rerun the same command to finish them')
    keys = sorted(clean)
    held = f'{len(keys)} pairs (keys {keys[0]}..{keys[-1]})' if keys else 'no pairs'
    print(f'made {made} pairs in {seconds:.1f} s ({made / max(seconds, 1e-9):.2f} pairs/s, '
          f'{2 * made / max(seconds, 1e-9):.2f} images/s); {folder} holds {held}')
    extra = len(keys) - len(mine)
    if extra > 0:
        print(f'note: that is {extra} more than the {len(mine)} -n {count} asks for here, from an earlier run with a '
              'larger -n; datasets read all of them (pass --overwrite, or choose another output folder, for exactly '
              f'{count})')


def run(args):
    from dlst_plugin.fileio.lmdb import LmdbWriter
    if args.count < 1 or args.batch_size < 1 or args.encode_threads < 1 or args.commit_every < 1:
        raise ConfigError('--count, --batch-size, --encode-threads and --commit-every must be at least 1')
    rank, world = shard_of(args)
    device = pick_device(args.device, error=ConfigError)
    model = resolve_model_path(args.model, args.weights_dir)
    net, state = load_degrader(model, '--model', args.weights, device=device, truncation=args.truncation,
                               mixing_prob=args.mixing_prob)
    digest = weights_digest(state)
    folder = shard_folder(args.output, rank, world)
    if args.overwrite:
        clear_folder(folder)
    check_settings(folder, {'weights_digest': digest, 'weights': args.weights,
                            'seed': args.seed, 'truncation': args.truncation, 'mixing_prob': args.mixing_prob,
                            'world_size': world, 'out_size': net.out_size})
    writers = [LmdbWriter(os.path.join(folder, name), resume=True, compress_level=args.png_level,
                          commit_every=args.commit_every) for name in LMDB_NAMES]
    mine = range(rank, args.count, world)
    try:
        todo = plan(writers, mine, rank, world, folder)
        if len(todo) < len(mine):
            print(f'resuming {folder}: {len(mine) - len([i for i in todo if i < args.count])} of {len(mine)} pairs '
                  'already stored')
        start = time.time()
        made = write_pairs(net, todo, writers, args, device, f'pairs (shard {rank}/{world})')
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (run_command's handler)
        raise interruption(err, f'the pairs made so far are kept in {folder}; rerun the same command to continue') \
            from None
    finally:
        for w in writers:
            w.close()  # commits every complete pair put so far
    summary(folder, writers, mine, args.count, made, time.time() - start)
    return 0


def main(argv=None):
    return run_command(build_parser(), run, argv)


if __name__ == '__main__':
    sys.exit(main())
