"""What every ``dlst-*`` command shares: ``--version``, the exit codes in ``--help``, old spellings of
flags kept as silent aliases, and one wrapper turning the plugin's errors into exit codes.

Flag names mean the same thing in every command: ``-i/--input`` what is read, ``-o/--output`` the
output folder or file, ``--model`` a checkpoint, ``--overwrite`` replace existing outputs,
``--weights-dir`` the folder of weight files, ``--device`` where networks run.
"""
import argparse
import contextlib
import dataclasses
import re
import signal
import sys
import threading

from dlst_plugin._package import __version__
from dlst_plugin.checkpoints.files import WEIGHTS_ENV
from dlst_plugin.errors import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    DLSTError,
    Interrupted,
    Terminated,
    TerminationRequest,
)

EXIT_CODES = """exit codes:
  0    done
  1    some inputs failed (each is named; the rest was done), or the inputs gave no output
  2    usage or configuration error (flag, option file, checkpoint or weights file): nothing was done
  130  interrupted (Ctrl-C): what was finished is kept, as the message says
  143  stopped by SIGTERM (cluster preemption): what was finished is kept"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each help line (unless None, False or ''); description and epilog printed as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == '' \
                or '%(default)' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def version_text():
    return f'dlst-plugin {__version__}'


def add_common_arguments(parser):
    """``--version`` (prints ``dlst-plugin X.Y.Z``); every command has it."""
    parser.add_argument('--version', action='version', version=version_text(),
                        help='print the dlst-plugin version and exit')
    return parser


def make_parser(prog, description, epilog=None, **kwargs):
    """An ``ArgumentParser`` with ``--version`` and the exit codes (after ``epilog``) at the end of ``--help``."""
    text = EXIT_CODES if not epilog else f'{epilog.rstrip()}\n\n{EXIT_CODES}'
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=text,
                                     formatter_class=kwargs.pop('formatter_class', HelpFormatter), **kwargs)
    return add_common_arguments(parser)


def device_name(value):
    """A ``--device`` value: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (what :func:`dlst_plugin.devices.pick_device`
    takes); anything else is a usage error (exit 2)."""
    if value in ('auto', 'cpu', 'cuda') or re.fullmatch(r'cuda:\d+', value):
        return value
    raise argparse.ArgumentTypeError(f'{value!r} is not a device: use auto, cpu, cuda or cuda:N')


def add_device_argument(parser, what='the networks', default='auto'):
    """``--device``, the same in every command: where ``what`` run."""
    parser.add_argument('--device', type=device_name, default=default, metavar='auto|cpu|cuda|cuda:N',
                        help=f'where {what} run: auto (the GPU of this process when there is one, else the CPU), '
                             'cpu, cuda or cuda:N')


def add_weights_dir_argument(parser, looked_up):
    """``--weights-dir``, the same in every command: the folder of weight files; ``looked_up`` says what this
    command looks for there."""
    parser.add_argument('--weights-dir', default=None, metavar='DIR',
                        help=f'folder of weight files, where {looked_up} (default: ${WEIGHTS_ENV}, else ./weights)')


def add_positional_alias(parser, dest, metavar, flag, required=True):
    """An old positional spelling (``dlst-make-lmdb SRC DST``) of the flag whose ``dest`` is given.

    The positional is optional; :func:`parse_args` copies it into ``dest`` and checks that the value
    was given once, by one spelling."""
    parser.add_argument(f'_{dest}_positional', nargs='?', metavar=metavar, default=None,
                        help=f'old spelling of {flag} (still accepted)')
    parser.__dict__.setdefault('dlst_aliases', []).append((dest, metavar, flag, required))


def parse_args(parser, argv=None):
    """``parser.parse_args`` plus the positional aliases of :func:`add_positional_alias` (exit 2 on misuse)."""
    args = parser.parse_args(argv)
    for dest, metavar, flag, required in getattr(parser, 'dlst_aliases', []):
        old = vars(args).pop(f'_{dest}_positional')
        if old is not None and getattr(args, dest) is not None:
            parser.error(f'{flag} and the positional {metavar} name the same thing: give one of them')
        if old is not None:
            setattr(args, dest, old)
        if required and getattr(args, dest) is None:
            parser.error(f'the following arguments are required: {flag}')
    return args


def settings_from_args(cls, args, **overrides):
    """A ``cls`` (a settings dataclass) from parsed ``args``: each field takes ``overrides[name]`` if given, else
    the flag of the same name (``--batch-size`` -> ``batch_size``); a field that is neither keeps its default."""
    given = vars(args)
    values = {f.name: overrides[f.name] if f.name in overrides else given[f.name]
              for f in dataclasses.fields(cls) if f.init and (f.name in overrides or f.name in given)}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f'{cls.__name__} has no field {", ".join(sorted(unknown))}')
    return cls(**values)


def run_command(parser, run, argv=None, interrupted='outputs finished before the interruption are kept'):
    """Parse ``argv`` and call ``run(args)``; return the exit code.

    :class:`~dlst_plugin.errors.DLSTError` -> ``error: message`` on stderr and its exit code; an
    ``OSError`` (disk full, permissions) -> ``error: ...`` and 1; Ctrl-C -> ``interrupted: ...`` and 130;
    SIGTERM (:func:`stop_on_sigterm`) -> ``stopped by SIGTERM: ...`` and 143 (``interrupted`` says what
    was kept, unless the command raised :class:`Interrupted` / :class:`Terminated` saying it)."""
    args = parse_args(parser, argv)
    with stop_on_sigterm():
        try:
            code = run(args)
        except (KeyboardInterrupt, DLSTError, OSError) as err:
            return report_error(err, interrupted)
    return EXIT_OK if code is None else code


@contextlib.contextmanager
def stop_on_sigterm():
    """Inside the block, SIGTERM (what Slurm, Kubernetes and cloud preemption send before SIGKILL) stops
    the main thread as Ctrl-C does: it raises :class:`~dlst_plugin.errors.TerminationRequest`, a
    ``KeyboardInterrupt``, so the same ``finally`` blocks commit what was done. Further SIGTERMs are
    ignored while that cleanup runs. Off the main thread (where Python cannot set handlers) nothing changes.

    Worker processes must not inherit the handler: :func:`dlst_plugin.fileio.lmdb.worker_pool` gives its
    workers the default SIGTERM (a quiet death when the pool is torn down) and ignores SIGINT in them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        if not received:  # the first one stops the command; repeats would cut its cleanup short
            received.append(signum)
            raise TerminationRequest('SIGTERM')
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report_error(err, interrupted):
    """Print the one line for ``err`` on stderr and return its exit code: ``interrupted: ...`` (130) for
    Ctrl-C, ``stopped by SIGTERM: ...`` (143) for SIGTERM (``interrupted`` says what was kept, unless the
    error is an :class:`Interrupted` saying it), ``error: ...`` with the error's code for the plugin's
    errors, and 1 for an ``OSError``."""
    if isinstance(err, (KeyboardInterrupt, Interrupted)):
        terminated = isinstance(err, (TerminationRequest, Terminated))
        what = err if isinstance(err, Interrupted) else interrupted
        stopped_by = f'stopped by {getattr(err, "signal_name", "SIGTERM")}'
        print(f'\n{stopped_by if terminated else "interrupted"}: {what}', file=sys.stderr, flush=True)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    print(f'error: {err}', file=sys.stderr, flush=True)
    return err.exit_code if isinstance(err, DLSTError) else EXIT_INPUT
