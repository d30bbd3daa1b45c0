"""The plugin's one error hierarchy, and what each kind means for a command's exit code.

Every command exits 0 when it did its job, 1 when some inputs failed (each is named, the rest was
done) or the inputs gave no output, 2 for a usage or configuration error (nothing was done), 130
when interrupted (Ctrl-C), 143 when stopped by SIGTERM (cluster preemption; 128 + the signal's number,
what a shell reports for a process SIGTERM killed). Library code raises these; commands catch
:class:`DLSTError` once (:func:`dlst_plugin.cli.common.run_command`) and print ``error: <message>``
without a traceback.
"""

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


class DLSTError(Exception):
    """Base of every error the plugin raises on purpose; the message says what to do."""
    exit_code = EXIT_INPUT


class ConfigError(DLSTError, ValueError):
    """A bad option, flag, option-file entry, checkpoint or weights file: nothing was done (exit code 2)."""
    exit_code = EXIT_USAGE


class InputError(DLSTError):
    """An input (image, checkpoint, dataset) that cannot be used; the message names it (exit code 1)."""
    exit_code = EXIT_INPUT


class CheckpointLayoutError(ConfigError):
    """A checkpoint or weights file that cannot be read, is not what its setting expects or does not fit the
    network it is meant for: nothing was done with it (exit code 2). Every reader of the plugin raises it
    (:mod:`dlst_plugin.checkpoints.reading`)."""


class MissingPackageError(ConfigError, ImportError):
    """An optional package a chosen feature needs is not installed; the message names the extra."""


class MissingFileError(ConfigError, FileNotFoundError):
    """A file the configuration names (weights, option file, checkpoint) is not there."""


class Interrupted(DLSTError):
    """Ctrl-C during a command; the message says what was kept (exit code 130)."""
    exit_code = EXIT_INTERRUPTED


class Terminated(Interrupted):
    """SIGTERM (a scheduler's preemption or time limit) during a command; the message says what was kept
    (exit code 143)."""
    exit_code = EXIT_TERMINATED


class TerminationRequest(KeyboardInterrupt):
    """What the SIGTERM handler of :func:`dlst_plugin.cli.common.stop_on_sigterm` raises in the main thread.

    A ``KeyboardInterrupt``, so every path that handles Ctrl-C (``finally`` blocks committing what was
    done, ``except KeyboardInterrupt``, worker pools torn down) handles SIGTERM the same way; commands
    report it as :class:`Terminated` (exit code 143)."""


def interruption(err, message):
    """The error a job raises for a ``KeyboardInterrupt`` ``err`` caught while working: :class:`Terminated`
    when SIGTERM caused it (a :class:`TerminationRequest`), else :class:`Interrupted`, with ``message`` saying
    what was kept."""
    return (Terminated if isinstance(err, TerminationRequest) else Interrupted)(message)


def short_reason(err, limit=150):
    """One line saying why something failed, for a report or a note: the first line of ``err`` (an exception or a
    message; an exception without a message gives its type's name), cut to ``limit`` characters."""
    line = (str(err).strip().splitlines() or [''])[0]
    if not line and isinstance(err, BaseException):
        line = type(err).__name__
    return line if len(line) <= limit else line[:limit - 3] + '...'
