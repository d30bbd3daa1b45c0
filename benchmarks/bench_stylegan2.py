"""512 px StyleGAN2 generator forward on one face: ours vs BasicSR's CPU path vs GFP-GAN's clean one.

    python benchmarks/bench_stylegan2.py [--size 512] [--repeat 3]

Prints time, GFLOPs and achieved GFLOP/s of each, the speed-up over BasicSR and the max abs
difference to BasicSR's output (same weights, styles and noise). BasicSR's fused activation is
CUDA-only, so its generator runs with that activation routed through torch (same math).
GFP-GAN's StyleGAN2GeneratorClean uses other math (bilinear resampling): timed, not compared.
"""
import argparse

import torch
from common import count_flops, header, time_call
from stylegan2_reference import route_fused_act_through_torch

from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512, help='output size (px)')
    parser.add_argument('--channel-multiplier', type=int, default=1, help='StyleGAN2 channel multiplier')
    parser.add_argument('--repeat', type=int, default=3, help='timed runs per network (median is printed)')
    args = parser.parse_args()
    header(f'StyleGAN2 generator, {args.size} px, channel multiplier {args.channel_multiplier}, batch 1')
    torch.manual_seed(0)
    basicsr_sg2 = route_fused_act_through_torch()
    ref = basicsr_sg2.StyleGAN2Generator(args.size, channel_multiplier=args.channel_multiplier).eval()
    ours = PureStyleGAN2Generator(args.size, channel_multiplier=args.channel_multiplier).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    z = [torch.randn(1, 512)]
    nets = {'BasicSR StyleGAN2Generator (torch act)': lambda: ref(z, randomize_noise=False)[0],
            'dlst PureStyleGAN2Generator fp32': lambda: ours(z, randomize_noise=False)[0]}
    ours_bf16 = PureStyleGAN2Generator(args.size, channel_multiplier=args.channel_multiplier).eval()
    ours_bf16.load_state_dict(ref.state_dict())
    ours_bf16 = ours_bf16.to(torch.bfloat16)
    nets['dlst PureStyleGAN2Generator bf16'] = lambda: ours_bf16([z[0].bfloat16()], randomize_noise=False)[0]
    try:
        from gfpgan.archs.stylegan2_clean_arch import StyleGAN2GeneratorClean
        clean = StyleGAN2GeneratorClean(args.size, channel_multiplier=args.channel_multiplier).eval()
        nets['GFP-GAN StyleGAN2GeneratorClean'] = lambda: clean(z, randomize_noise=False)[0]
    except ImportError:
        print('# gfpgan not installed: StyleGAN2GeneratorClean not timed')
    rows = {}
    with torch.no_grad():
        for name, fn in nets.items():
            seconds = time_call(fn, repeat=args.repeat)
            flops = count_flops(fn)
            rows[name] = seconds
            print(f'{name:42s} {seconds * 1000:8.1f} ms  {flops / 1e9:6.1f} GFLOPs  '
                  f'{flops / 1e9 / seconds:6.1f} GFLOP/s')
        diff = (nets['dlst PureStyleGAN2Generator fp32']() - nets['BasicSR StyleGAN2Generator (torch act)']()).abs()
        bf16 = (nets['dlst PureStyleGAN2Generator bf16']().float() - nets['BasicSR StyleGAN2Generator (torch act)']())
    base, fp32 = rows['BasicSR StyleGAN2Generator (torch act)'], rows['dlst PureStyleGAN2Generator fp32']
    bf16_time = rows['dlst PureStyleGAN2Generator bf16']
    print(f'speed-up over BasicSR: fp32 {base / fp32:.2f}x, bf16 {base / bf16_time:.2f}x')
    if 'GFP-GAN StyleGAN2GeneratorClean' in rows:
        print(f'speed-up over GFP-GAN clean: fp32 {rows["GFP-GAN StyleGAN2GeneratorClean"] / fp32:.2f}x')
    print(f'native bf16 convolutions on this CPU: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}')
    print(f'max abs diff to BasicSR: fp32 {diff.max().item():.2e}, bf16 {bf16.abs().max().item():.2e} '
          f'(output range +-{nets["dlst PureStyleGAN2Generator fp32"]().abs().max().item():.2f})')


if __name__ == '__main__':
    main()
