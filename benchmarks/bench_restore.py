"""dlst-restore throughput on CPU: faces/s for 512 px faces, split into detection, alignment,
restoration and paste-back, in float32 and bfloat16 (issue "restore, evaluate, demo", item 6).

The photo is the shipped astronaut scaled up (--photo-scale) so its face is about as large as the
aligned face; the restorer is options/test_dlst.yml's network_g with random weights (speed does
not depend on the weights). Baselines measured in the same run: the restorer's share per stage,
bfloat16 against float32, and this module's ROI paste-back against ``faces.alignment.paste_face``
(which warps and blends the whole photo). Target: paste-back at most 10% of the time per face.

    python benchmarks/bench_restore.py [--size 512] [--photo-scale 3] [--repeats 2] [--threads N]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PASTE_SHARE_TARGET = 0.10


def build_restorer(size, dtype):
    import torch
    from basicsr.archs import build_network

    from dlst_plugin.inference.face_restorer import FaceRestorer
    from dlst_plugin.loading.networks import read_network_options
    torch.manual_seed(0)
    network = read_network_options(None)
    network['out_size'] = size
    if size < 512:  # default skip layers are those of a 512 px ST
        network.pop('skip_resolutions', None)
    net = build_network(network).eval().requires_grad_(False)
    return FaceRestorer(net, face_size=size, device='cpu', dtype=dtype, batch_size=1)


def run_stages(restorer, photo, repeats):
    """Seconds per face for each stage, summed over ``repeats`` runs after one warm-up."""
    from dlst_plugin.inference.face_restorer import STAGES
    restorer.restore_image(photo)
    totals, faces = dict.fromkeys(STAGES, 0.0), 0
    for _ in range(repeats):
        result = restorer.restore_image(photo)
        faces += len(result.faces)
        for stage, seconds in result.timings.items():
            totals[stage] += seconds
    return {stage: seconds / faces for stage, seconds in totals.items()}


def paste_baseline(restorer, photo, repeats=5):
    """(ROI paste_back, whole-photo paste_face) seconds for the photo's first face."""
    from dlst_plugin.faces.alignment import inverse_affine, paste_face
    from dlst_plugin.inference.face_restorer import paste_back
    result = restorer.restore_image(photo)
    face, affine = result.faces[0], result.affines[0]

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)
    ours = best(lambda: paste_back(photo.copy(), face, affine))
    copy_only = best(lambda: photo.copy())
    theirs = best(lambda: paste_face(photo, face, inverse_affine(affine)))
    return ours - copy_only, theirs


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=512, help='aligned face size (the restorer out_size)')
    p.add_argument('--photo-scale', type=float, default=3.0, help='upscale of the 512 px astronaut photo')
    p.add_argument('--repeats', type=int, default=2, help='timed runs per dtype (after one warm-up)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'], help='restorer dtypes to time')
    args = p.parse_args()

    import cv2
    import torch

    import dlst_plugin  # noqa: F401
    from dlst_plugin.devices import resolve_dtype
    from dlst_plugin.inference.face_restorer import STAGES
    if args.threads:
        torch.set_num_threads(args.threads)
    photo = cv2.imread(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    'datasets', 'samples', 'faces', 'astronaut.png'))
    photo = cv2.resize(photo, None, fx=args.photo_scale, fy=args.photo_scale, interpolation=cv2.INTER_CUBIC)
    print(f'# dlst-restore on CPU: {args.size} px faces, photo {photo.shape[1]}x{photo.shape[0]}, '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} runs after a warm-up')
    print(f'{"dtype":9s} {"faces/s":>8s} ' + ' '.join(f'{s + " s":>10s}' for s in STAGES) + f' {"paste %":>8s}')
    per_dtype = {}
    for dtype in args.dtypes:
        restorer = build_restorer(args.size, resolve_dtype(dtype, torch.device('cpu'), flag='--dtypes'))
        per_face = run_stages(restorer, photo, args.repeats)
        total = sum(per_face.values())
        per_dtype[dtype] = (total, per_face)
        share = per_face['paste'] / total
        print(f'{dtype:9s} {1 / total:8.3f} ' + ' '.join(f'{per_face[s]:10.4f}' for s in STAGES)
              + f' {100 * share:7.2f}%  (target <= {100 * PASTE_SHARE_TARGET:.0f}%: '
              + ('met' if share <= PASTE_SHARE_TARGET else 'MISSED') + ')')
    if 'float32' in per_dtype and 'bfloat16' in per_dtype:
        ratio = per_dtype['float32'][0] / per_dtype['bfloat16'][0]
        print(f'bfloat16 vs float32: {ratio:.2f}x faces/s')
    ours, theirs = paste_baseline(restorer, photo)
    print(f'paste-back per face: ROI paste_back {ours * 1e3:.1f} ms vs whole-photo faces.alignment.paste_face '
          f'{theirs * 1e3:.1f} ms ({theirs / max(ours, 1e-9):.1f}x faster)')


if __name__ == '__main__':
    main()
