"""The demo's training steps run in a child process: a Ctrl-C or SIGTERM to the demo must let the child save
(it gets SIGTERM and time to finish) before the demo stops, and the child's own exit code says how it ended.
A stand-in child (a few lines of Python) takes the place of ``python -m dlst_plugin.train``."""
import os
import signal
import sys
import threading
import time

import pytest

from dlst_plugin.cli.common import stop_on_sigterm
from dlst_plugin.demo.data import DemoError
from dlst_plugin.demo.steps import StepRunner
from dlst_plugin.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, TerminationRequest


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal (pytest-xdist's workers ignore SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)

# Stands in for a training: says it is ready, trains until SIGTERM (at most 20 s), then "saves" and exits 143.
# With SAVE_ON_SIGTERM=0 it ignores SIGTERM, like a child stuck in a long step.
CHILD = '''
import os, pathlib, signal, sys, time
stop = []
if os.environ.get('SAVE_ON_SIGTERM', '1') == '1':
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path('ready').write_text('')
deadline = time.time() + 20
while not stop and time.time() < deadline:
    time.sleep(0.02)
if stop:
    time.sleep(0.3)
    pathlib.Path('saved').write_text('')
sys.exit(143)
'''


def signal_when_ready(folder, signum):
    """Send ``signum`` to this process once the child has written ``ready`` (from a thread: the main thread is
    blocked waiting for the child, as the demo is)."""
    def send():
        deadline = time.time() + 20
        while not (folder / 'ready').exists() and time.time() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['ctrl-c', 'sigterm'])
def test_a_stopped_demo_lets_its_training_child_save_then_stops_as_asked(tmp_path, signum):
    runner = StepRunner(tmp_path, threads=1)
    thread = signal_when_ready(tmp_path, signum)
    with stop_on_sigterm(), pytest.raises(KeyboardInterrupt) as caught:
        runner.run_child('train', [sys.executable, '-c', CHILD])
    thread.join()
    assert (tmp_path / 'saved').exists()  # the child got SIGTERM and was given the time to save
    assert isinstance(caught.value, TerminationRequest) == (signum == signal.SIGTERM)


def test_a_child_that_ignores_sigterm_is_killed_after_the_wait(tmp_path):
    runner = StepRunner(tmp_path, threads=1)
    runner.env['SAVE_ON_SIGTERM'] = '0'
    thread = signal_when_ready(tmp_path, signal.SIGINT)
    start = time.time()
    with pytest.raises(KeyboardInterrupt):
        runner.run_child('train', [sys.executable, '-c', CHILD], stop_wait_s=0.5)
    thread.join()
    assert time.time() - start < 10 and not (tmp_path / 'saved').exists()


def test_the_childs_exit_code_says_how_the_step_ended(tmp_path):
    runner = StepRunner(tmp_path, threads=1)

    def exits(code):
        return [sys.executable, '-c', f'import sys; print("step output"); sys.exit({code})']
    runner.run_child('fine', exits(0))
    with pytest.raises(KeyboardInterrupt) as caught:
        runner.run_child('ctrl-c', exits(EXIT_INTERRUPTED))
    assert not isinstance(caught.value, TerminationRequest)
    with pytest.raises(TerminationRequest):
        runner.run_child('sigterm', exits(EXIT_TERMINATED))
    with pytest.raises(DemoError, match=r'step broken failed \(exit 3\)(.|\n)*step output'):
        runner.run_child('broken', exits(3))
