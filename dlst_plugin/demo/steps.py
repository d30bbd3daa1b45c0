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
from dlst_plugin.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, DLSTError, Interrupted, TerminationRequest

INTERRUPTED = 'the stages that finished are kept: rerun the same command to continue'
STOP_WAIT_S = 120  # how long a stopped demo waits for its training child to save (it finishes its iteration first)


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
        self.run_child(step, [sys.executable, '-m', 'dlst_plugin.train', '-opt', str(option_file)])

    def run_child(self, step, cmd, stop_wait_s=STOP_WAIT_S):
        """Run ``cmd`` in the demo's output folder, its output in the step's log. Ctrl-C or SIGTERM to the demo
        passes SIGTERM on to the child, which saves and exits (a training finishes its iteration); the demo waits
        up to ``stop_wait_s`` for it (then SIGKILLs it) and stops as it was asked to."""
        log = self.log_file(step, ' '.join(cmd))
        with open(log, 'a') as f:
            proc = subprocess.Popen(cmd, cwd=self.out, stdout=f, stderr=subprocess.STDOUT, env=self.env)
            try:
                code = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (stop_on_sigterm raises TerminationRequest)
                stop_child(proc, stop_wait_s)
                raise
        if code == EXIT_INTERRUPTED:  # the child stopped on Ctrl-C before the demo saw one
            raise KeyboardInterrupt
        if code == EXIT_TERMINATED:  # the child stopped on SIGTERM, after saving
            raise TerminationRequest('SIGTERM')
        if code != 0:
            raise self.failed(step, log, f'exit {code}')


def stop_child(proc, wait_s):
    """SIGTERM ``proc`` and wait up to ``wait_s`` seconds for it to save and exit; SIGKILL it after that, or at
    a second Ctrl-C while waiting."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
