"""(clean, degraded) face pairs from a trained degrader into two LMDBs (paper 3.2.4): the library behind
``dlst-generate-pairs`` (the demo calls it too).

Pair ``i`` is drawn from its own seed (``seed``, i): z -> shared mapping -> red (clean) and green (degraded)
networks with the same noise, so the output does not depend on the batch size, the number of shards or
interruptions. Keys are the zero-padded pair index in both LMDBs (BasicSR ``meta_info.txt`` layout), so
``PairedImageDataset``-style readers and ``SecondOrderFaceDataset`` match them by key.

A rerun after an interruption (Ctrl-C, SIGTERM, a kill, a crash) continues where it stopped: a pair counts as
done only when both LMDBs hold its key, a key is never stored twice, and a pair only one LMDB holds (a kill
between the two commits) is finished, so both always end with the same keys. Shards: ``rank`` R of
``world_size`` W (default: torchrun's RANK/WORLD_SIZE) makes the pairs with ``i % W == R`` into
``OUT/shard{R}of{W}/``. Messages name the matching ``dlst-generate-pairs`` flags.
"""
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from dlst_plugin.checkpoints.files import resolve_model_path
from dlst_plugin.devices import pick_device
from dlst_plugin.errors import ConfigError, InputError, interruption
from dlst_plugin.fileio.lmdb import LmdbWriter, encode_png
from dlst_plugin.fileio.resume import check_resume_settings, record_settings
from dlst_plugin.loading.networks import load_degrader, weights_digest

SETTINGS_FILE = 'generate_pairs.json'  # what a folder was made with; a resume must match it
LMDB_NAMES = ('degraded.lmdb', 'clean.lmdb')  # written in this order: a pair is done once its clean face is in
KEY_DIGITS = 8


@dataclass
class PairSettings:
    """How to draw and store the pairs; each field is the ``dlst-generate-pairs`` flag of the same name."""
    overwrite: bool = False  # delete the pairs already in this shard's folder first
    seed: int = 0
    weights: str = 'params_ema'  # or 'params'
    truncation: float = 1.0
    mixing_prob: float = 0.0
    batch_size: int = 8
    device: str = 'auto'
    weights_dir: str = None
    rank: int = None  # default: $RANK, else 0
    world_size: int = None  # default: $WORLD_SIZE, else 1
    png_level: int = 1
    encode_threads: int = 2
    commit_every: int = 64


@dataclass
class PairsSummary:
    """What :func:`generate_pairs` did: the shard folder, the pairs this run made, the keys the folder holds."""
    folder: str
    made: int
    keys: list


def shard_of(settings):
    rank = settings.rank if settings.rank is not None else int(os.environ.get('RANK', 0))
    world = settings.world_size if settings.world_size is not None else int(os.environ.get('WORLD_SIZE', 1))
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f'--rank must be in [0, --world-size); got rank {rank}, world size {world}')
    return rank, world


def pair_key(index):
    return f'{index:0{KEY_DIGITS}d}'


def pair_index(key):
    """The pair index a key stands for, or None when it is no key this module writes."""
    return int(key) if key.isdigit() and pair_key(int(key)) == key else None


def pair_seed(seed, index):
    """64-bit seed of pair ``index``: independent streams for every (seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def shard_folder(out, rank, world):
    return os.fspath(out) if world == 1 else os.path.join(out, f'shard{rank}of{world}')


def clear_folder(folder):
    """``overwrite``: remove the pairs and settings this module wrote into ``folder`` (nothing else)."""
    for name in LMDB_NAMES:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    if os.path.isfile(os.path.join(folder, SETTINGS_FILE)):
        os.remove(os.path.join(folder, SETTINGS_FILE))


def check_settings(folder, settings):
    """Refuse to resume a folder made with other settings (the pairs would not match); record them."""
    path = os.path.join(folder, SETTINGS_FILE)
    check_resume_settings(path, settings, folder)
    record_settings(path, settings)


def plan(writers, mine, rank, world, folder):
    """Indices to generate: this shard's pairs under ``count`` that either LMDB lacks, plus every pair only
    one LMDB holds (left by a kill between the two commits, perhaps of a run with a larger ``count``)."""
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


def write_pairs(net, todo, writers, settings, device, desc):
    """Generate and store the pairs ``todo``; return how many were made."""
    start, made = time.time(), 0
    with ThreadPoolExecutor(settings.encode_threads) as encode, \
            tqdm(total=len(todo), unit='pair', desc=desc, dynamic_ncols=True) as bar:
        for first in range(0, len(todo), settings.batch_size):
            indices = todo[first:first + settings.batch_size]
            clean, degraded = generate_batch(net, indices, settings.seed, device)
            pngs = list(encode.map(lambda img: encode_png(img, settings.png_level), [*degraded, *clean]))
            for j, i in enumerate(indices):  # degraded first: a pair is done once its clean face is in
                writers[0].put(pair_key(i), pngs[j], degraded[j].shape, settings.png_level)
                writers[1].put(pair_key(i), pngs[len(indices) + j], clean[j].shape, settings.png_level)
            made += len(indices)
            bar.update(len(indices))
            bar.set_postfix(images_per_s=f'{2 * made / max(time.time() - start, 1e-9):.2f}')
    return made


def summary(folder, writers, mine, count, made, seconds):
    """Print what the output holds (not only what this run made); InputError if the two LMDBs disagree."""
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
    return PairsSummary(folder, made, keys)


def prepare(model, output, settings):
    """(degrader, device, shard folder, rank, world size): the network loaded, the folder cleared (overwrite)
    and its settings checked against an earlier run's."""
    rank, world = shard_of(settings)
    device = pick_device(settings.device, error=ConfigError)
    net, state = load_degrader(resolve_model_path(model, settings.weights_dir), '--model', settings.weights,
                               device=device, truncation=settings.truncation, mixing_prob=settings.mixing_prob)
    folder = shard_folder(output, rank, world)
    if settings.overwrite:
        clear_folder(folder)
    check_settings(folder, {'weights_digest': weights_digest(state), 'weights': settings.weights,
                            'seed': settings.seed, 'truncation': settings.truncation,
                            'mixing_prob': settings.mixing_prob, 'world_size': world, 'out_size': net.out_size})
    return net, device, folder, rank, world


def generate_pairs(model, output, count, settings=None):
    """Make pairs ``0 .. count - 1`` (this shard's share) with the degrader checkpoint ``model`` into ``output``
    (``clean.lmdb`` and ``degraded.lmdb``, or a shard folder of them), resuming what an earlier run with the
    same settings stored; print a summary and return a :class:`PairsSummary`. Ctrl-C / SIGTERM commit every
    complete pair and raise Interrupted / Terminated saying so."""
    settings = settings or PairSettings()
    if min(count, settings.batch_size, settings.encode_threads, settings.commit_every) < 1:
        raise ConfigError('--count, --batch-size, --encode-threads and --commit-every must be at least 1')
    net, device, folder, rank, world = prepare(model, output, settings)
    writers = [LmdbWriter(os.path.join(folder, name), resume=True, compress_level=settings.png_level,
                          commit_every=settings.commit_every) for name in LMDB_NAMES]
    mine = range(rank, count, world)
    try:
        todo = plan(writers, mine, rank, world, folder)
        if len(todo) < len(mine):
            print(f'resuming {folder}: {len(mine) - len([i for i in todo if i < count])} of {len(mine)} pairs '
                  'already stored')
        start = time.time()
        made = write_pairs(net, todo, writers, settings, device, f'pairs (shard {rank}/{world})')
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (a command's handler raises it)
        raise interruption(err, f'the pairs made so far are kept in {folder}; rerun the same command to continue') \
            from None
    finally:
        for w in writers:
            w.close()  # commits every complete pair put so far
    return summary(folder, writers, mine, count, made, time.time() - start)
