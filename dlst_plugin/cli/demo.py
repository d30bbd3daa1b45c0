"""``dlst-demo``: the whole DL-ST pipeline on the shipped sample photos, on a CPU, in minutes.

Stages (each one that finished is skipped on a rerun, so an interrupted demo continues):
  photos    "in-the-wild" photos: sample photos rescaled, rotated and degraded by a hidden process
  real_lq   dlst-collect-lq-faces: detect, crop, align the real LQ faces (paper 3.2.1)
  hq        HQ faces from the clean photos, aligned, into an LMDB (the FFHQ stand-in)
  degrader  train a tiny coupled StyleGAN2 degrader on the real LQ faces (paper 3.2.2-3.2.3)
  pairs     dlst-generate-pairs: (clean, degraded) pairs into two LMDBs (paper 3.2.4)
  restorer  train a tiny Skip-Transformer on the second-order set (paper 3.2.4, 3.3)
  restore   dlst-restore the in-the-wild photos (detect, align, restore, paste back)
  evaluate  dlst-evaluate: NIQE of the real LQ faces and of the restored faces
  report    an HTML report with pictures of every stage and the loss curves

The demo's networks are tiny and randomly initialised (no pretrained StyleGAN2, random VGG): they show
every stage working, not the paper's results. See README.md for the full-scale commands.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from dlst_plugin.image_files import is_image_file

ASSETS = Path(__file__).resolve().parents[1] / 'assets'
DEFAULT_PHOTOS = Path('datasets') / 'samples' / 'faces'
STAGES = ('photos', 'real_lq', 'hq', 'degrader', 'pairs', 'restorer', 'restore', 'evaluate', 'report')
# (degrader iterations, restorer iterations, pairs, photo variants per sample photo)
SETTINGS = {'full': (300, 400, 64, 8), 'fast': (20, 20, 8, 3)}


class DemoError(RuntimeError):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(prog='dlst-demo', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='demo_out', help='output folder (default: %(default)s)')
    p.add_argument('--photos', default=None,
                   help=f'folder of photos with faces (default: {DEFAULT_PHOTOS} of the checkout)')
    p.add_argument('--fast', action='store_true', help='a few iterations only (a smoke test of every stage)')
    p.add_argument('--size', type=int, default=64, help='face size of the tiny models (default: %(default)s)')
    p.add_argument('--dl-iters', type=int, default=None, help='degrader iterations (default: 300, --fast 20)')
    p.add_argument('--st-iters', type=int, default=None, help='restorer iterations (default: 400, --fast 20)')
    p.add_argument('--pairs', type=int, default=None, help='generated pairs (default: 64, --fast 8)')
    p.add_argument('--seed', type=int, default=0, help='seed of the photo variants (default: %(default)s)')
    p.add_argument('--restart', action='store_true', help='redo every stage, even those already done')
    return p.parse_args(argv)


def find_photos(arg):
    candidates = [Path(arg)] if arg else [DEFAULT_PHOTOS, Path(__file__).resolve().parents[2] / DEFAULT_PHOTOS]
    for folder in candidates:
        if folder.is_dir() and any(folder.iterdir()):
            return folder.resolve()
    raise DemoError(f'no photo folder found (tried {", ".join(map(str, candidates))}): pass --photos DIR')


def run_step(out, stage, args):
    """Run a plugin command in a subprocess; its output goes to OUT/logs/STAGE.log."""
    log = out / 'logs' / f'{stage}.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, '-m', *map(str, args)]
    with open(log, 'w') as f:
        f.write(' '.join(cmd) + '\n')
        f.flush()
        proc = subprocess.run(cmd, cwd=out, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = ''.join(log.read_text(errors='replace').splitlines(keepends=True)[-15:])
        raise DemoError(f'stage {stage} failed (exit {proc.returncode}); last lines of {log}:\n{tail}')


def make_photos(photos, out_dir, variants, seed, degrade):
    """Photo variants: random scale, small rotation and flip; ``degrade`` adds the demo's hidden
    'real-world' process (blur, noise, strong JPEG) that the degrader must learn from the faces alone."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in photos.iterdir() if is_image_file(p))
    if not sources:
        raise DemoError(f'no images in {photos}')
    for src in sources:
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if img is None:
            raise DemoError(f'cannot read {src}')
        for k in range(variants):
            h, w = img.shape[:2]
            scale = rng.uniform(0.35, 0.6) if degrade else rng.uniform(0.8, 1.2)
            m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-8, 8), scale)
            m[:, 2] += np.array([w, h]) * (scale - 1) / 2  # keep the scaled photo centred
            size = (int(w * scale), int(h * scale))
            var = cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
            if rng.random() < 0.5:
                var = var[:, ::-1]
            name = out_dir / f'{src.stem}_{k:02d}'
            if degrade:
                var = cv2.GaussianBlur(var, (0, 0), rng.uniform(0.8, 1.6))
                var = np.clip(var + rng.normal(0, rng.uniform(3, 8), var.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(f'{name}.jpg', var, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 45))])
            else:
                cv2.imwrite(f'{name}.png', var)


def photos_with_faces(out):
    """The in-the-wild photos the collection stage found a face in (a hard profile may have none)."""
    import csv
    with open(out / 'real_lq' / 'faces.csv', newline='') as f:
        sources = sorted({row['source'] for row in csv.DictReader(f)})
    if not sources:
        raise DemoError(f'no face was found in {out / "wild_photos"}')
    return [out / 'wild_photos' / name for name in sources]


def fill_options(template, dest, paths, iters):
    """Copy a demo option file with its FILLED_BY_DEMO entries set."""
    opt = yaml.safe_load(template.read_text())
    for phase, ds in opt['datasets'].items():
        for key in list(ds):
            if ds[key] == 'FILLED_BY_DEMO':
                ds[key] = str(paths[f'{phase}:{key}'] if f'{phase}:{key}' in paths else paths[key])
    opt['train']['total_iter'] = iters
    opt['logger']['save_checkpoint_freq'] = iters
    if 'val' in opt:
        opt['val']['val_freq'] = iters
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(opt, sort_keys=False))
    return dest


def stage_outputs(out):
    return {
        'photos': out / 'wild_photos', 'real_lq': out / 'real_lq', 'hq': out / 'hq.lmdb',
        'degrader': out / 'experiments' / 'demo_dl' / 'models' / 'net_g_latest.pth',
        'pairs': out / 'pairs' / 'degraded.lmdb' / 'meta_info.txt',
        'restorer': out / 'experiments' / 'demo_st' / 'models' / 'net_g_latest.pth',
        'restore': out / 'restored' / 'restored_imgs', 'evaluate': out / 'evaluation' / 'metrics.json',
        'report': out / 'report.html',
    }


def run_demo(args):
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    photos = find_photos(args.photos)
    dl_iters, st_iters, n_pairs, variants = SETTINGS['fast' if args.fast else 'full']
    dl_iters, st_iters = args.dl_iters or dl_iters, args.st_iters or st_iters
    n_pairs = args.pairs or n_pairs
    done = stage_outputs(out)
    opts = out / 'options'
    steps = {
        'photos': lambda: (make_photos(photos, out / 'wild_photos', variants, args.seed, degrade=True),
                           make_photos(photos, out / 'hq_photos', variants, args.seed + 1, degrade=False)),
        'real_lq': lambda: run_step(out, 'real_lq', ['dlst_plugin.cli.collect_lq_faces', out / 'wild_photos',
                                                     out / 'real_lq', '--size', args.size, '--min-size', 20]),
        'hq': lambda: (run_step(out, 'hq_faces', ['dlst_plugin.cli.collect_lq_faces', out / 'hq_photos',
                                                  out / 'hq_faces', '--size', args.size, '--min-size', 20]),
                       run_step(out, 'hq', ['dlst_plugin.cli.make_lmdb', out / 'hq_faces', out / 'hq.lmdb',
                                            '--overwrite'])),
        'degrader': lambda: run_step(out, 'degrader', ['dlst_plugin.train', '-opt', fill_options(
            ASSETS / 'demo_dl.yml', opts / 'demo_dl.yml', {'dataroot_lq': out / 'real_lq'}, dl_iters)]),
        'pairs': lambda: run_step(out, 'pairs', ['dlst_plugin.cli.generate_pairs', done['degrader'], out / 'pairs',
                                                 '-n', n_pairs]),
        'restorer': lambda: run_step(out, 'restorer', ['dlst_plugin.train', '-opt', fill_options(
            ASSETS / 'demo_st.yml', opts / 'demo_st.yml', {
                'dataroot_clean': out / 'pairs' / 'clean.lmdb', 'dataroot_degraded': out / 'pairs' / 'degraded.lmdb',
                'dataroot_hq': out / 'hq.lmdb'}, st_iters)]),
        'restore': lambda: run_step(out, 'restore', ['dlst_plugin.cli.restore', '-i', *photos_with_faces(out), '-o',
                                                     out / 'restored', '--opt', opts / 'demo_st.yml', '--model',
                                                     done['restorer'], '--compare']),
        'evaluate': lambda: run_step(out, 'evaluate', ['dlst_plugin.cli.evaluate', '--restored',
                                                       f'real LQ faces={out / "real_lq"}', '--restored',
                                                       f'DL-ST demo={out / "restored" / "restored_faces"}',
                                                       '--metrics', 'niqe', '--out', out / 'evaluation']),
        'report': lambda: write_report(out),
    }
    total = time.time()
    markers = out / 'stages'
    markers.mkdir(exist_ok=True)
    for i, stage in enumerate(STAGES, 1):
        marker = markers / f'{stage}.done'
        if marker.exists() and done[stage].exists() and not args.restart:
            print(f'[{i}/{len(STAGES)}] {stage}: already done ({done[stage]})', flush=True)
            continue
        t0 = time.time()
        print(f'[{i}/{len(STAGES)}] {stage} ...', end=' ', flush=True)
        marker.unlink(missing_ok=True)
        steps[stage]()
        marker.write_text(f'{time.time() - t0:.1f} s\n')
        print(f'{time.time() - t0:.1f} s', flush=True)
    print(f'done in {time.time() - total:.0f} s: open {done["report"]}')
    print('The demo networks are tiny and random-initialised: they show the pipeline, not the paper\'s quality.')


def write_report(out):
    from dlst_plugin.cli.demo_report import build_report
    (out / 'report.html').write_text(build_report(out), encoding='utf-8')


def main(argv=None):
    args = parse_args(argv)
    try:
        run_demo(args)
    except DemoError as err:
        print(f'\nerror: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ninterrupted: rerun the same command to continue', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
    sys.exit(main())
