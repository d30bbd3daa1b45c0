"""Where the demo puts what: its output folder's layout, the stages in order, the shipped files it starts from.

A stage counts as done when its marker (``stages/<stage>.done``) and its output (:func:`stage_outputs`) exist,
so a rerun skips it; the report reads every stage's output from the same places.
"""
from dlst_plugin.fileio.shipped import PACKAGE_DIR

ASSETS = PACKAGE_DIR / 'assets'  # the demo's option files (demo_*.yml)
STAGES = ('photos', 'real_lq', 'hq', 'prior', 'degrader', 'pairs', 'restorer', 'restore', 'evaluate', 'report')
# the four folders the evaluation scores, by their method labels in evaluation/metrics.json
ALIGNED_METHODS = ('real LQ faces (aligned)', 'restored faces (aligned)')
REGION_METHODS = ('input photos, face regions', 'restored photos, face regions')


def experiment(out, name):
    """The BasicSR experiment folder of the demo training ``name`` (demo_prior, demo_dl, demo_st)."""
    return out / 'experiments' / name


def stage_outputs(out):
    """What each stage leaves behind (a stage counts as done when its marker and this exist)."""
    return {
        'photos': out / 'wild_photos', 'real_lq': out / 'real_lq', 'hq': out / 'hq.lmdb',
        'prior': out / 'prior' / 'samples' / 'detection.json',
        'degrader': experiment(out, 'demo_dl') / 'models' / 'net_g_latest.pth',
        'pairs': out / 'pairs' / 'degraded.lmdb' / 'meta_info.txt',
        'restorer': experiment(out, 'demo_st') / 'models' / 'net_g_latest.pth',
        'restore': out / 'restored' / 'restored_imgs', 'evaluate': out / 'evaluation' / 'metrics.json',
        'report': out / 'report.html',
    }


def prior_files(out):
    """The prior's generator and discriminator checkpoints (BasicSR's StyleGAN2Model saves both)."""
    models = experiment(out, 'demo_prior') / 'models'
    return models / 'net_g_latest.pth', models / 'net_d_latest.pth'


def fit_curve_file(out):
    """The prior fit's L1 curve, ``[[step, L1], ...]`` (JSON), drawn in the report."""
    return out / 'prior' / 'fit_curve.json'
