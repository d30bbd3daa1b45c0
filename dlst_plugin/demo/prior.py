"""The demo's StyleGAN2 face prior, made in about a minute of CPU.

A StyleGAN2 learns faces adversarially from scratch in GPU-days; a tiny one on a CPU draws colour blobs
for thousands of iterations. So the demo starts its prior with a quick, non-adversarial **fit** of a
``PureStyleGAN2Generator`` to its HQ faces (``fit``), and BasicSR's own ``StyleGAN2Model`` then trains
it on the HQ faces as ``options/train_stylegan2_prior.yml`` does at full scale (the demo's
``assets/demo_prior.yml``), which also trains the discriminator the degrader and the restorer start from.

The fit, with one target face per source photo (K targets):

1. a code w_k per target and the synthesis network learn to draw, for a random z, the blend
   ``sum_k a_k(z) face_k`` from the style ``sum_k a_k(z) w_k``, where ``a(z) = softmax(beta <z/|z|, d_k>)``
   for K fixed random directions d_k (a large beta: nearly always one face, blends at the borders);
2. the mapping network learns ``z -> sum_k a_k(z) w_k``, so random z (what the degrader draws) land
   where the synthesis network was trained.

:func:`sample_prior` draws faces from a checkpoint's ``params_ema`` (what the degrader and the restorer load)
and reports how many of them OpenCV's YuNet face detector finds (each upscaled to 256 px).
"""
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from dlst_plugin.errors import InputError
from dlst_plugin.fileio.atomic import atomic_torch_save, atomic_write_image, atomic_write_text
from dlst_plugin.options.file import read_option_file

DETECT_SIDE = 256  # samples are upscaled (bicubic) to this side before detection
MAPPING_STEPS, MAPPING_BATCH = 1500, 256


def generator_options(option_file):
    """``network_g`` of a demo prior option file, without its ``type``."""
    net = dict(read_option_file(option_file)['network_g'])
    net.pop('type', None)
    return net


def build_generator(option_file):
    from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
    return PureStyleGAN2Generator(**generator_options(option_file))


def identity_of(path):
    """``astronaut_03_000.png`` (source photo ``astronaut``, variant 03, face 000) -> ``astronaut``."""
    parts = Path(path).stem.rsplit('_', 2)
    return parts[0] if len(parts) == 3 else Path(path).stem


def target_faces(folder, size):
    """One face per source photo (its first variant), as a (K, 3, size, size) tensor in [-1, 1] (RGB)."""
    import torch

    from dlst_plugin.fileio.images import list_images
    chosen = {}
    for _, path in list_images(folder):
        chosen.setdefault(identity_of(path), path)
    if not chosen:
        raise InputError(f'no face images in {folder}')
    faces = [cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
             for p in chosen.values()]
    array = np.stack([f[:, :, ::-1] for f in faces]).astype(np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(), sorted(chosen)


def blend_weights(z, directions, beta):
    import torch.nn.functional as F
    return F.softmax(beta * F.normalize(z, dim=1) @ directions.T, dim=1)


def fit_synthesis(g, faces, directions, steps, beta, lr, batch, log):
    """Step 1: codes w_k and the synthesis network draw the blends of the target faces."""
    import torch
    with torch.no_grad():
        codes = g.mapping(directions * math.sqrt(g.num_style_feat)).clone()
    codes.requires_grad_(True)
    params = [p for n, p in g.named_parameters() if not n.startswith('style_mlp.')] + [codes]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(1, steps + 1):
        a = blend_weights(torch.randn(batch, g.num_style_feat), directions, beta)
        out = g.synthesis((a @ codes)[:, None].expand(-1, g.num_latent, -1))
        loss = (out - torch.einsum('bk,kchw->bchw', a, faces)).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log(f'synthesis step {step}/{steps}: L1 {loss.item():.4f}', step, loss.item())
    return codes.detach()


def fit_mapping(g, codes, directions, beta, lr, log):
    """Step 2: the mapping network sends random z to the blended codes the synthesis network knows."""
    import torch
    opt = torch.optim.Adam(g.style_mlp.parameters(), lr=lr, betas=(0.9, 0.99))
    for step in range(1, MAPPING_STEPS + 1):
        z = torch.randn(MAPPING_BATCH, g.num_style_feat)
        loss = (g.mapping(z) - blend_weights(z, directions, beta) @ codes).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0:
            log(f'mapping step {step}/{MAPPING_STEPS}: MSE {loss.item():.5f} (codes variance '
                f'{codes.var(0).mean().item():.4f})')


def fit_prior(faces_dir, option_file, out, steps=500, beta=32.0, lr=0.01, batch=8, seed=0, curve=None):
    """Fit the generator of ``option_file``'s ``network_g`` to one face per source photo of ``faces_dir`` (aligned
    faces named <photo>_<variant>_<face>.png); write ``out`` (``params`` and ``params_ema``, what BasicSR's
    ``pretrain_network_g`` loads) and, when ``curve`` is given, the synthesis steps' L1 there (JSON)."""
    import torch
    torch.manual_seed(seed)
    g = build_generator(option_file).train()
    faces, names = target_faces(faces_dir, g.out_size)
    directions = torch.nn.functional.normalize(torch.randn(len(faces), g.num_style_feat), dim=1)
    t0, points = time.time(), []

    def log(msg, step=None, value=None):
        print(f'[{time.time() - t0:6.1f} s] {msg}', flush=True)
        if step is not None:
            points.append([step, value])
    log(f'fitting a {g.out_size} px generator to {len(faces)} faces ({", ".join(names)})')
    codes = fit_synthesis(g, faces, directions, steps, beta, lr, batch, log)
    # the mapping's weights are scaled by lr_mlp (0.01) in the forward pass: Adam needs a 1/lr_mlp larger step
    fit_mapping(g, codes, directions, beta, lr / g.style_mlp[1].lr_mul, log)
    state = g.state_dict()
    atomic_torch_save({'params': state, 'params_ema': state}, out)
    if curve is not None:
        atomic_write_text(curve, json.dumps(points))
    log(f'saved {out} (params, params_ema)')
    return Path(out)


def draw_samples(checkpoint, option_file, count, seed):
    """``count`` faces (BGR uint8) from the checkpoint's ``params_ema`` (else ``params``), fixed seed;
    ``checkpoint=None``: from a randomly initialised generator (what the demo had before it had a prior)."""
    import torch

    from dlst_plugin.loading.priors import load_into
    torch.manual_seed(seed)
    g = build_generator(option_file).eval()
    if checkpoint is not None:
        load_into(g, checkpoint, kind='generator')
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        img, _ = g([torch.randn(count, g.num_style_feat, generator=gen)],
                   noise=[torch.randn(count, *n.shape[1:], generator=gen) for n in g.fixed_noise()])
    from dlst_plugin.models.degradation_learning_utils import to_bgr_uint8
    return list(to_bgr_uint8(img))


def detection_scores(images, side=DETECT_SIDE):
    """YuNet's best face score per image (0 when it finds none), each image upscaled to ``side``."""
    from dlst_plugin.faces.detection import detect_faces
    scores = []
    for im in images:
        faces = detect_faces(cv2.resize(im, (side, side), interpolation=cv2.INTER_CUBIC))
        scores.append(round(faces[0].score, 3) if faces else 0.0)
    return scores


def reference_faces(folder, size, limit):
    """Up to ``limit`` real faces of ``folder``, resized to the generator's size (the samples' size)."""
    from dlst_plugin.fileio.images import list_images
    paths = [p for _, p in list_images(folder)][:limit]
    return [cv2.resize(cv2.imread(str(p), cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
            for p in paths]


def found(scores):
    return {'faces_found': sum(s > 0 for s in scores), 'images': len(scores)}


def sample_prior(checkpoint, option_file, out, count=32, seed=2023, reference=None):
    """Draw ``count`` faces from ``checkpoint`` (built by ``option_file``'s ``network_g``) into ``out``
    (sample_*.png) and count those YuNet finds, beside a randomly initialised generator's and, with ``reference``
    (a folder of real faces), those; write and return the summary (``out``/detection.json)."""
    images = draw_samples(checkpoint, option_file, count, seed)
    scores = detection_scores(images)
    comparison = {'random_generator': found(detection_scores(draw_samples(None, option_file, count, seed)))}
    if reference:
        comparison['real_faces'] = found(detection_scores(reference_faces(reference, images[0].shape[0], count)))
    out = Path(out)
    for i, im in enumerate(images):
        atomic_write_image(out / f'sample_{i:03d}.png', im)
    hits = sum(s > 0 for s in scores)
    summary = {'checkpoint': str(checkpoint), 'samples': len(images), 'faces_found': hits,
               'rate': hits / len(images), 'detector': 'yunet (default score threshold)',
               'upscaled_to': DETECT_SIDE, 'scores': scores, 'seed': seed, 'comparison': comparison}
    atomic_write_text(out / 'detection.json', json.dumps(summary, indent=1))
    print(f'YuNet found a face in {hits} of {len(images)} samples ({100 * hits / len(images):.0f} %); '
          + '; '.join(f'{k}: {v["faces_found"]} of {v["images"]}' for k, v in comparison.items()))
    return summary
