"""Shared by the tests: run the plugin's commands in a subprocess, make tiny face data."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE_FACES = REPO / 'datasets' / 'samples' / 'faces'
# square face boxes (x, y, w, h) in the shipped photos, from YuNet detections, widened
FACE_BOXES = {'astronaut.png': (152, 48, 140, 140), 'grace_hopper.jpg': (147, 106, 240, 240)}


def subprocess_env(**extra):
    """Environment for a child Python that imports this checkout (not an older install)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args, cwd, timeout=600, check=True, **env):
    """Run ``args`` (a list; ``python`` means this interpreter) and return the CompletedProcess."""
    args = [sys.executable if a == 'python' else str(a) for a in args]
    proc = subprocess.run(args, cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (for torchrun's rendezvous or a process group)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun(nproc, *args):
    """The command line of ``torchrun --nproc_per_node=nproc`` on a free port, running ``args``."""
    return ['python', '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
            *args]


def face_crops(out_dir, size=64, count=12, seed=0):
    """Write ``count`` augmented face crops (BGR PNG, ``size`` px) cut from the shipped photos.

    Crops jitter position/scale, flip and shift brightness, so train and held-out sets made
    with different seeds hold different images of the same faces.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [(cv2.imread(str(SAMPLE_FACES / name)), box) for name, box in FACE_BOXES.items()]
    paths = []
    for i in range(count):
        img, (x, y, w, h) = photos[i % len(photos)]
        scale = rng.uniform(0.85, 1.15)
        cw = int(w * scale)
        cx = int(np.clip(x + rng.integers(-w // 10, w // 10 + 1), 0, img.shape[1] - cw))
        cy = int(np.clip(y + rng.integers(-h // 10, h // 10 + 1), 0, img.shape[0] - cw))
        crop = cv2.resize(img[cy:cy + cw, cx:cx + cw], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        path = out_dir / f'face_{seed:02d}_{i:04d}.png'
        cv2.imwrite(str(path), crop)
        paths.append(path)
    return paths


def write_options(template, dest, updates):
    """Copy an option YAML, setting ``updates`` ({'a:b:c': value}) in it; returns ``dest``."""
    import yaml

    from dlst_plugin.options.file import set_dotted
    with open(template, encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    for dotted, value in updates.items():
        set_dotted(opt, dotted, value)
    with open(dest, 'w', encoding='utf-8') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return dest


def fill_option_paths(template, dest, folder, updates=None):
    """Copy a tiny option file, pointing every ``FILLED_BY_TEST`` data root at ``folder``."""
    import yaml
    with open(template, encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    filled = {f'datasets:{phase}:{key}': str(folder) for phase, ds in opt['datasets'].items()
              for key, value in ds.items() if value == 'FILLED_BY_TEST'}
    return write_options(template, dest, {**filled, **(updates or {})})


def call_main(main, argv):
    """(exit code, stdout, stderr) of a command's ``main(argv)``, run in this process."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def single_process_options(template, tmp_path, **train_updates):
    """An option file as BasicSR's parser hands it to a model in one CPU process, writing under
    ``tmp_path``, with ``train_updates`` set under ``train``."""
    import copy

    import yaml
    opt = yaml.safe_load(Path(template).read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt.setdefault('path', {}).update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'),
                                      visualization=str(tmp_path / 'vis'))
    for folder in ('models', 'states'):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    opt['train'].update(copy.deepcopy(train_updates))
    return opt


def noisy_batch(n=2, size=32, seed=0):
    """{'gt', 'lq'}: ``n`` random images in [-1, 1] and the same with Gaussian noise (sigma 0.2), clamped."""
    import torch
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return {'gt': gt, 'lq': (gt + 0.2 * torch.randn(gt.shape, generator=g)).clamp(-1, 1)}


def line_is_marked_set_me(lines, i):
    """Whether line ``i`` or the comment block right above it says ``SET ME``."""
    comments = [lines[i]]
    j = i - 1
    while j >= 0 and lines[j].strip().startswith('#'):
        comments.append(lines[j])
        j -= 1
    return any('SET ME' in c for c in comments)
