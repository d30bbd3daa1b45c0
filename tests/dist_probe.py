"""Test-only dataset wrapper that records which sample indices each rank reads, and each rank's process id
(``pid_rank<r>.txt``: the torchrun test signals one rank alone).

Loaded by an option file through BasicSR's YAML tag ``!!python/name:dist_probe.register``
(the plugin's documented way to bring extra modules into the registries)."""
import os

from basicsr.utils.registry import DATASET_REGISTRY


def register():
    if 'IndexRecordingDataset' in DATASET_REGISTRY:
        return

    @DATASET_REGISTRY.register()
    class IndexRecordingDataset(DATASET_REGISTRY.get('DegradedFaceDataset')):

        def __init__(self, opt):
            super().__init__(opt)
            with open(f'pid_rank{os.environ.get("RANK", "0")}.txt', 'w') as f:
                f.write(f'{os.getpid()}\n')

        def __getitem__(self, index):
            rank = os.environ.get('RANK', '0')
            with open(f'indices_rank{rank}.txt', 'a') as f:
                f.write(f'{index}\n')
            return super().__getitem__(index)


register()
