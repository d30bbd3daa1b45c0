"""The settings a resumable output was made with: recorded beside it (JSON), checked before a rerun resumes it.

A rerun that continues an LMDB of ``dlst-make-lmdb`` or the pairs of ``dlst-generate-pairs`` must use the
settings of the run that began it, or the output would mix two kinds of entries; the record says which."""
import json
import os

from dlst_plugin.errors import ConfigError
from dlst_plugin.fileio.atomic import atomic_write_text


def check_resume_settings(path, settings, folder, flag_names=False):
    """Refuse to resume ``folder`` when the settings an earlier run recorded in ``path`` (JSON) differ from
    ``settings`` (the caller records the new ones once its output exists: :func:`record_settings`).
    ``flag_names``: name the settings as flags (``png_level`` -> ``--png-level``). A damaged record is a
    ConfigError saying to pass --overwrite."""
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding='utf-8') as f:
            before = json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f'{path} is damaged (not JSON): pass --overwrite to start again') from None
    name = (lambda key: '--' + key.replace('_', '-')) if flag_names else (lambda key: key)
    diff = [f'{name(k)} {before.get(k)!r} (now {v!r})' for k, v in settings.items() if before.get(k) != v]
    if diff:
        raise ConfigError(f'{folder} was made with {", ".join(diff)}; rerun with the same settings to resume, '
                          'pass --overwrite to start again, or choose another output folder')


def record_settings(path, settings):
    """Write ``settings`` to ``path`` (JSON, atomically): what the next run must match to resume."""
    atomic_write_text(path, json.dumps(settings, indent=1))
