"""Unlimited (degraded, clean) training pairs drawn on the training device from a trained degrader.

``train.stream_pairs`` of a restorer's option file::

    stream_pairs:
      degrader: experiments/DL_StyleGAN2_512/models/net_g_latest.pth   # a CoupledStyleGAN2 checkpoint
      ratio: 0.5          # share of streamed pairs in each batch (the data loader's batch is the rest)
      queue_size: 0       # > 0: a shuffled pool of that many pairs (Real-ESRGAN's); 0 = off
      mode: second_order  # or method1 (the paper's Table 3 ablation)
      seed: ~             # default: manual_seed
      degradation: {}     # GFP-GAN degradation keys (DegradedFaceDataset's names); defaults = GFP-GAN's recipe
      network: ~          # the degrader's network_g options; default: the checkpoint's meta, else its shapes

Every iteration the frozen EMA degrader turns fresh codes into a clean face (red) and a degraded one
(green); ``second_order`` puts GFP-GAN's degradation on top of the degraded face (input) and keeps the
clean face as the target; ``method1`` degrades half of the clean faces with GFP-GAN's recipe and uses
the other half's green faces as they are. The data loader's batch (FFHQ with its degradation) is kept
and the streamed pairs are appended: with ratio r and a loader batch of B, ``round(B * r / (1 - r))``
pairs (ratio 0.5: as many as the loader gives). Everything drawn depends only on (seed, iteration,
rank): a resumed run draws the pairs an uninterrupted one would, and each rank draws its own.

The pool (``queue_size``) is off by default: streamed pairs are already independent draws every
iteration (Real-ESRGAN's pool mixes batches that came from the same few images and degradation
batches), it holds ``queue_size`` pairs in device memory, and it is not saved with the training state,
so a resumed run refills it and its first iterations differ from an uninterrupted run's.
"""
import numpy as np
import torch

from dlst_plugin.errors import ConfigError

STREAM_KEYS = ('degrader', 'ratio', 'queue_size', 'mode', 'seed', 'degradation', 'network')
MODES = ('second_order', 'method1')


def stream_seed(seed, iteration, rank):
    """One 63-bit seed per (seed, iteration, rank)."""
    return int(np.random.SeedSequence([int(seed), int(iteration), int(rank)]).generate_state(2, np.uint64)[0] >> 1)


class PairStream:
    """Draws the streamed share of each training batch (see the module docstring)."""

    def __init__(self, stream_opt, device, rank=0, default_seed=0):
        unknown = sorted(set(stream_opt) - set(STREAM_KEYS))
        if unknown or not stream_opt.get('degrader'):
            raise ConfigError(f'train.stream_pairs: needs degrader (a CoupledStyleGAN2 checkpoint); unknown keys: '
                              f'{", ".join(unknown) or "none"}; known: {", ".join(STREAM_KEYS)}')
        from dlst_plugin.models.core_parts import option
        self.ratio = float(option(stream_opt, 'ratio', 0.5))
        self.queue_size = int(option(stream_opt, 'queue_size', 0))
        self.mode = option(stream_opt, 'mode', 'second_order')
        if not 0 < self.ratio < 1 or self.mode not in MODES or self.queue_size < 0:
            raise ConfigError(f'train.stream_pairs: ratio must be in (0, 1), mode one of {", ".join(MODES)}, '
                              f'queue_size >= 0; got {self.ratio}, {self.mode!r}, {self.queue_size}')
        from dlst_plugin.data.degradations import FaceDegradation
        self.cfg = FaceDegradation.from_opt(dict(stream_opt.get('degradation') or {}, use_hflip=False))
        self.seed = int(stream_opt['seed'] if stream_opt.get('seed') is not None else default_seed)
        self.device, self.rank = device, rank
        from dlst_plugin.degrader_files import load_degrader
        self.degrader = load_degrader(stream_opt['degrader'], 'train.stream_pairs.degrader',
                                      options=stream_opt.get('network'), device=device)[0]
        self.pool = None  # (lq, gt) tensors of the pool once it holds pairs
        self.pool_count = 0

    def count(self, loader_batch):
        return max(1, round(loader_batch * self.ratio / (1 - self.ratio)))

    @torch.no_grad()
    def draw(self, n, iteration):
        """``n`` fresh (lq, gt) pairs in [-1, 1], RGB, on the device, for ``iteration``."""
        from dlst_plugin.data.device_degradation import degrade_batch, sample_packed, to_gray
        seed = stream_seed(self.seed, iteration, self.rank)
        generator = torch.Generator(self.device).manual_seed(seed)
        codes = self.degrader.draw_codes(n, generator=generator)
        clean, degraded = self.degrader.generate(codes)
        clean, degraded = (clean.float().clamp(-1, 1) + 1) / 2, (degraded.float().clamp(-1, 1) + 1) / 2
        size = clean.shape[-1]
        if self.mode == 'second_order':
            source, keep = degraded, 0
        else:  # method1: the first half degraded clean faces, the rest the green faces as they are
            keep = n // 2
            source = clean[:n - keep]
        rngs = [np.random.default_rng([self.seed, iteration, self.rank, i]) for i in range(source.shape[0])]
        packed = sample_packed(self.cfg, rngs, size)
        lq, _ = degrade_batch(source, packed, generator=generator)
        # gt_gray: a target whose input was drawn gray is gray too (as SecondOrderFaceDataset does on the CPU)
        grayed = (packed['gray'] & packed['gt_gray']).to(self.device).view(-1, 1, 1, 1)
        head = clean[:source.shape[0]]
        clean = torch.cat([torch.where(grayed, to_gray(head), head), clean[source.shape[0]:]])
        if keep:
            lq = torch.cat([lq, degraded[n - keep:]])
        flip = torch.rand(n, generator=generator, device=self.device) < 0.5
        lq = torch.where(flip[:, None, None, None], lq.flip(-1), lq)
        gt = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
        return lq * 2 - 1, gt * 2 - 1

    def pairs(self, n, iteration):
        """The pairs of this iteration: fresh ones, or, with a full pool, ones the shuffled pool gives back."""
        if self.queue_size and self.queue_size < n:
            raise ConfigError(f'train.stream_pairs.queue_size ({self.queue_size}) must be at least the {n} streamed '
                              'pairs of a batch (Real-ESRGAN uses a multiple of the batch)')
        lq, gt = self.draw(n, iteration)
        if not self.queue_size:
            return lq, gt
        if self.pool is None:
            self.pool = (lq.new_empty((self.queue_size, *lq.shape[1:])), gt.new_empty((self.queue_size, *gt.shape[1:])))
        if self.pool_count + n <= self.queue_size:  # filling: keep and use the fresh pairs
            self.pool[0][self.pool_count:self.pool_count + n] = lq
            self.pool[1][self.pool_count:self.pool_count + n] = gt
            self.pool_count += n
            return lq, gt
        generator = torch.Generator(self.device).manual_seed(stream_seed(self.seed + 1, iteration, self.rank))
        order = torch.randperm(self.pool_count, generator=generator, device=self.device)
        taken = order[:n]
        out = self.pool[0][taken], self.pool[1][taken]  # index tensors gather into new tensors: no clone needed
        self.pool[0][taken], self.pool[1][taken] = lq, gt
        return out
