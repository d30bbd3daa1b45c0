"""``python -m dlst_plugin.train -opt X.yml`` (also ``dlst-train``): BasicSR's training
pipeline with the plugin registered and its compatibility patches applied.

Experiments go to ``./experiments/<name>`` (or ``path.experiments_root``), tensorboard
logs to ``./tb_logger/<name>``. Launch several processes with
``torchrun --nproc_per_node=N -m dlst_plugin.train -opt X.yml --launcher pytorch``.
The option file is checked before anything runs (:mod:`dlst_plugin.options.check`); errors the
plugin raises on purpose end the run with ``error: <message>`` and their exit code, no traceback.
``python -m basicsr.train`` / ``.test`` arrive here too (the start-up hook hands them over): a run whose
option file is another project's then goes through BasicSR's pipeline exactly as BasicSR would
(:mod:`dlst_plugin.options.ownership`).
"""
import os
import sys

import dlst_plugin  # noqa: F401  (registers the plugin, applies compat)

_COMMON_HELP = """
The option file is checked before anything is read or built: unknown keys (with a did-you-mean),
wrong types, missing required keys and out-of-range values come in one message (exit code 2). A key
read by code of your own goes in a top-level list, e.g. allow_unknown: [train.my_key].

Option files are trusted like code: BasicSR reads them with PyYAML's full loader, so a !!python/...
tag in one runs Python (the plugin relies on it for plugin: !!python/name:dlst_plugin.compat.apply).
Run only option files you would run as a script. The checkpoints they name are data, not code:
they are read with torch.load(weights_only=True).
"""
HELP = {
    'train': """usage: dlst-train -opt OPTIONS.yml [--launcher {none,pytorch,slurm}] [--auto_resume] [--debug]
                  [--force_yml KEY:SUBKEY=VALUE ...]

Train with BasicSR's pipeline, the dlst-plugin registered and its BasicSR fixes applied
(also: python -m basicsr.train, torchrun ... -m dlst_plugin.train --launcher pytorch).

  -opt FILE        the option file (BasicSR YAML)
  --launcher L     pytorch under torchrun (NCCL with CUDA, gloo on the CPU); slurm
  --auto_resume    continue from the newest complete checkpoint of the experiment: a truncated
                   state, or one whose network files are missing or unreadable, is reported in
                   the log and skipped (never deleted)
  --force_yml ...  override options, e.g. train:total_iter=1000 (checked like the file)
  --debug          BasicSR's debug mode (name prefixed with debug_)

Checkpoints are written atomically (a kill leaves the previous file, never a truncated one); a
save that fails three times stops the run (exit code 1). On SIGTERM or SIGUSR1 (cluster preemption,
Slurm's --signal) the run finishes its iteration, saves networks and training state and exits with
code 143: --auto_resume continues from there. One run per experiment folder: a second run of the same
name while the first is alive stops at once (exit code 2), before anything is renamed or written.
""" + _COMMON_HELP,
    'test': """usage: dlst-test -opt OPTIONS.yml [--launcher {none,pytorch,slurm}] [--force_yml KEY:SUBKEY=VALUE ...]

Run BasicSR's test pipeline with the dlst-plugin registered; results go to ./results/<name>.
""" + _COMMON_HELP,
}


def main(argv=None):
    return run_pipeline('train', argv)


def run_pipeline(kind, argv=None):
    """Run BasicSR's ``train_pipeline`` or ``test_pipeline``: ``error: <message>`` and the error's exit code
    for the plugin's errors (a bad option file: 2; an unusable input or a failed save: 1)."""
    from dlst_plugin.cli.common import EXIT_CODES, version_text
    from dlst_plugin.errors import DLSTError
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    if '--version' in sys.argv[1:]:
        print(version_text())
        return 0
    if {'-h', '--help'} & set(sys.argv[1:]):
        print(HELP[kind] + '\n' + EXIT_CODES)
        return 0
    import dlst_plugin_startup
    from dlst_plugin.options import ownership
    ownership.set_launcher(dlst_plugin_startup.taken_over or f'dlst_plugin.{kind}')
    if ownership.launched_by_plugin():
        _check_option_file()
    from basicsr import test, train
    pipeline = train.train_pipeline if kind == 'train' else test.test_pipeline
    try:
        pipeline(os.getcwd())
    except (KeyboardInterrupt, DLSTError, OSError) as err:
        if not ownership.is_plugin_run():
            raise  # another project's run ends as BasicSR ends it
        sys.exit(_report(err))
    return 0


def _report(err):
    """Log and print the error that ended a plugin run; its exit code. A preempted run (SIGTERM / SIGUSR1,
    saved) is one info line in the log and one message from rank 0, not an error of every rank."""
    from dlst_plugin.cli.common import report_error
    from dlst_plugin.errors import DLSTError
    from dlst_plugin.run_control import Preempted
    if isinstance(err, Preempted):
        _log_error(err, level='info')
        if int(os.environ.get('RANK', 0) or 0) != 0:
            return err.exit_code
    elif not isinstance(err, KeyboardInterrupt):
        _log_error(err, with_traceback=not isinstance(err, DLSTError))
    return report_error(err, 'the last saved checkpoint is kept; rerun with --auto_resume to continue')


def _log_error(err, with_traceback=False, level='error'):
    """Put the error in the run's log file too (with its traceback for an unforeseen ``OSError``), when
    BasicSR has set one up."""
    import logging

    from basicsr.utils import logger as basicsr_logger
    if 'basicsr' in basicsr_logger.initialized_logger:
        prefix = 'error: ' if level == 'error' else ''
        getattr(logging.getLogger('basicsr'), level)(f'{prefix}{err}', exc_info=err if with_traceback else None)


def _check_option_file():
    """Fail with one line when ``-opt`` names no readable file (BasicSR gives a traceback)."""
    args = sys.argv[1:]
    if '-opt' in args:
        idx = args.index('-opt')
        path = args[idx + 1] if idx + 1 < len(args) else None
        if path is not None and not os.path.isfile(path):
            print(f'error: option file not found: {path}', file=sys.stderr)
            sys.exit(2)


if __name__ == '__main__':
    sys.exit(main())
