"""What keeps a training run safe on a cluster: one run per experiment folder, and a clean stop on preemption.

* **One run per experiment folder.** Rank 0 of a plugin run holds an OS lock (``fcntl.lockf``, released by
  the kernel when the process dies) on ``<experiments>/.<name>.lock``, a file beside the experiment folder
  (BasicSR renames the folder itself to ``*_archived_*`` when a new run starts, and must not move the lock
  with it). The file names the holder (host, pid, start time). A second run of the same name stops at once
  (exit code 2) naming the first, before anything is renamed or written; a lock left by a dead process is
  taken over with a log line. Under torchrun every rank learns rank 0's verdict.
* **Preemption.** Slurm, Kubernetes and cloud preemption send SIGTERM, then SIGKILL after a grace period;
  Slurm's ``--signal=USR1@120`` sends SIGUSR1 ahead of the time limit. On either, a plugin run finishes the
  iteration it is in, saves networks and training state (atomically, as every save), logs one line and
  exits with code 143. Under DDP the ranks agree after every iteration (a small all-reduce on a CPU
  process group), so all stop at the same iteration; rank 0 saves. ``--auto_resume`` continues from it.
"""
import errno
import os
import os.path as osp
import signal
import socket
import time

from dlst_plugin.errors import ConfigError, Terminated

STOP_SIGNALS = ('SIGTERM', 'SIGUSR1')
HELD = (errno.EACCES, errno.EAGAIN)  # lockf's answer when another process holds the lock
_UNLOCKED = set()  # lock files already warned about (the file system cannot lock them)


class ExperimentLock:
    """The lock of one experiment folder (see the module docstring); ``acquire()`` raises ConfigError when
    a live run holds it (or the lock file cannot be opened), and returns a line for the log when it took over a
    dead run's lock, or a warning when the file system cannot lock (then ``file`` stays None)."""

    def __init__(self, experiments_root):
        root = osp.abspath(experiments_root)
        self.path = osp.join(osp.dirname(root), f'.{osp.basename(root)}.lock')
        self.folder = root
        self.file = None

    def acquire(self):
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): one run per folder is not enforced
            return None
        try:
            os.makedirs(osp.dirname(self.path), exist_ok=True)
            handle = open(self.path, 'a+', encoding='utf-8')
        except OSError as err:
            raise ConfigError(f'cannot open the lock file {self.path} of {self.folder} ({err.strerror or err}); '
                              'nothing was renamed or written. Make the experiments folder writable') from None
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in HELD:  # e.g. ENOLCK: a file system without locks (NFS without lockd)
                handle.close()
                return _unlocked(self.path, err)
            holder = _read(handle)
            handle.close()
            raise ConfigError(f'another run is training into {self.folder} ({holder or "holder unknown"}; lock '
                              f'{self.path}); nothing was renamed or written. Wait for it, stop it, or give this run '
                              'another name') from None
        previous = _read(handle)
        handle.seek(0)
        handle.truncate()
        handle.write(f'host {socket.gethostname()}, pid {os.getpid()}, started {time.strftime("%Y-%m-%d %H:%M:%S")}')
        handle.flush()
        self.file = handle
        return f'took over the lock of a run that has ended ({previous})' if previous else None

    def release(self):
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()  # an empty lock file: the run ended cleanly
            self.file.close()
            self.file = None


def _unlocked(path, err):
    """The warning (once per lock file) of a run going on without the lock the file system cannot hold."""
    if path in _UNLOCKED:
        return None
    _UNLOCKED.add(path)
    return (f'cannot lock {path} ({err.strerror or err}): this file system holds no locks, so a second run of the '
            'same name would not be stopped; going on without the lock')


def _read(handle):
    handle.seek(0)
    return handle.read().strip()


class StopRequest:
    """Records SIGTERM / SIGUSR1 instead of dying; the training loop asks :meth:`requested` after each
    iteration (all ranks agree under DDP)."""

    def __init__(self):
        self.signal_name = None
        self.group = None

    def install(self):
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame):
        self.signal_name = self.signal_name or signal.Signals(signum).name

    def requested(self, distributed):
        """The signal's name when this rank (or, under DDP, any rank) received one, else None."""
        if not distributed:
            return self.signal_name
        import torch
        import torch.distributed as dist
        if self.group is None:
            self.group = dist.new_group(backend='gloo')  # CPU tensors: no device sync on the training device
        flag = torch.tensor([STOP_SIGNALS.index(self.signal_name) + 1 if self.signal_name else 0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        return STOP_SIGNALS[int(flag) - 1] if int(flag) else None


class Preempted(Terminated):
    """Training stopped on SIGTERM / SIGUSR1 after saving (exit code 143)."""

    def __init__(self, message, signal_name='SIGTERM'):
        super().__init__(message)
        self.signal_name = signal_name


STOP = StopRequest()


def guard_optimize(model, opt, epochs):
    """Wrap ``model.optimize_parameters``: after each iteration, when a stop signal arrived (on any rank), save
    (rank 0 writes) and raise :class:`Preempted`. ``epochs``: a dict whose ``'epoch'`` the data sampler keeps."""
    step = model.optimize_parameters

    def optimize_parameters(current_iter):
        step(current_iter)
        name = STOP.requested(opt.get('dist', False))
        if name is None:
            return
        if model.save(epochs.get('epoch', 0), current_iter) is False:  # BasicSR's models return None: written
            raise Preempted(_not_saved(model, opt, name, current_iter), name)
        raise Preempted(f'{name} received: iteration {current_iter} finished and saved (networks and training state '
                        f'in {opt["path"]["experiments_root"]}); rerun with --auto_resume to continue from it',
                        name)

    model.optimize_parameters = optimize_parameters
    return model


def _not_saved(model, opt, name, current_iter):
    """The stop message when the model declined to save: the iteration fell in a streak of skipped steps."""
    control = getattr(model, 'step_control', None)
    first_bad = getattr(control, 'first_bad_iter', None)
    since = f' (since iteration {first_bad})' if first_bad is not None else ''
    good = [it for it in getattr(model, 'saved_iters', ()) if first_bad is None or it < first_bad]
    models = opt['path'].get('models', opt['path']['experiments_root'])
    last = f'iteration {good[-1]} ({models}/net_g_{good[-1]}.pth)' if good else f'the newest one in {models}'
    return (f'{name} received: iteration {current_iter} finished but was not saved: the run is inside a streak of '
            f'skipped steps{since}; the last checkpoint is {last}; rerun with --auto_resume to continue from it')
