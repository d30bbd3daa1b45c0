"""Test-only dataset wrapper that records which sample indices each rank reads.

Loaded by an option file through BasicSR's YAML tag ``!!python/name:dist_probe.register``
(the plugin's documented way to bring extra modules into the registries)."""
import os

from basicsr.utils.registry import DATASET_REGISTRY


def register():
    if 'IndexRecordingDataset' in DATASET_REGISTRY:
        return

    @DATASET_REGISTRY.register()
    class IndexRecordingDataset(DATASET_REGISTRY.get('DegradedFaceDataset')):

        def __getitem__(self, index):
            rank = os.environ.get('RANK', '0')
            with open(f'indices_rank{rank}.txt', 'a') as f:
                f.write(f'{index}\n')
            return super().__getitem__(index)


register()
