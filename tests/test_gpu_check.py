"""scripts/gpu_check.sh, the GPU acceptance script, keeps working: its CPU smoke mode runs the same steps
(torchrun training runs of ST and the degrader, the benchmarks, the table) at 32 px."""
import json

import pytest
from helpers import REPO, run


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_and_writes_the_table(tmp_path):
    proc = run(['bash', REPO / 'scripts' / 'gpu_check.sh', '--smoke', '--out', tmp_path / 'out'], cwd=tmp_path,
               timeout=900)
    assert 'gpu_check: all steps passed' in proc.stdout, proc.stdout[-3000:]
    table = json.loads((tmp_path / 'out' / 'gpu_check.json').read_text())
    runs = [row['run'] for row in table]
    assert any(r.startswith('st 32px train fp32') for r in runs) and any(r.startswith('dl 32px train') for r in runs)
    assert any(r.startswith('bench st/fp32') for r in runs) and any(r.startswith('bench gfpgan/fp32') for r in runs)
    assert all(row['it_s'] and row['it_s'] > 0 for row in table)
