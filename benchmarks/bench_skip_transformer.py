"""Skip-Transformer inference cost at 512 px against GFP-GAN's GFPGANv1Clean, measured in one run.

Prints, per face (batch 1): forward time, peak memory (process RSS high-water mark during the
forward, above the RSS before it), GFLOPs (``torch.utils.flop_counter``) and achieved GFLOP/s, for
ST in float32 and bfloat16 and GFPGANv1Clean (channel multiplier 1) in float32 (and bfloat16 with
--baseline-bf16); GFLOPs and parameters of ST's parts; the bf16-vs-fp32 PSNR of ST's output.
Each measurement runs in its own process (clean memory high-water mark, no shared caches).

Targets (issue "Skip-Transformer", docs/design.md#toolchain): ST fp32 GFLOP/s >= GFPGANv1Clean's; ST bf16
faster per face than GFPGANv1Clean fp32 with bf16 output >= 35 dB PSNR of fp32.

    python benchmarks/bench_skip_transformer.py [--size 512] [--repeats 3] [--threads N] [--weights ST.pth]
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PSNR_TARGET_DB = 35.0


def build(name, size, weights=None):
    import torch

    import dlst_plugin  # noqa: F401
    torch.manual_seed(0)
    if name == 'ST':
        from dlst_plugin.archs.skip_transformer_arch import SkipTransformer
        net = SkipTransformer(size)
        if weights:
            state = torch.load(weights, map_location='cpu', weights_only=True)
            net.load_state_dict(state.get('params_ema', state.get('params', state)))
        return net.eval()
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    net = GFPGANv1Clean(out_size=size, num_style_feat=512, channel_multiplier=1, decoder_load_path=None,
                        fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return net.eval()


def _rss_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak_rss():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def st_parts(net, x):
    """GFLOPs per ST part from one counted forward (module names from the flop counter)."""
    import re

    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False, depth=2) as counter:
        net(x)
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    total = counts['Global']
    encoder = counts.get('SkipTransformer.encoder', 0)
    skips = sum(v for k, v in counts.items() if re.fullmatch(r'SkipTransformer\.skips\.\d+', k))
    params = {part: sum(p.numel() for p in getattr(net, part).parameters()) for part in ('encoder', 'skips', 'decoder')}
    return {'encoder': (encoder, params['encoder']), 'skip layers': (skips, params['skips']),
            'decoder': (total - encoder - skips, params['decoder'])}


def measure(name, dtype_name, size, repeats, threads, weights, device, queue):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    net = build(name, size, weights).to(device, dtype)
    x = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device, dtype)
    cuda = device == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result = {'threads': torch.get_num_threads()}
    with torch.no_grad():
        def forward():
            out = net(x)
            return out[0] if isinstance(out, tuple) else out
        with FlopCounterMode(display=False) as counter:
            forward()
        result['flops'] = counter.get_total_flops()
        if name == 'ST' and dtype_name == 'float32':
            result['parts'] = st_parts(net, x)
        forward()  # warm-up (oneDNN primitives / cuDNN plans, allocator)
        rss_before = _rss_kib('VmRSS:')
        result['peak_valid'] = torch.cuda.reset_peak_memory_stats() is None if cuda else _reset_peak_rss()
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            out = forward()
            sync()
            times.append(time.perf_counter() - start)
        result['peak_mib'] = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                              else (_rss_kib('VmHWM:') - rss_before) / 1024)
        result['seconds'] = statistics.median(times)
        result['output'] = out.float().cpu().numpy() if name == 'ST' else None
    queue.put(result)


def run_isolated(*args):
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def psnr(a, b, value_range=2.0):
    import math
    mse = float(((a - b)**2).mean())
    return float('inf') if mse == 0 else 10 * math.log10(value_range**2 / mse)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=512, help='face size in px (default 512, the paper\'s)')
    parser.add_argument('--repeats', type=int, default=3, help='timed forwards per configuration (median)')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (default: torch\'s choice)')
    parser.add_argument('--weights', default=None, help='trained ST checkpoint (default: random weights)')
    parser.add_argument('--baseline-bf16', action='store_true', help='also time GFPGANv1Clean in bfloat16')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'),
                        help='cpu: peak memory is the process RSS; cuda: CUDA max allocated')
    args = parser.parse_args(argv)
    try:
        import gfpgan  # noqa: F401
        have_gfpgan = True
    except ImportError:
        have_gfpgan = False
        print('gfpgan is not installed: no GFPGANv1Clean baseline (pip install gfpgan)')

    configs = [('ST', 'float32'), ('ST', 'bfloat16')]
    if have_gfpgan:
        configs.insert(0, ('GFPGANv1Clean', 'float32'))
        if args.baseline_bf16:
            configs.insert(1, ('GFPGANv1Clean', 'bfloat16'))
    results = {}
    for name, dtype in configs:
        results[name, dtype] = run_isolated(name, dtype, args.size, args.repeats, args.threads, args.weights,
                                            args.device)

    threads = next(iter(results.values()))['threads']
    print(f'\n{args.size} px, batch 1, {args.device}, {threads} threads, ST weights: {args.weights or "random"}')
    print(f'{"model":<15}{"dtype":<10}{"s/face":>9}{"peak MiB":>10}{"GFLOPs":>9}{"GFLOP/s":>9}')
    for (name, dtype), r in results.items():
        peak = f'{r["peak_mib"]:.0f}' if r['peak_valid'] else 'n/a'
        print(f'{name:<15}{dtype:<10}{r["seconds"]:>9.3f}{peak:>10}{r["flops"] / 1e9:>9.1f}'
              f'{r["flops"] / 1e9 / r["seconds"]:>9.1f}')
    print('\nST parts (float32):')
    for part, (flops, params) in results['ST', 'float32']['parts'].items():
        print(f'  {part:<12}{flops / 1e9:>8.1f} GFLOPs {params / 1e6:>8.2f} M parameters')
    st32, st16 = results['ST', 'float32'], results['ST', 'bfloat16']
    quality = psnr(st16['output'], st32['output'])
    print(f'\nST bf16 vs fp32 output: {quality:.1f} dB PSNR (target >= {PSNR_TARGET_DB:.0f}; weights '
          f'{"trained" if args.weights else "random"})')
    if have_gfpgan:
        base = results['GFPGANv1Clean', 'float32']
        rate = (st32['flops'] / st32['seconds']) / (base['flops'] / base['seconds'])
        speed = base['seconds'] / st16['seconds']
        print(f'ST fp32 GFLOP/s / GFPGANv1Clean fp32 GFLOP/s = {rate:.2f} (target >= 1)')
        print(f'GFPGANv1Clean fp32 s/face / ST bf16 s/face = {speed:.2f} (target > 1)')
        print(f'ST fp32 s/face / GFPGANv1Clean fp32 s/face = {st32["seconds"] / base["seconds"]:.2f}')


if __name__ == '__main__':
    main()
