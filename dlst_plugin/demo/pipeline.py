"""The demo's stages, run in order by :func:`run_demo` (each one that finished is skipped on a rerun, so an
interrupted demo continues):

  photos    "in-the-wild" photos (sample photos shrunk to small faces and degraded by a hidden process)
            and HQ photos (the sample photos, mildly rescaled)
  real_lq   detect, crop, align the real LQ faces (paper 3.2.1; faces.harvest)
  hq        HQ faces from the HQ photos, aligned, into an LMDB (the FFHQ stand-in; fileio.folder_lmdb)
  prior     a tiny StyleGAN2 face prior on the HQ faces: a quick fit, then BasicSR's StyleGAN2Model
            (options/train_stylegan2_prior.yml at full scale); samples checked with a face detector
  degrader  a tiny coupled StyleGAN2 degrader started from the prior, trained on the real LQ faces
            (paper 3.2.2-3.2.3)
  pairs     (clean, degraded) pairs into two LMDBs (paper 3.2.4; inference.pairs)
  restorer  a tiny Skip-Transformer (decoder and discriminator from the prior) on the second-order set
            (paper 3.2.4, 3.3)
  restore   restore the in-the-wild photos: detect, align, restore, paste back (inference.restore_files)
  evaluate  NIQE (BasicSR and pyiqa) of the faces before and after restoration (metrics.evaluation)
  report    report.html: pictures of every stage, loss plots, timings

Every stage but the trainings calls the plugin's library in this process, its output in ``OUT/logs/<step>.log``;
the trainings run ``python -m dlst_plugin.train`` in a subprocess (BasicSR's pipeline keeps global logger state).
"""
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dlst_plugin.demo.data import DemoError, fill_options, make_photos, training_updates
from dlst_plugin.demo.layout import ASSETS, STAGES, stage_outputs
from dlst_plugin.demo.steps import StepRunner
from dlst_plugin.errors import ConfigError
from dlst_plugin.fileio.atomic import atomic_write_text
from dlst_plugin.fileio.shipped import shipped_folder

DEFAULT_PHOTOS = Path('datasets') / 'samples' / 'faces'


@dataclass(frozen=True)
class Settings:
    """How long the demo trains: the preset of ``dlst-demo`` (full or ``--fast``), flags overriding fields."""
    fit_steps: int  # steps of the prior's quick fit
    fit_lr: float
    prior_iters: int  # BasicSR StyleGAN2Model iterations after it
    dl_iters: int
    st_iters: int
    pairs: int
    variants: int  # photo variants per sample photo
    prior_samples: int = 32
    size: int = 64  # face size of the tiny models
    seed: int = 0  # seed of the photo variants


PRESETS = {'full': Settings(500, 0.01, 100, 100, 500, 64, 8), 'fast': Settings(300, 0.015, 10, 10, 10, 8, 3)}


def demo_settings(fast=False, **overrides):
    """The full or fast preset with ``overrides`` (fields of :class:`Settings`; None or 0 keeps the preset's)."""
    return replace(PRESETS['fast' if fast else 'full'], **{k: v for k, v in overrides.items() if v})


def find_photos(folder=None):
    """``folder``, else the sample photos of the working folder, else the shipped ones (of the checkout, or the copy
    a wheel carries: :func:`~dlst_plugin.fileio.shipped.shipped_folder`); DemoError when none holds a file."""
    candidates = [Path(folder)] if folder else [DEFAULT_PHOTOS, *shipped_photos()]
    for path in candidates:
        if path.is_dir() and any(path.iterdir()):
            return path.resolve()
    raise DemoError(f'no photo folder found (tried {", ".join(map(str, candidates))}): pass --photos DIR')


def shipped_photos():
    """[the shipped sample photo folder], or [] when this installation has none."""
    try:
        return [shipped_folder('assets/samples/faces')]
    except ConfigError:
        return []


def photos_stage(out, photos, s):
    make_photos(photos, out / 'wild_photos', s.variants, s.seed, degrade=True)
    make_photos(photos, out / 'hq_photos', s.variants, s.seed + 1, degrade=False)


def harvest_faces(run, step, photos, faces, s):
    """The aligned faces of the photo folder ``photos`` into ``faces`` (every photo must be read)."""
    from dlst_plugin.faces.harvest import HarvestOptions, harvest_folder
    run.call(step, harvest_folder, photos, faces, HarvestOptions(size=s.size, min_size=20), workers=1,
             overwrite=True, what='faces', problem=lambda summary: summary['errors'] and
             f'{summary["errors"]} photo(s) could not be processed')


def hq_stage(out, run, s):
    from dlst_plugin.fileio.folder_lmdb import LmdbSettings, make_lmdb
    harvest_faces(run, 'hq_faces', out / 'hq_photos', out / 'hq_faces', s)
    run.call('hq', make_lmdb, out / 'hq_faces', out / 'hq.lmdb', LmdbSettings(overwrite=True),
             problem=lambda result: result.skipped and f'{len(result.skipped)} image(s) could not be read')


def prior_stage(out, run, s):
    """Fit, then BasicSR's StyleGAN2Model, then samples and their face-detection rate."""
    from dlst_plugin.demo.layout import fit_curve_file, prior_files
    from dlst_plugin.demo.prior import fit_prior, sample_prior
    fit = out / 'prior' / 'fit.pth'
    updates = training_updates(s.prior_iters, s.size) | {'datasets:train:out_size': s.size,
                                                         'path:pretrain_network_g': str(fit)}
    opt = fill_options(ASSETS / 'demo_prior.yml', out / 'options' / 'demo_prior.yml',
                       {'dataroot_gt': out / 'hq.lmdb'}, updates)
    run.call('prior_fit', fit_prior, out / 'hq_faces', opt, fit, steps=s.fit_steps, lr=s.fit_lr,
             curve=fit_curve_file(out))
    run.train('prior', opt)
    run.call('prior_samples', sample_prior, prior_files(out)[0], opt, out / 'prior' / 'samples',
             count=s.prior_samples, reference=out / 'hq_faces')


def degrader_stage(out, run, s):
    from dlst_plugin.demo.layout import prior_files
    net_g, net_d = prior_files(out)
    run.train('degrader', fill_options(ASSETS / 'demo_dl.yml', out / 'options' / 'demo_dl.yml', {
        'dataroot_lq': out / 'real_lq'}, training_updates(s.dl_iters, s.size) | {
        'datasets:train:out_size': s.size, 'datasets:val:out_size': s.size,
        'network_g:pretrained': str(net_g), 'path:pretrain_network_d': str(net_d)}))


def pairs_stage(out, run, s):
    from dlst_plugin.inference.pairs import PairSettings, generate_pairs
    run.call('pairs', generate_pairs, stage_outputs(out)['degrader'], out / 'pairs', s.pairs,
             PairSettings(overwrite=True))


def restorer_stage(out, run, s):
    from dlst_plugin.demo.layout import prior_files
    net_g, net_d = prior_files(out)
    run.train('restorer', fill_options(ASSETS / 'demo_st.yml', out / 'options' / 'demo_st.yml', {
        'dataroot_clean': out / 'pairs' / 'clean.lmdb', 'dataroot_degraded': out / 'pairs' / 'degraded.lmdb',
        'dataroot_hq': out / 'hq.lmdb'}, training_updates(s.st_iters, s.size, val=False) | {
        'datasets:train:out_size': s.size, 'network_g:decoder_load_path': str(net_g),
        'path:pretrain_network_d': str(net_d)}))


def restore_stage(out, run):
    from dlst_plugin.demo.data import photos_with_faces
    from dlst_plugin.inference.restore_files import RestoreSettings, restore_files
    run.call('restore', restore_files, photos_with_faces(out), out / 'restored', stage_outputs(out)['restorer'],
             RestoreSettings(opt=str(out / 'options' / 'demo_st.yml'), compare=True),
             problem=lambda summary: summary.failed and f'{len(summary.failed)} photo(s) failed')


def evaluate_stage(out, run):
    """NIQE from BasicSR, and from pyiqa too where it is installed (the evaluation's niqe_backend auto)."""
    from dlst_plugin.demo.data import write_face_regions
    from dlst_plugin.demo.layout import ALIGNED_METHODS, REGION_METHODS
    from dlst_plugin.metrics.evaluation import EvaluationSettings, evaluate
    regions = write_face_regions(out)
    folders = [out / 'real_lq', out / 'restored' / 'restored_faces', regions['input'], regions['restored']]
    run.call('evaluate', evaluate, list(zip(ALIGNED_METHODS + REGION_METHODS, folders)), out / 'evaluation',
             EvaluationSettings(metrics=['niqe']), command=['dlst-demo'],
             problem=lambda result: result.failed and f'{len(result.failed)} image(s) could not be scored')


def report_stage(out):
    from dlst_plugin.demo.report import build_report
    atomic_write_text(out / 'report.html', build_report(out))


def stage_steps(out, photos, s, threads):
    run = StepRunner(out, threads)
    return {
        'photos': lambda: photos_stage(out, photos, s),
        'real_lq': lambda: harvest_faces(run, 'real_lq', out / 'wild_photos', out / 'real_lq', s),
        'hq': lambda: hq_stage(out, run, s),
        'prior': lambda: prior_stage(out, run, s),
        'degrader': lambda: degrader_stage(out, run, s),
        'pairs': lambda: pairs_stage(out, run, s),
        'restorer': lambda: restorer_stage(out, run, s),
        'restore': lambda: restore_stage(out, run),
        'evaluate': lambda: evaluate_stage(out, run),
        'report': lambda: report_stage(out),
    }


def run_demo(out, photos=None, settings=None, threads=1, restart=False):
    """Run every stage that has not finished into the folder ``out`` (``restart``: every stage) with the sample
    photos of ``photos`` (:func:`find_photos`) and ``settings`` (default: the full preset); print each stage's
    time and return the report's path."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = stage_steps(out, find_photos(photos), settings or demo_settings(), threads)
    done = stage_outputs(out)
    total = time.time()
    markers = out / 'stages'
    markers.mkdir(exist_ok=True)
    for i, stage in enumerate(STAGES, 1):
        marker = markers / f'{stage}.done'
        if marker.exists() and done[stage].exists() and not restart:
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
    return done['report']
