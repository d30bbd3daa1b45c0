"""Whole-photo restoration, end to end: faces per second of the ``dlst-restore`` path (detection, alignment,
network, paste-back) against GFP-GAN's network and paste path, and the quality of the ``auto`` precision.

Question (issue "fast by default"): on a CPU with native bfloat16, does ``dlst-restore`` with its defaults
restore >= 2.5x more faces per second than GFP-GAN's float32 network and paste path, at >= 38 dB PSNR from
float32? On a CPU without it, is the default no slower than float32?

    python benchmarks/bench_restore_e2e.py [--repeats 2] [--skip-compile] [--train-iters 300]

Ours: ``FaceRestorer`` (what ``dlst-restore`` and ``DLSTer`` run) with the paper's 512 px Skip-Transformer
(channel multiplier 1, random weights: speed does not depend on them), in float32, ``auto`` and ``auto`` with
``compile``; YuNet finds the faces. GFP-GAN: its own ``GFPGANer.enhance`` code on ``GFPGANv1Clean`` (512 px,
channel multiplier 2: the released v1.3/v1.4 models) in float32 and bfloat16, handed the landmarks YuNet found
(its RetinaFace weights cannot be downloaded here, so its detection is not timed) and pasting without its face
parsing network (whose weights cannot be downloaded either): both favour GFP-GAN. Photos: the shipped samples,
each scaled so its face is about 512 px. Quality: PSNR of the ``auto`` restorations against float32, on the
random 512 px network and on a small restorer trained here for ``--train-iters`` iterations.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))
PHOTOS = REPO / 'datasets' / 'samples' / 'faces'


def photos():
    """The sample photos, each scaled so its largest face is about 512 px wide (YuNet's box)."""
    import cv2

    from dlst_plugin.faces.detection import build_detector
    detector, out = build_detector('yunet'), []
    for path in sorted(PHOTOS.glob('*.[pj][np]g')):
        img = cv2.imread(str(path))
        faces = detector.detect(img)
        if faces:
            scale = min(4.0, 512 / max(f.box[2] for f in faces))
            out.append(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    return out


def st_checkpoint(folder):
    import torch
    from basicsr.archs import build_network

    from dlst_plugin.checkpoints.meta import network_metadata
    from dlst_plugin.loading.networks import read_network_options
    torch.manual_seed(0)
    network = read_network_options(None)
    net = build_network(network)
    path = Path(folder) / 'st_512.pth'
    torch.save({'params_ema': net.state_dict(), 'meta': network_metadata(network)}, path)
    return path


def time_ours(model, images, dtype, repeats, compile_=False):
    """(faces/s, seconds to the first restored photo, restored faces, seconds per face by stage) of FaceRestorer."""
    from dlst_plugin.inference.face_restorer import STAGES, FaceRestorer
    t0 = time.perf_counter()
    restorer = FaceRestorer.from_files(str(model), dtype=dtype, compile=compile_)
    results = [restorer.restore_image(images[0])]
    first_s = time.perf_counter() - t0
    results += [restorer.restore_image(img) for img in images[1:]]
    faces, stages, t0 = 0, dict.fromkeys(STAGES, 0.0), time.perf_counter()
    for _ in range(repeats):
        for img in images:
            result = restorer.restore_image(img)
            faces += len(result.faces)
            for stage, seconds in result.timings.items():
                stages[stage] += seconds
    elapsed = time.perf_counter() - t0
    per_face = {k: v / max(faces, 1) for k, v in stages.items()}
    return faces / elapsed if faces else 0.0, first_s, [f for r in results for f in r.faces], per_face


def gfpganer(dtype):
    """GFP-GAN's GFPGANer around a random GFPGANv1Clean (512 px, channel multiplier 2), its face helper built
    without detector and parser weights (none can be downloaded here)."""
    import torch
    from facexlib.utils import face_restoration_helper as frh
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    from gfpgan.utils import GFPGANer
    torch.manual_seed(0)
    net = GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                        fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                        sft_half=True).eval()
    gfp = GFPGANer.__new__(GFPGANer)
    gfp.upscale, gfp.bg_upsampler, gfp.device = 1, None, torch.device('cpu')
    gfp.gfpgan = net if dtype == torch.float32 else CastTo(net, dtype)
    inits = frh.init_detection_model, frh.init_parsing_model
    frh.init_detection_model = frh.init_parsing_model = lambda *a, **k: None
    try:
        gfp.face_helper = frh.FaceRestoreHelper(1, face_size=512, crop_ratio=(1, 1), det_model='retinaface_resnet50',
                                                save_ext='png', use_parse=False, device=gfp.device)
    finally:
        frh.init_detection_model, frh.init_parsing_model = inits
    return gfp


class CastTo:
    """GFP-GAN's network in another dtype behind its float32 call (``GFPGANer.enhance`` feeds float32)."""

    def __init__(self, net, dtype):
        self.net, self.dtype = net.to(dtype), dtype

    def __call__(self, x, **kwargs):
        out = self.net(x.to(self.dtype), **kwargs)
        return (out[0].float(), ) + tuple(out[1:])


def time_gfpgan(images, landmarks, dtype, repeats):
    import numpy as np
    import torch
    gfp = gfpganer(dtype)

    def enhance(img, marks):
        helper = gfp.face_helper
        helper.get_face_landmarks_5 = lambda *a, **k: helper.all_landmarks_5.extend(
            np.asarray(m, np.float32) for m in marks)
        with torch.inference_mode():
            return gfp.enhance(img, has_aligned=False, paste_back=True)
    enhance(images[0], landmarks[0])
    faces, t0 = 0, time.perf_counter()
    for _ in range(repeats):
        for img, marks in zip(images, landmarks):
            faces += len(enhance(img, marks)[1])
    return faces / (time.perf_counter() - t0)


def psnr(a, b):
    import numpy as np
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0**2 / mse)


def trained_checkpoint(folder, iters):
    """A 64 px Skip-Transformer trained ``iters`` iterations on face crops (weights that have learnt something)."""
    import torch
    from basicsr.models import build_model
    from helpers import REPO as TESTS_REPO
    from helpers import face_crops, single_process_options
    face_crops(Path(folder) / 'faces', size=64, count=24, seed=1)
    opt = single_process_options(TESTS_REPO / 'tests' / 'options' / 'train_st_tiny.yml', Path(folder), ema_decay=0)
    opt['network_g'].update(out_size=64, narrow=1 / 8)
    opt['network_d'].update(out_size=64, narrow=1 / 8)
    opt['datasets']['train'].update(dataroot_gt=str(Path(folder) / 'faces'), out_size=64, batch_size_per_gpu=4)
    from basicsr.data import build_dataset
    data = torch.utils.data.DataLoader(build_dataset(dict(opt['datasets']['train'], phase='train')), batch_size=4,
                                       shuffle=True, drop_last=True)
    torch.manual_seed(0)
    model = build_model(opt)
    it = 0
    while it < iters:
        for batch in data:
            it += 1
            model.feed_data(batch)
            model.optimize_parameters(it)
            if it >= iters:
                break
    model.save(0, iters)
    return Path(folder) / 'models' / f'net_g_{iters}.pth'


def quality(model, images):
    """Mean PSNR (dB) of the restored faces (8-bit, aligned) in ``auto`` precision against float32."""
    import numpy as np
    ref, auto = time_ours(model, images, 'float32', 0)[2], time_ours(model, images, 'auto', 0)[2]
    return float(np.mean([psnr(a, b) for a, b in zip(ref, auto)]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=2, help='timed passes over the photos (after a warm-up)')
    p.add_argument('--skip-compile', action='store_true', help='leave out auto + compile (minutes of compiling)')
    p.add_argument('--train-iters', type=int, default=300, help='iterations of the small restorer of the '
                                                                 'quality check (0: skip it)')
    args = p.parse_args()
    import torch

    import dlst_plugin  # noqa: F401
    from dlst_plugin.devices import cpu_has_native_bf16, native_dtype
    from dlst_plugin.faces.detection import build_detector
    images = photos()
    detector = build_detector('yunet')
    landmarks = [[f.landmarks for f in detector.detect(img)] for img in images]
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               'unknown CPU')
    print(f'# {cpu}; native bf16: {cpu_has_native_bf16()}; auto = {native_dtype(torch.device("cpu"))[0]}; '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; {len(images)} photos, '
          f'{sum(map(len, landmarks))} faces, {args.repeats} passes after a warm-up')
    with tempfile.TemporaryDirectory() as folder:
        model = st_checkpoint(folder)
        rows = {}
        for label, dtype, comp in (('ours float32', 'float32', False), ('ours auto', 'auto', False),
                                   ('ours auto+compile', 'auto', True)):
            if comp and args.skip_compile:
                continue
            fps, first, _, stages = time_ours(model, images, dtype, args.repeats, comp)
            rows[label] = fps
            print(f'{label:22s} {fps:7.3f} faces/s   first photo after {first:6.1f} s   per face: '
                  + ', '.join(f'{k} {v:.3f} s' for k, v in stages.items()))
        for label, dtype in (('GFP-GAN float32', torch.float32), ('GFP-GAN bfloat16', torch.bfloat16)):
            rows[label] = time_gfpgan(images, landmarks, dtype, args.repeats)
            print(f'{label:22s} {rows[label]:7.3f} faces/s')
        base = rows['GFP-GAN float32']
        for label, fps in rows.items():
            print(f'{label:22s} {fps / base:5.2f}x GFP-GAN float32 (goal for the default, ours auto: >= 2.5x)')
        print(f'quality, random 512 px ST: auto vs float32 {quality(model, images):.1f} dB (goal >= 38)')
        if args.train_iters:
            small = trained_checkpoint(folder, args.train_iters)
            print(f'quality, 64 px ST trained {args.train_iters} iterations: auto vs float32 '
                  f'{quality(small, images):.1f} dB (goal >= 38)')


if __name__ == '__main__':
    main()
