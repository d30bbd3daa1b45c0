"""Streamed pairs against pairs read from LMDB: seconds per training iteration of the same model, and the
device-side degradation's samples/s against the CPU data loader's per worker, in one run.

Questions (issue: unlimited pairs without a disk stage): does streaming cost <= 15% more per iteration
than LMDB pairs (at 512 px on a GPU; here measured at 64-128 px on the CPU, with how the ratio scales)?
Is the device-side degradation >= 10x one CPU data-loader worker (on a GPU)?

    python benchmarks/bench_stream_pairs.py [--size 128] [--batch 8] [--iters 3] [--narrow 0.25] [--device auto]

Both runs train a Skip-Transformer with the paper's losses (random VGG) and a StyleGAN2 D, batch B:
*LMDB*: B samples of ``SecondOrderFaceDataset`` (pairs written by the degrader to LMDB beforehand, FFHQ
from a folder), the degradation done by the data loader; *stream*: B/2 FFHQ faces from the loader with
the degradation on the device, B/2 pairs drawn by the degrader on the device. The loader's work is
timed apart (workers run it beside the step in real training); the step time includes everything the
device does, streamed pairs included. Widths are scaled by ``--narrow`` so the CPU finishes; the
degrader is a StyleGAN2 of the restorer's size and width.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from helpers import face_crops  # noqa: E402

import dlst_plugin  # noqa: E402,F401
from dlst_plugin.checkpoints.meta import network_metadata  # noqa: E402


def make_degrader(tmp, size, narrow):
    from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2
    opt = {'type': 'CoupledStyleGAN2', 'out_size': size, 'channel_multiplier': 1, 'narrow': narrow,
           'num_style_feat': 512 if narrow == 1 else 128, 'num_mlp': 8 if narrow == 1 else 2}
    net = CoupledStyleGAN2(**{k: v for k, v in opt.items() if k != 'type'})
    path = Path(tmp) / 'degrader.pth'
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict(), 'meta': network_metadata(opt)}, path)
    return path, net


def write_pairs(tmp, net, n, size):
    """n (clean, degraded) pairs of the degrader as PNG folders (what dlst-generate-pairs writes, minus LMDB)."""
    import cv2
    for sub in ('clean', 'degraded'):
        (Path(tmp) / sub).mkdir()
    with torch.no_grad():
        clean, degraded = net.generate(net.draw_codes(n, generator=torch.Generator().manual_seed(0)))
    for i in range(n):
        for sub, img in (('clean', clean[i]), ('degraded', degraded[i])):
            arr = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()[:, :, ::-1]
            cv2.imwrite(str(Path(tmp) / sub / f'{i:04d}.png'), arr)


def model_options(size, narrow, batch, degrader=None):
    opt = yaml.safe_load((REPO / 'tests' / 'options' / 'train_st_tiny.yml').read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=1 if torch.cuda.is_available() else 0)
    opt['path'] = {}
    for key in ('network_g', 'network_d'):
        opt[key].update(out_size=size, narrow=narrow)
    opt['network_g'].update(num_style_feat=128, num_mlp=2)
    opt['datasets'] = {'train': {'batch_size_per_gpu': batch}}
    if degrader:
        opt['train']['stream_pairs'] = {'degrader': str(degrader), 'ratio': 0.5}
    return opt


def loader_seconds(dataset, batch, rounds=3):
    """Seconds of one data-loader worker (this process, one thread) per batch."""
    start = time.process_time()
    for r in range(rounds):
        batches = [dataset[(r * batch + i) % len(dataset)] for i in range(batch)]
    return (time.process_time() - start) / rounds, torch.utils.data.default_collate(batches)


def step_seconds(model, data, iters):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    model.feed_data(data)
    model.optimize_parameters(1)
    sync()
    start = time.perf_counter()
    for it in range(2, 2 + iters):
        model.feed_data(data)
        model.optimize_parameters(it)
    sync()
    return (time.perf_counter() - start) / iters


def degradation_rates(size, batch):
    """samples/s of the device degradation (batch) vs ``apply_degradation`` on one CPU thread."""
    from dlst_plugin.data.degradations import DEFAULT_DEGRADATION, apply_degradation
    from dlst_plugin.data.device_degradation import degrade_batch, sample_packed
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    rngs = [np.random.default_rng([1, i]) for i in range(batch)]
    params = [DEFAULT_DEGRADATION.sample(np.random.default_rng([1, i])) for i in range(batch)]
    imgs = [np.random.default_rng(i).random((size, size, 3), dtype=np.float32) for i in range(batch)]
    start = time.process_time()
    for img, p in zip(imgs, params):
        apply_degradation(img, p)
    cpu = batch / (time.process_time() - start)
    gt = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).to(device)
    packed = sample_packed(DEFAULT_DEGRADATION, rngs, size)
    degrade_batch(gt, packed)  # warm-up
    start = time.perf_counter()
    degrade_batch(gt, packed)
    if device == 'cuda':
        torch.cuda.synchronize()
    return cpu, batch / (time.perf_counter() - start), device


def run(size, args):
    from basicsr.models import build_model

    from dlst_plugin.data.degraded_face_dataset import DegradedFaceDataset
    from dlst_plugin.data.second_order_face_dataset import SecondOrderFaceDataset
    with tempfile.TemporaryDirectory() as tmp:
        face_crops(Path(tmp) / 'faces', size=size, count=16, seed=0)
        degrader, net = make_degrader(tmp, size, args.narrow)
        write_pairs(tmp, net, 16, size)
        norm = {'mean': [0.5] * 3, 'std': [0.5] * 3, 'out_size': size, 'seed': 0}
        lmdb_set = SecondOrderFaceDataset({'dataroot_clean': f'{tmp}/clean', 'dataroot_degraded': f'{tmp}/degraded',
                                           'dataroot_hq': f'{tmp}/faces', **norm})
        share = DegradedFaceDataset({'dataroot_gt': f'{tmp}/faces', 'io_backend': {'type': 'disk'},
                                     'degradation_on_device': True, **norm})
        torch.manual_seed(0)
        load_lmdb, batch_lmdb = loader_seconds(lmdb_set, args.batch)
        load_stream, batch_stream = loader_seconds(share, args.batch // 2)
        lmdb_model = build_model(model_options(size, args.narrow, args.batch))
        stream_model = build_model(model_options(size, args.narrow, args.batch // 2, degrader))
        t_lmdb = step_seconds(lmdb_model, batch_lmdb, args.iters)
        t_stream = step_seconds(stream_model, batch_stream, args.iters)
    extra = t_stream / t_lmdb - 1
    print(f'{size:5d} {t_lmdb:9.3f} {t_stream:9.3f} {extra:+8.1%} {load_lmdb:11.3f} {load_stream:12.3f}')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, nargs='+', default=[64, 128], help='face sizes in px (default: %(default)s)')
    p.add_argument('--batch', type=int, default=8, help='training batch, half streamed (default: %(default)s)')
    p.add_argument('--iters', type=int, default=3, help='timed iterations per row (default: %(default)s)')
    p.add_argument('--narrow', type=float, default=0.25, help='width factor of the networks (1: the paper\'s)')
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f'# batch {args.batch}, narrow {args.narrow}, device {"cuda" if torch.cuda.is_available() else "cpu"}; '
          'step = G + D step with everything on the device; loader = one worker, CPU s per batch')
    print(f'{"size":>5s} {"LMDB s/it":>9s} {"stream":>9s} {"extra":>8s} {"LMDB loader":>11s} {"stream loader":>12s}')
    for size in args.size:
        run(size, args)
    cpu, device_rate, device = degradation_rates(512, args.batch)
    print(f'degradation at 512 px, batch {args.batch}: CPU worker {cpu:.1f} samples/s, {device} batched '
          f'{device_rate:.1f} samples/s ({device_rate / cpu:.2f}x)')


if __name__ == '__main__':
    main()
