"""How the demo runs one step: a library call in this process, or a training in a subprocess, each logged to
``OUT/logs/<step>.log``; a step that fails stops the demo with the last lines of its log.

In-process calls save a new Python importing torch and BasicSR again for each step (seconds each). Trainings
run ``python -m dlst_plugin.train`` in a subprocess: BasicSR's pipeline keeps global logger state (handlers on
the ``basicsr`` logger, the log file of the run) that a second training in the same process would inherit.
"""
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from dlst_plugin.demo.data import DemoError
from dlst_plugin.errors import DLSTError, Interrupted, TerminationRequest

INTERRUPTED = 'the stages that finished are kept: rerun the same command to continue'


def drop_log_handlers(stream):
    """Remove the logging handlers attached to ``stream`` (a step's log file, about to be closed): a library call
    that made a logger while its output went to the log (BasicSR's ``get_root_logger``) must not keep writing to
    the closed file."""
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in [h for h in logger.handlers if getattr(h, 'stream', None) is stream]:
            logger.removeHandler(handler)


def describe_call(fn, args, kwargs):
    shown = [repr(str(a)) if isinstance(a, Path) else repr(a) for a in args]
    shown += [f'{k}={str(v) if isinstance(v, Path) else v!r}' for k, v in kwargs.items()]
    return f'{fn.__module__}.{fn.__qualname__}({", ".join(shown)})'


class StepRunner:
    """Runs the demo's steps with ``threads`` CPU threads each, logging them under ``out``/logs."""

    def __init__(self, out, threads):
        self.out = out
        self.threads = threads
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.env['PYTHONPATH'] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)

    def log_file(self, step, first_line):
        log = self.out / 'logs' / f'{step}.log'
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(first_line + '\n')
        return log

    def failed(self, step, log, why):
        tail = ''.join(log.read_text(errors='replace').splitlines(keepends=True)[-15:])
        return DemoError(f'step {step} failed ({why}); last lines of {log}:\n{tail}')

    def call(self, step, fn, *args, problem=None, **kwargs):
        """``fn(*args, **kwargs)`` in this process, its output in the step's log; returns what it returns.
        ``problem(result)``: a message when the result says part of the work failed (the step then fails)."""
        import torch
        log = self.log_file(step, describe_call(fn, args, kwargs))
        torch.set_num_threads(self.threads)
        error = None
        with open(log, 'a') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                result = fn(*args, **kwargs)
            except Interrupted as err:  # the step said what it kept; the demo keeps its finished stages
                raise type(err)(INTERRUPTED) from None
            except (DLSTError, OSError) as err:
                print(f'error: {err}', flush=True)
                error = f'{type(err).__name__}: {str(err).splitlines()[0]}'
            finally:
                drop_log_handlers(f)
        if error is None and problem is not None:
            error = problem(result)
        if error:
            raise self.failed(step, log, error)
        return result

    def train(self, step, option_file):
        """``python -m dlst_plugin.train -opt option_file`` in a subprocess (working folder: the demo's output)."""
        cmd = [sys.executable, '-m', 'dlst_plugin.train', '-opt', str(option_file)]
        log = self.log_file(step, ' '.join(cmd))
        with open(log, 'a') as f:
            proc = subprocess.run(cmd, cwd=self.out, stdout=f, stderr=subprocess.STDOUT, env=self.env)
        if proc.returncode in (130, 143):  # Ctrl-C or SIGTERM reached the training too
            raise KeyboardInterrupt if proc.returncode == 130 else TerminationRequest('SIGTERM')
        if proc.returncode != 0:
            raise self.failed(step, log, f'exit {proc.returncode}')
