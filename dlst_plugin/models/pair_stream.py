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
(green). ``second_order`` puts GFP-GAN's degradation on top of the degraded face (input) and keeps the
clean face as the target; the data loader's batch (FFHQ with its degradation) is kept and the streamed
pairs are appended: with ratio r and a loader batch of B, ``round(B * r / (1 - r))`` pairs (ratio 0.5: as
many as the loader gives). ``method1`` is Table 3's ablation, with ``SecondOrderFaceDataset(mode: method1)``'s
composition: only synthetic faces, so the streamed pairs *replace* the loader's batch (same size; its faces
are not used), ``round(B * r)`` of them clean faces with GFP-GAN's degradation and the rest green faces as
they are. Everything drawn depends only on (seed, iteration, rank): a resumed run draws the pairs an
uninterrupted one would, and each rank draws its own. The keys, defaults and ranges are declared in
:class:`dlst_plugin.options.blocks.StreamPairs`.

The pool (``queue_size``) is off by default: streamed pairs are already independent draws every
iteration (Real-ESRGAN's pool mixes batches that came from the same few images and degradation
batches), it holds ``queue_size`` pairs in device memory, and it is not saved with the training state,
so a resumed run refills it and its first iterations differ from an uninterrupted run's.
"""
import numpy as np
import torch

from dlst_plugin.errors import ConfigError
from dlst_plugin.options.blocks import StreamPairs

WHERE = 'train.stream_pairs'


def stream_seed(seed, iteration, rank):
    """One 63-bit seed per (seed, iteration, rank)."""
    return int(np.random.SeedSequence([int(seed), int(iteration), int(rank)]).generate_state(2, np.uint64)[0] >> 1)


class PairStream:
    """Draws the streamed share of each training batch (see the module docstring)."""

    def __init__(self, stream_opt, device, rank=0, default_seed=0):
        opt = stream_opt if isinstance(stream_opt, StreamPairs) else StreamPairs.decode(stream_opt, WHERE)
        self.ratio, self.queue_size, self.mode = opt.ratio, opt.queue_size, opt.mode
        self.cfg = degradation_recipe(opt)
        self.seed = int(opt.seed if opt.seed is not None else default_seed)
        self.device, self.rank = device, rank
        from dlst_plugin.loading.networks import load_degrader
        self.degrader = load_degrader(opt.degrader, f'{WHERE}.degrader', options=opt.network, device=device)[0]
        self.pool = None  # (lq, gt) tensors of the pool once it holds pairs
        self.pool_count = 0

    def check_size(self, input_size, target_size):
        """ConfigError when the degrader's faces cannot be the restorer's targets (sizes differ)."""
        size = self.degrader.out_size
        if target_size and size != target_size:
            raise ConfigError(f'{WHERE}.degrader draws {size} px faces but the restorer restores {target_size} px '
                              f'faces (input {input_size} px): train a degrader of the restorer\'s size')

    @property
    def replaces_batch(self):
        """Method (1) uses no FFHQ faces: the streamed pairs are the whole batch."""
        return self.mode == 'method1'

    def count(self, loader_batch):
        if self.replaces_batch:
            return loader_batch
        return max(1, round(loader_batch * self.ratio / (1 - self.ratio)))

    def composition(self, n):
        """(GFP-GAN-degraded faces, green faces as they are) among ``n`` streamed pairs."""
        if self.mode == 'second_order':
            return n, 0
        degraded = round(n * self.ratio)
        return degraded, n - degraded

    @torch.no_grad()
    def draw(self, n, iteration):
        """``n`` fresh (lq, gt) pairs in [-1, 1], RGB, on the device, for ``iteration``."""
        seed = stream_seed(self.seed, iteration, self.rank)
        generator = torch.Generator(self.device).manual_seed(seed)
        codes = self.degrader.draw_codes(n, generator=generator)
        clean, degraded = self.degrader.generate(codes)
        clean, degraded = (clean.float().clamp(-1, 1) + 1) / 2, (degraded.float().clamp(-1, 1) + 1) / 2
        count, keep = self.composition(n)
        # second_order: GFP-GAN's degradation of every green face; method1: of the first clean faces
        source = degraded if self.mode == 'second_order' else clean[:count]
        lq, clean = self.degrade(source, clean, iteration, generator) if count else (source, clean)
        if keep:
            lq = torch.cat([lq, degraded[n - keep:]])
        flip = torch.rand(n, generator=generator, device=self.device) < 0.5
        lq = torch.where(flip[:, None, None, None], lq.flip(-1), lq)
        gt = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
        return lq * 2 - 1, gt * 2 - 1

    def degrade(self, source, clean, iteration, generator):
        """GFP-GAN's degradation of ``source`` (the first faces of the batch) on the device, and the clean
        faces with the targets of gray inputs made gray (``gt_gray``, as SecondOrderFaceDataset does)."""
        from dlst_plugin.data.device_degradation import degrade_batch, sample_packed, to_gray
        rngs = [np.random.default_rng([self.seed, iteration, self.rank, i]) for i in range(source.shape[0])]
        packed = sample_packed(self.cfg, rngs, clean.shape[-1])
        lq, _ = degrade_batch(source, packed, generator=generator)
        grayed = (packed['gray'] & packed['gt_gray']).to(self.device).view(-1, 1, 1, 1)
        head = clean[:source.shape[0]]
        return lq, torch.cat([torch.where(grayed, to_gray(head), head), clean[source.shape[0]:]])

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


def degradation_recipe(opt):
    """The GFP-GAN recipe of ``train.stream_pairs.degradation`` (no flip: the stream flips pairs itself)."""
    from dlst_plugin.data.degradations import FaceDegradation
    return FaceDegradation.decode(dict(opt.degradation, use_hflip=False), f'{WHERE}.degradation')


def degrader_size_problem(path, network=None, restorer_size=None):
    """``[problem]`` when ``path`` is no readable degrader checkpoint or draws faces of another size than the
    restorer's ``out_size`` (read from its options, meta or shapes; nothing is built), else ``[]``."""
    from dlst_plugin.loading.networks import degrader_size
    where = f'{WHERE}.degrader'
    try:
        size = degrader_size(path, where, network)
    except ConfigError as err:
        return [str(err)]
    if restorer_size and size and int(size) != int(restorer_size):
        return [f'{where}: {path} draws {size} px faces but network_g restores {restorer_size} px faces: train a '
                'degrader of the restorer\'s size']
    return []
