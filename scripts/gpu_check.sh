#!/usr/bin/env bash
# GPU acceptance check: cuda-marked tests, 512 px ST and degrader runs (torchrun, NCCL, bf16 AMP),
# training-step and ST inference benchmarks on the GPU, one table of it/s, images/s and peak memory.
# Under 8 minutes on one CUDA GPU; exits non-zero on any failure.
#   bash scripts/gpu_check.sh [--out DIR] [--iters 300] [--batch 8]
#   bash scripts/gpu_check.sh --smoke        # the same plumbing on a CPU at 32 px (CI runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 1800 python scripts/gpu_check.py "$@"
