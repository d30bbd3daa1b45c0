"""``dlst-demo``: the whole DL-ST pipeline on the shipped sample photos, on a CPU, in minutes.

Stages (each one that finished is skipped on a rerun, so an interrupted demo continues):
  photos    "in-the-wild" photos (sample photos shrunk to small faces and degraded by a hidden process)
            and HQ photos (the sample photos, mildly rescaled)
  real_lq   dlst-collect-lq-faces: detect, crop, align the real LQ faces (paper 3.2.1)
  hq        HQ faces from the HQ photos, aligned, into an LMDB (the FFHQ stand-in)
  prior     a tiny StyleGAN2 face prior on the HQ faces: a quick fit, then BasicSR's StyleGAN2Model
            (options/train_stylegan2_prior.yml at full scale); samples checked with a face detector
  degrader  a tiny coupled StyleGAN2 degrader started from the prior, trained on the real LQ faces
            (paper 3.2.2-3.2.3)
  pairs     dlst-generate-pairs: (clean, degraded) pairs into two LMDBs (paper 3.2.4)
  restorer  a tiny Skip-Transformer (decoder and discriminator from the prior) on the second-order set
            (paper 3.2.4, 3.3)
  restore   dlst-restore the in-the-wild photos (detect, align, restore, paste back)
  evaluate  dlst-evaluate: NIQE (BasicSR and pyiqa) of the faces before and after restoration
  report    report.html: pictures of every stage, loss plots, timings

The demo's networks are tiny and trained for minutes on three photos: they show every stage working,
not the paper's results. See README.md for the full-scale commands.
"""
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.cli.demo_data import DemoError, fill_options, make_photos, photos_with_faces, training_updates
from dlst_plugin.fileio.atomic import atomic_write_text

ASSETS = Path(__file__).resolve().parents[1] / 'assets'
DEFAULT_PHOTOS = Path('datasets') / 'samples' / 'faces'
STAGES = ('photos', 'real_lq', 'hq', 'prior', 'degrader', 'pairs', 'restorer', 'restore', 'evaluate', 'report')


@dataclass(frozen=True)
class Settings:
    fit_steps: int  # steps of the prior's quick fit
    fit_lr: float
    prior_iters: int  # BasicSR StyleGAN2Model iterations after it
    dl_iters: int
    st_iters: int
    pairs: int
    variants: int  # photo variants per sample photo
    prior_samples: int = 32


SETTINGS = {'full': Settings(500, 0.01, 100, 100, 500, 64, 8), 'fast': Settings(300, 0.015, 10, 10, 10, 8, 3)}


def build_parser():
    p = make_parser('dlst-demo', __doc__)
    p.add_argument('-o', '--output', '--out', dest='out', default='demo_out',
                   help='output folder (default: %(default)s)')
    p.add_argument('--photos', default=None,
                   help=f'folder of photos with faces (default: {DEFAULT_PHOTOS} of the checkout, or the '
                        'copy installed with the package)')
    p.add_argument('--fast', action='store_true', help='a few iterations only (a smoke test of every stage)')
    p.add_argument('--size', type=int, default=64, help='face size of the tiny models (default: %(default)s)')
    p.add_argument('--fit-steps', type=int, default=None, help='steps of the prior\'s fit (default: 500, --fast 300)')
    p.add_argument('--prior-iters', type=int, default=None,
                   help='StyleGAN2Model iterations of the prior (default: 100, --fast 10)')
    p.add_argument('--dl-iters', type=int, default=None, help='degrader iterations (default: 100, --fast 10)')
    p.add_argument('--st-iters', type=int, default=None, help='restorer iterations (default: 500, --fast 10)')
    p.add_argument('--pairs', type=int, default=None, help='generated pairs (default: 64, --fast 8)')
    p.add_argument('--seed', type=int, default=0, help='seed of the photo variants (default: %(default)s)')
    p.add_argument('--threads', type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                   help='CPU threads per stage (default: half the cores, at most 4: %(default)s); tiny '
                        'networks gain little from more, and lose a lot when other programs use the cores')
    p.add_argument('--restart', action='store_true', help='redo every stage, even those already done')
    return p


def settings_of(args):
    base = SETTINGS['fast' if args.fast else 'full']
    given = {k: getattr(args, k) for k in ('fit_steps', 'prior_iters', 'dl_iters', 'st_iters', 'pairs')}
    return replace(base, **{k: v for k, v in given.items() if v})


def find_photos(arg):
    candidates = [Path(arg)] if arg else [DEFAULT_PHOTOS, Path(__file__).resolve().parents[2] / DEFAULT_PHOTOS,
                                          ASSETS / 'samples' / 'faces']  # the copy a wheel carries
    for folder in candidates:
        if folder.is_dir() and any(folder.iterdir()):
            return folder.resolve()
    raise DemoError(f'no photo folder found (tried {", ".join(map(str, candidates))}): pass --photos DIR')


def drop_log_handlers(stream):
    """Remove logging handlers a command attached to ``stream`` (its log file, about to be closed)."""
    import logging
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in [h for h in logger.handlers if getattr(h, 'stream', None) is stream]:
            logger.removeHandler(handler)


class Runner:
    """Runs the plugin's commands, each logged to OUT/logs/<step>.log: trainings in a subprocess (BasicSR's
    pipeline keeps global logger state), the other commands in this process (a new Python would spend
    seconds importing torch and BasicSR again for each)."""

    def __init__(self, out, threads):
        self.out = out
        self.threads = threads
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.env['PYTHONPATH'] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)

    def log_file(self, step, cmd):
        log = self.out / 'logs' / f'{step}.log'
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(' '.join(map(str, cmd)) + '\n')
        return log

    def failed(self, step, log, code):
        if code == 130:
            raise KeyboardInterrupt
        tail = ''.join(log.read_text(errors='replace').splitlines(keepends=True)[-15:])
        raise DemoError(f'step {step} failed (exit {code}); last lines of {log}:\n{tail}')

    def __call__(self, step, module, *args):
        """``module.main(args)`` in this process, its output in the step's log."""
        import contextlib
        import importlib

        import torch
        argv = [str(a) for a in args]
        log = self.log_file(step, ['python', '-m', module, *argv])
        torch.set_num_threads(self.threads)
        with open(log, 'a') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                code = importlib.import_module(module).main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                drop_log_handlers(f)
        if code:
            self.failed(step, log, code)

    def train(self, step, option_file):
        """``python -m dlst_plugin.train -opt option_file`` in a subprocess."""
        cmd = [sys.executable, '-m', 'dlst_plugin.train', '-opt', str(option_file)]
        log = self.log_file(step, cmd)
        with open(log, 'a') as f:
            proc = subprocess.run(cmd, cwd=self.out, stdout=f, stderr=subprocess.STDOUT, env=self.env)
        if proc.returncode != 0:
            self.failed(step, log, proc.returncode)


def stage_outputs(out):
    """What each stage leaves behind (a stage counts as done when its marker and this exist)."""
    return {
        'photos': out / 'wild_photos', 'real_lq': out / 'real_lq', 'hq': out / 'hq.lmdb',
        'prior': out / 'prior' / 'samples' / 'detection.json',
        'degrader': out / 'experiments' / 'demo_dl' / 'models' / 'net_g_latest.pth',
        'pairs': out / 'pairs' / 'degraded.lmdb' / 'meta_info.txt',
        'restorer': out / 'experiments' / 'demo_st' / 'models' / 'net_g_latest.pth',
        'restore': out / 'restored' / 'restored_imgs', 'evaluate': out / 'evaluation' / 'metrics.json',
        'report': out / 'report.html',
    }


def prior_files(out):
    models = out / 'experiments' / 'demo_prior' / 'models'
    return models / 'net_g_latest.pth', models / 'net_d_latest.pth'


def run_prior(out, run, s, size):
    """Fit, then BasicSR's StyleGAN2Model, then samples and their face-detection rate."""
    fit = out / 'prior' / 'fit.pth'
    updates = training_updates(s.prior_iters, size) | {'datasets:train:out_size': size,
                                                       'path:pretrain_network_g': str(fit)}
    opt = fill_options(ASSETS / 'demo_prior.yml', out / 'options' / 'demo_prior.yml',
                       {'dataroot_gt': out / 'hq.lmdb'}, updates)
    run('prior_fit', 'dlst_plugin.cli.demo_prior', 'fit', out / 'hq_faces', opt, fit, '--steps', s.fit_steps,
        '--lr', s.fit_lr)
    run.train('prior', opt)
    run('prior_samples', 'dlst_plugin.cli.demo_prior', 'sample', prior_files(out)[0], opt, out / 'prior' / 'samples',
        '-n', s.prior_samples, '--reference', out / 'hq_faces')


def run_degrader(out, run, s, size):
    net_g, net_d = prior_files(out)
    run.train('degrader', fill_options(ASSETS / 'demo_dl.yml', out / 'options' / 'demo_dl.yml', {
        'dataroot_lq': out / 'real_lq'}, training_updates(s.dl_iters, size) | {
        'datasets:train:out_size': size, 'datasets:val:out_size': size,
        'network_g:pretrained': str(net_g), 'path:pretrain_network_d': str(net_d)}))


def run_restorer(out, run, s, size):
    net_g, net_d = prior_files(out)
    run.train('restorer', fill_options(ASSETS / 'demo_st.yml', out / 'options' / 'demo_st.yml', {
        'dataroot_clean': out / 'pairs' / 'clean.lmdb', 'dataroot_degraded': out / 'pairs' / 'degraded.lmdb',
        'dataroot_hq': out / 'hq.lmdb'}, training_updates(s.st_iters, size, val=False) | {
        'datasets:train:out_size': size, 'network_g:decoder_load_path': str(net_g),
        'path:pretrain_network_d': str(net_d)}))


def run_evaluation(out, run):
    from dlst_plugin.cli.demo_data import ALIGNED_METHODS, REGION_METHODS, write_face_regions
    regions = write_face_regions(out)
    folders = [out / 'real_lq', out / 'restored' / 'restored_faces', regions['input'], regions['restored']]
    restored = [arg for name, folder in zip(ALIGNED_METHODS + REGION_METHODS, folders)
                for arg in ('--restored', f'{name}={folder}')]
    # NIQE from BasicSR, and from pyiqa too where it is installed (dlst-evaluate's --niqe-backend auto)
    run('evaluate', 'dlst_plugin.cli.evaluate', *restored, '--metrics', 'niqe', '--out', out / 'evaluation')


def stage_steps(out, photos, args, s):
    run = Runner(out, args.threads)
    done = stage_outputs(out)
    size = args.size
    return {
        'photos': lambda: (make_photos(photos, out / 'wild_photos', s.variants, args.seed, degrade=True),
                           make_photos(photos, out / 'hq_photos', s.variants, args.seed + 1, degrade=False)),
        'real_lq': lambda: run('real_lq', 'dlst_plugin.cli.collect_lq_faces', out / 'wild_photos', out / 'real_lq',
                               '--size', size, '--min-size', 20, '--workers', 1, '--overwrite'),
        'hq': lambda: (run('hq_faces', 'dlst_plugin.cli.collect_lq_faces', out / 'hq_photos', out / 'hq_faces',
                           '--size', size, '--min-size', 20, '--workers', 1, '--overwrite'),
                       run('hq', 'dlst_plugin.cli.make_lmdb', out / 'hq_faces', out / 'hq.lmdb', '--overwrite')),
        'prior': lambda: run_prior(out, run, s, size),
        'degrader': lambda: run_degrader(out, run, s, size),
        'pairs': lambda: run('pairs', 'dlst_plugin.cli.generate_pairs', done['degrader'], out / 'pairs',
                             '-n', s.pairs, '--overwrite'),
        'restorer': lambda: run_restorer(out, run, s, size),
        'restore': lambda: run('restore', 'dlst_plugin.cli.restore', '-i', *photos_with_faces(out), '-o',
                               out / 'restored', '--opt', out / 'options' / 'demo_st.yml', '--model',
                               done['restorer'], '--compare'),
        'evaluate': lambda: run_evaluation(out, run),
        'report': lambda: write_report(out),
    }


def run_demo(args):
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    photos = find_photos(args.photos)
    steps = stage_steps(out, photos, args, settings_of(args))
    done = stage_outputs(out)
    total = time.time()
    markers = out / 'stages'
    markers.mkdir(exist_ok=True)
    for i, stage in enumerate(STAGES, 1):
        marker = markers / f'{stage}.done'
        if marker.exists() and done[stage].exists() and not args.restart:
            print(f'[{i}/{len(STAGES)}] {stage}: already done ({done[stage]})', flush=True)
            continue
        t0 = time.time()
        load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
        print(f'[{i}/{len(STAGES)}] {stage} ...', end=' ', flush=True)
        marker.unlink(missing_ok=True)
        steps[stage]()
        atomic_write_text(marker, f'{time.time() - t0:.1f} s\nload {load:.2f} on {os.cpu_count()} cores at the start\n')
        print(f'{time.time() - t0:.1f} s', flush=True)
    print(f'done in {time.time() - total:.0f} s: open {done["report"]}')
    print('The demo networks are tiny and trained for minutes on three photos: they show the pipeline, '
          'not the paper\'s quality.')


def write_report(out):
    from dlst_plugin.cli.demo_report import build_report
    atomic_write_text(out / 'report.html', build_report(out))


def main(argv=None):
    return run_command(build_parser(), run_demo, argv,
                       interrupted='the stages that finished are kept: rerun the same command to continue')


if __name__ == '__main__':
    sys.exit(main())
