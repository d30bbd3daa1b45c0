"""Run a command in a subprocess and send it a signal mid-run (the Ctrl-C / SIGTERM / SIGKILL tests)."""
import os
import signal
import subprocess
import sys
import time

from helpers import REPO, subprocess_env

from dlst_plugin.demo.steps import stop_child


def _shell_signals():
    # pytest-xdist's workers ignore SIGINT and a child inherits that: give the command the default a shell gives
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_mid_run(args, ready, sig, group=False, timeout=120):
    """Start ``python args...``, wait until ``ready()`` is true (it polls the output), send ``sig`` to the
    command (``group``: to its whole process group, workers included, as Slurm's scancel does) and return
    (exit code, stdout, stderr). An exit code 0 means the command finished before it could be signalled."""
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_shell_signals,
                            start_new_session=group)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)  # also waits for workers, which share stderr
    return proc.returncode, out, err


def wait_for(path, proc, seconds=120):
    """Wait until ``path`` exists while ``proc`` (a Popen) runs; fail if it ends first or time runs out."""
    end = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, f'the run ended ({proc.returncode}) before {path} appeared'
        assert time.time() < end, f'{path} never appeared'
        time.sleep(0.2)


def end_run(proc, seconds=60):
    """Make sure ``proc`` has ended (after a failed test): SIGTERM first, which torchrun passes on to its workers
    (they run in sessions of their own), then SIGKILL."""
    stop_child(proc, seconds)


def line_count(path):
    """Complete lines in ``path`` (0 while it does not exist)."""
    try:
        return path.read_text(errors='replace').count('\n')
    except FileNotFoundError:
        return 0


def assert_stopped_by_sigterm(code, err, kept):
    """Exit 143, one 'stopped by SIGTERM' line saying what was ``kept``, no traceback from any process."""
    assert code != 0, f'the run finished before SIGTERM came; its stderr: {err[-3000:]}'
    assert code == 143, err[-3000:]
    lines = [line for line in err.splitlines() if 'SIGTERM' in line]
    assert len(lines) == 1 and lines[0].startswith('stopped by SIGTERM: ') and kept in lines[0], err[-3000:]
    assert 'Traceback' not in err and 'BrokenPipeError' not in err, err[-3000:]
