"""Training step of ST, the degrader and GLEAN against GFP-GAN's (GFPGANv1Clean + StyleGAN2 D, same losses):
seconds per iteration, achieved GFLOP/s and peak memory, for fp32, mixed precision and checkpointing.

Questions (issue: training at the paper's scale): does ST's step keep >= 1.5x GFP-GAN's achieved
GFLOP/s on a CPU in fp32? Does a 512 px batch of 8 fit in 16 GB with AMP + checkpointing? On a GPU, is
the bf16 AMP step >= 2x the fp32 step?

    python benchmarks/bench_train_step.py [--size 256] [--batch 1] [--iters 2] [--models st,dl,glean,gfpgan]
        [--modes fp32,amp,ckpt,amp+ckpt] [--amp-dtype bfloat16] [--device auto] [--estimate-512] [--profile N]

Every (model, mode) runs in a fresh process: full-width networks (channel multiplier 1, the paper's
512 px prior widths), random weights, the restorers' losses 1.0 L2 + 0.02 VGG16 + 0.02 vanilla GAN
(random VGG: no weight file needed), the degrader's 1.0 L2 + 0.02 pooled VGG19 + 0.01 softplus GAN.
FLOPs are counted by ``torch.utils.flop_counter`` over one whole step (G and D, forward and backward,
VGG). Peak memory: CUDA's max allocated on a GPU; on a CPU the process's peak resident memory above
what it held after building the model. ``--estimate-512`` measures batches 1 and 2 at ``--size`` and
extrapolates to 512 px, batch 8 (activations grow with pixels and batch; weights and Adam states
stay): how a GPU of a given size fits the paper's batch.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {'fp32': {}, 'amp': {'use_amp': True}, 'ckpt': {'use_checkpoint': True},
         'amp+ckpt': {'use_amp': True, 'use_checkpoint': True}, 'compile': {'compile': True},
         'amp+compile': {'use_amp': True, 'compile': True},
         'amp+contiguous': {'use_amp': True, 'channels_last': False}}
RESTORERS = {
    'st': {'type': 'SkipTransformer', 'channel_multiplier': 1, 'decoder_load_path': None},
    'glean': {'type': 'GLEANStyleGAN2', 'channel_multiplier': 1, 'fix_bank': True},
    'gfpgan': {'type': 'GFPGANv1Clean', 'channel_multiplier': 1, 'decoder_load_path': None, 'fix_decoder': False,
               'input_is_latent': True, 'different_w': True, 'sft_half': True},
}
CHECKPOINTABLE = ('st', 'glean')


def options(model, size, batch, mode, amp_dtype, narrow=1):
    """A BasicSR option dict for one measured model (single process, no data loader)."""
    flags = MODES[mode]
    train = {'use_amp': flags.get('use_amp', False), 'amp_dtype': amp_dtype, 'ema_decay': 0.999, 'total_iter': 1,
             'compile': flags.get('compile', False), 'channels_last': flags.get('channels_last'),
             'optim_g': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.5, 0.99]},
             'optim_d': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.5, 0.99]},
             'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1.0}}
    d = {'type': 'PureStyleGAN2Discriminator', 'out_size': size, 'channel_multiplier': 1, 'narrow': narrow}
    opt = {'name': 'bench', 'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'num_gpu': 0,
           'path': {}, 'network_d': d, 'train': train,
           'datasets': {'train': {'batch_size_per_gpu': batch}}}
    if model == 'dl':
        opt['model_type'] = 'DegradationLearningModel'
        opt['network_g'] = {'type': 'CoupledStyleGAN2', 'out_size': size, 'channel_multiplier': 1, 'narrow': narrow}
        train.update(perceptual_opt={'type': 'PooledVGGLoss', 'pool': 64, 'random_init': True, 'loss_weight': 0.02},
                     gan_opt={'type': 'GANLoss', 'gan_type': 'wgan_softplus', 'loss_weight': 0.01},
                     r1_reg_weight=10, net_d_reg_every=16)
        return opt
    net = dict(RESTORERS[model], out_size=size, narrow=narrow)
    if model == 'glean':
        net['in_size'] = size // 8  # Table 1's GLEAN: MMagic's x8 (23 RRDBs at the full size would cost 31x)
    if flags.get('use_checkpoint'):
        net['use_checkpoint'] = True
    opt.update(model_type='FaceRestorationModel', network_g=net)
    train.update(perceptual_opt={'type': 'VGGPerceptualLoss', 'vgg_type': 'vgg16', 'random_init': True,
                                 'layer_weights': {'conv3_3': 1.0, 'conv4_3': 1.0}, 'loss_weight': 0.02},
                 gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.02})
    return opt


def rss_mb(key='VmHWM'):
    """The process's peak (``VmHWM``) or current (``VmRSS``) resident memory in MB (Linux)."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(f'{key}:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def worker(spec):
    """Child process: build, warm up, time ``iters`` steps, count one step's FLOPs; print JSON."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    sys.path.insert(0, str(REPO))
    from basicsr.models import build_model

    import dlst_plugin  # noqa: F401
    opt = options(spec['model'], spec['size'], spec['batch'], spec['mode'], spec['amp_dtype'], spec['narrow'])
    cuda = spec['device'] == 'cuda'
    opt['num_gpu'] = 1 if cuda else 0
    torch.manual_seed(0)
    model = build_model(opt)
    x = torch.rand(spec['batch'], 3, spec['size'], spec['size']) * 2 - 1
    model.feed_data({'lq': x} if spec['model'] == 'dl' else {'lq': x, 'gt': x})
    base_mb = rss_mb('VmRSS')  # the built model; the warm-up's allocations count towards the peak
    t0 = time.perf_counter()
    model.optimize_parameters(1)  # warm-up (allocations, kernels; compilation with train.compile)
    first = time.perf_counter() - t0
    if spec['mode'].endswith('compile'):
        model.optimize_parameters(2)  # the D step's graph may compile on the second call
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    for it in range(2, 2 + spec['iters']):
        model.optimize_parameters(it)
    sync()
    seconds = (time.perf_counter() - t0) / spec['iters']
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb() - base_mb
    flops = 0
    if not spec['mode'].endswith('compile'):  # compiled kernels bypass the counter: the eager rows give the FLOPs
        with FlopCounterMode(display=False) as counter:
            model.optimize_parameters(99)
        flops = counter.get_total_flops()
    result = {'seconds': seconds, 'first_s': first, 'gflops': flops / 1e9, 'peak_mb': peak,
              'params_mb': sum(p.numel() * 4 for net in (model.bare_g, model.bare_d) for p in net.parameters()) / 2**20}
    if spec.get('profile'):
        result['profile'] = profile_step(model, spec['profile'])
    return result


CONVOLUTION_OPS = ('conv', 'mkldnn_convolution')


def profile_step(model, top):
    """One step under ``torch.profiler``: the ``top`` operators by self CPU time, and the convolutions' share."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.optimize_parameters(100)
    ops = [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(ms for _, ms, _ in ops)
    conv = sum(ms for name, ms, _ in ops if any(c in name for c in CONVOLUTION_OPS))
    ops.sort(key=lambda o: -o[1])
    return {'total_ms': total, 'conv_ms': conv, 'top': ops[:top]}


def print_profile(rows):
    for (model, mode), r in rows.items():
        prof = r.get('profile')
        if not prof:
            continue
        print(f'# profile of one {model} {mode} step: {prof["total_ms"]:.0f} ms of self CPU time, convolutions '
              f'{100 * prof["conv_ms"] / prof["total_ms"]:.0f} %')
        for name, ms, count in prof['top']:
            print(f'  {name:<44} {ms:9.1f} ms {100 * ms / prof["total_ms"]:5.1f} %  x{count}')


def measure(spec):
    code = f'import sys, json; sys.path.insert(0, {str(REPO / "benchmarks")!r}); import bench_train_step as b; ' \
           f'print(json.dumps(b.worker({spec!r})))'
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    if proc.returncode:
        return {'error': (proc.stderr.strip().splitlines() or ['?'])[-1][:150]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(rows, size, batch, device):
    print(f'# {size} px, batch {batch}, device {device}; peak memory: '
          f'{"CUDA max allocated" if device == "cuda" else "process peak RSS above the built model"}; first: '
          'seconds of the first step (compilation included)')
    print(f'{"model":8s} {"mode":14s} {"s/iter":>8s} {"img/s":>7s} {"GFLOP/step":>11s} {"GFLOP/s":>8s} '
          f'{"peak MB":>8s} {"first s":>8s}')
    for (model, mode), r in rows.items():
        if 'error' in r:
            print(f'{model:8s} {mode:14s} failed: {r["error"]}')
            continue
        if not r['gflops']:  # a compiled row: the same math as its eager row
            eager = rows.get((model, mode.replace('+compile', '').replace('compile', 'fp32')), {})
            r['gflops'] = eager.get('gflops', 0)
        print(f'{model:8s} {mode:14s} {r["seconds"]:8.3f} {batch / r["seconds"]:7.2f} {r["gflops"]:11.1f} '
              f'{r["gflops"] / r["seconds"]:8.1f} {r["peak_mb"]:8.0f} {r.get("first_s", 0):8.1f}')
    base = rows.get(('gfpgan', 'fp32'), {})
    for (model, mode), r in rows.items():
        if model != 'gfpgan' and 'gflops' in r and 'gflops' in base:
            print(f'{model} {mode}: {r["gflops"] / r["seconds"] / (base["gflops"] / base["seconds"]):.2f}x '
                  "GFP-GAN fp32's achieved GFLOP/s")


def estimate_512(args, device, fp32_only=False):
    """Peak memory at 512 px, batch 8 with AMP + checkpointing, from batches 1 and 2 at ``--size``; with
    ``fp32_only`` (a CPU without native bf16) the fp32 figures, an upper bound of the AMP ones."""
    for model in ('st', 'dl'):
        mode = ('ckpt' if fp32_only else 'amp+ckpt') if model in CHECKPOINTABLE else ('fp32' if fp32_only else 'amp')
        runs = [measure(dict(model=model, mode=mode, size=args.size, batch=b, iters=1, amp_dtype=args.amp_dtype,
                             device=device, narrow=1)) for b in (1, 2)]
        if any('error' in r for r in runs):
            print(f'estimate {model}: failed ({runs})')
            continue
        per_sample = max(runs[1]['peak_mb'] - runs[0]['peak_mb'], 0) * (512 / args.size) ** 2
        fixed = runs[0]['params_mb'] * 4  # G and D: weights, gradients, two Adam moments (fp32)
        total_gb = (fixed + 8 * per_sample) / 1024
        what = f'{mode}, fp32: an upper bound of AMP' if fp32_only else f'{mode}, {args.amp_dtype}'
        print(f'estimate {model} ({what}) at 512 px, batch 8: {total_gb:.1f} GB '
              f'(per sample {per_sample:.0f} MB, weights+grads+Adam {fixed:.0f} MB; measured at {args.size} px)')
        if fp32_only:  # autocast keeps the activations saved for backward in 16 bits: about half
            print(f'  with AMP, if its 16-bit activations halve the per-sample figure: '
                  f'{(fixed + 4 * per_sample) / 1024:.1f} GB (an estimate; a GPU run measures it)')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=256, help='face size in px (default: %(default)s)')
    p.add_argument('--batch', type=int, default=1, help='batch per step (default: %(default)s)')
    p.add_argument('--iters', type=int, default=2,
                   help='timed steps per row, after one warm-up step (default: %(default)s)')
    p.add_argument('--narrow', type=float, default=1.0, help='width factor of every network (1: the paper\'s)')
    p.add_argument('--models', default='st,dl,glean,gfpgan', help='comma-separated rows (default: %(default)s)')
    p.add_argument('--modes', default='fp32,amp,ckpt',
                   help='comma-separated: fp32, amp, ckpt (gradient checkpointing), amp+ckpt, compile (torch.compile), '
                        'amp+compile, amp+contiguous (amp with train.channels_last: false; amp rows take the default '
                        '~, channels-last where faster) (default: %(default)s)')
    p.add_argument('--amp-dtype', default='bfloat16', choices=('bfloat16', 'float16'),
                   help='autocast dtype of the amp rows')
    p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'), help='auto: CUDA when available')
    p.add_argument('--estimate-512', action='store_true', help='also print the 512 px batch-8 memory estimate')
    p.add_argument('--force-amp', action='store_true', help='run AMP rows on a CPU without native bfloat16 too')
    p.add_argument('--profile', type=int, default=0, metavar='N',
                   help='also profile one eager step per row and print its N costliest operators')
    p.add_argument('--json', help='also write the figures to this file')
    args = p.parse_args(argv)
    import torch
    sys.path.insert(0, str(REPO))
    from dlst_plugin.devices import cpu_has_native_bf16
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device
    rows = {}
    slow_amp = device == 'cpu' and args.amp_dtype == 'bfloat16' and not cpu_has_native_bf16()
    if slow_amp and not args.force_amp:
        print('# this CPU has no native bfloat16 convolution (oneDNN): PyTorch falls back to its per-group '
              'reference kernels, 100x+ slower; AMP rows are left out (--force-amp runs them anyway)')
    for model in args.models.split(','):
        for mode in args.modes.split(','):
            if ('ckpt' in mode and model not in CHECKPOINTABLE) or ('amp' in mode and slow_amp and not args.force_amp):
                continue
            rows[(model, mode)] = measure(dict(model=model, mode=mode, size=args.size, batch=args.batch,
                                               iters=args.iters, amp_dtype=args.amp_dtype, device=device,
                                               narrow=args.narrow,
                                               profile=0 if mode.endswith('compile') else args.profile))
    print_table(rows, args.size, args.batch, device)
    print_profile(rows)
    if args.estimate_512:
        estimate_512(args, device, fp32_only=slow_amp and not args.force_amp)
    if args.json:
        Path(args.json).write_text(json.dumps({f'{m}/{mode}': r for (m, mode), r in rows.items()}, indent=1))


if __name__ == '__main__':
    main()
