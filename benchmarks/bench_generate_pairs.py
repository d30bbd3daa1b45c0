"""Pairs/s of dlst-generate-pairs at 512 px on this machine vs the bare cost of the two networks.

Question (issue: degradation learning, item 8): how fast does pair generation run, and how much
does it add (code drawing, PNG encoding, LMDB writes) to the red + green synthesis it must do?

    python benchmarks/bench_generate_pairs.py [--size 512] [--pairs 6] [--batch-size 2]

Baseline, measured in the same run: two ``PureStyleGAN2Generator`` forwards (mapping + synthesis)
per pair at the same batch size, i.e. the ideal pairs/s. A random-initialised degrader
(channel multiplier 1, as GFP-GAN's 512 px prior) is saved as a checkpoint and run through the
CLI's ``main`` into a temporary folder; the figure excludes start-up (timed by the CLI itself).
"""
import argparse
import re
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import torch
from common import REPO, header, time_call

sys.path.insert(0, str(REPO))
from dlst_plugin.archs.coupled_stylegan2_arch import CoupledStyleGAN2  # noqa: E402
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator  # noqa: E402
from dlst_plugin.cli.generate_pairs import main as generate_pairs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512, help='generator size (px)')
    parser.add_argument('--pairs', type=int, default=6, help='pairs to generate')
    parser.add_argument('--batch-size', type=int, default=2, help='pairs per device batch')
    args = parser.parse_args()
    header(f'dlst-generate-pairs, {args.size} px, channel multiplier 1, batch {args.batch_size}')
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / 'net_g.pth'
        net = CoupledStyleGAN2(args.size, channel_multiplier=1)
        torch.save({'params_ema': net.state_dict()}, ckpt)
        del net
        out = StringIO()
        start = time.perf_counter()
        with redirect_stdout(out):
            status = generate_pairs([str(ckpt), str(Path(tmp) / 'pairs'), '-n', str(args.pairs),
                                     '--batch-size', str(args.batch_size), '--device', 'cpu'])
        total = time.perf_counter() - start
        if status:
            sys.exit(f'dlst-generate-pairs failed ({status})')
        seconds = float(re.search(r'in ([\d.]+) s', out.getvalue()).group(1))
    gen = PureStyleGAN2Generator(args.size, channel_multiplier=1).eval()
    z = [torch.randn(args.batch_size, 512)]
    with torch.no_grad():
        per_batch = time_call(lambda: gen(z), repeat=2)
    ideal = args.batch_size / (2 * per_batch)
    measured = args.pairs / seconds
    print(f'  dlst-generate-pairs: {measured:.3f} pairs/s ({2 * measured:.3f} images/s), '
          f'{seconds:.1f} s for {args.pairs} pairs (+{total - seconds:.1f} s start-up)')
    print(f'  baseline, 2 generator forwards per pair: {ideal:.3f} pairs/s')
    print(f'  ratio generate-pairs / baseline: {measured / ideal:.2f}x (1.0 = no overhead)')


if __name__ == '__main__':
    main()
