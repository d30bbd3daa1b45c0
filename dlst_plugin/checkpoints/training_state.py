"""Training checkpoints that a kill cannot corrupt, and ``--auto_resume`` from the newest complete one.

Saving (``compat.patch_save_network`` / ``patch_save_training_state``): every ``models/net_*_N.pth`` and
``training_states/N.state`` is written through :func:`dlst_plugin.fileio.atomic.atomic_torch_save`, so a reader
sees the previous file or the new one, never a truncated one. A save that still fails after
:data:`RETRIES` tries stops training with :class:`CheckpointSaveError` (BasicSR logged "Just ignore it"
and trained on without a checkpoint). The networks of iteration N are saved before ``N.state``.

Resuming (:func:`load_resume_state`, BasicSR's ``train.load_resume_state``): ``--auto_resume`` takes the
newest ``N.state`` that is *complete*: the state reads (``weights_only=True``) and the network files of
its iteration that BasicSR's ``check_resume`` will load (``net_<x>_N.pth`` for every ``network_<x>`` of
the options, less ``path.ignore_resume_networks``) exist and read as checkpoints. Each state passed over
is reported (stderr at once, the log file once BasicSR's logger exists) and left on disk. An explicit
``path.resume_state`` must be complete, or the run stops with the reason.
"""
import collections
import os
import os.path as osp
import re
import sys
import time

from dlst_plugin.errors import DLSTError, InputError, short_reason

RETRIES = 3
RETRY_DELAY_S = 1.0
STATE_NAME = re.compile(r'(\d+)\.state')
STATE_KEYS = ('iter', 'epoch', 'optimizers', 'schedulers')
_PENDING_LOG = []  # (level, message) for the log file, written by flush_log once the logger exists


class CheckpointSaveError(DLSTError, OSError):
    """A checkpoint that could not be written: training stops rather than going on without it."""
    exit_code = 1


def save_with_retries(obj, path, what, log_warning):
    """``atomic_torch_save(obj, path)``, tried :data:`RETRIES` times; then :class:`CheckpointSaveError` (in
    another project's run, BasicSR's warning, and the run goes on)."""
    from dlst_plugin.fileio.atomic import atomic_torch_save
    for attempt in range(1, RETRIES + 1):
        try:
            atomic_torch_save(obj, path)
            return
        except Exception as err:  # disk full, permissions, a network file system hiccup
            reason = f'{type(err).__name__}: {err}'
            if attempt < RETRIES:
                log_warning(f'Saving the {what} {path} failed ({reason}); {RETRIES - attempt} more tries.')
                time.sleep(RETRY_DELAY_S)
    from dlst_plugin.options.ownership import is_plugin_run
    if not is_plugin_run():  # another project's run goes on without the file, as BasicSR does
        log_warning(f'Still cannot save {path}. Just ignore it.')
        return
    raise CheckpointSaveError(f'could not save the {what} {path} after {RETRIES} tries ({reason}); training '
                              'stopped so that no checkpoint goes missing unnoticed. Free disk space or fix the '
                              'folder\'s permissions, then continue with --auto_resume (it resumes from the newest '
                              'complete checkpoint).')


def network_state(model, nets, param_keys):
    """BasicSR's ``save_network`` dict: ``{param_key: state dict on the CPU, without 'module.'}``."""
    from dlst_plugin.checkpoints.reading import strip_module_prefix
    nets = nets if isinstance(nets, list) else [nets]
    param_keys = param_keys if isinstance(param_keys, list) else [param_keys]
    if len(nets) != len(param_keys):
        raise ValueError('save_network: as many param_key entries as networks are needed')
    return {key: strip_module_prefix({k: v.cpu() for k, v in model.get_bare_model(net).state_dict().items()})
            for net, key in zip(nets, param_keys)}


def save_network(model, nets, net_label, current_iter, param_keys, log_warning, meta=None):
    """Write ``models/<net_label>_<iter or latest>.pth`` atomically (retried), with ``meta`` when given."""
    from dlst_plugin.checkpoints.meta import META_KEY
    label = 'latest' if current_iter == -1 else current_iter
    path = osp.join(model.opt['path']['models'], f'{net_label}_{label}.pth')
    saved = network_state(model, nets, param_keys)
    if meta is not None:
        saved[META_KEY] = meta
    save_with_retries(saved, path, 'network', log_warning)


def load_network(model, net, load_path, strict, param_key, logger):
    """BasicSR's ``load_network`` read with the plugin's reader (``weights_only=True``): ``param_key``'s weights
    (``params_ema``, ``params``; a missing ``params_ema`` falls back to ``params`` as BasicSR does; None: the
    file as a state dict); a file that is not a network checkpoint is one CheckpointLayoutError naming it."""
    from dlst_plugin.checkpoints.reading import choose_weights, read_checkpoint
    from dlst_plugin.errors import CheckpointLayoutError
    net = model.get_bare_model(net)
    expected = 'a network checkpoint saved by BasicSR (a dict of tensors under "params")'
    saved = read_checkpoint(load_path, f'{type(net).__name__} weights:', expected)
    if param_key is not None and param_key not in saved and param_key not in ('params_ema', 'params'):
        raise CheckpointLayoutError(f'{load_path} has no {param_key!r} entry (it holds: {", ".join(map(str, saved))});'
                                    f' expected {expected}, or set path.param_key_<net> to the entry holding the '
                                    'weights')
    if param_key == 'params_ema' and param_key not in saved and 'params' in saved:
        logger.info(f'Loading: {param_key} does not exist, use params.')
    state = choose_weights(saved, param_key)
    if state is None:
        raise CheckpointLayoutError(f'{load_path} holds no {param_key or "weights"}; expected {expected}')
    logger.info(f'Loading {type(net).__name__} model from {load_path}, with param key: [{param_key}].')
    model._print_different_keys_loading(net, state, strict)
    net.load_state_dict(state, strict=strict)


def read_training_state(path):
    """A BasicSR ``.state`` file onto the current device (the GPU when CUDA is usable), without unpickling code."""
    import torch

    from dlst_plugin.devices import cuda_usable
    location = f'cuda:{torch.cuda.current_device()}' if cuda_usable() else 'cpu'
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(path, map_location=location, weights_only=True)


def resumed_network_files(opt, resume_iter):
    """``{network_<x>: models/net_<x>_<iter>.pth}``: what BasicSR's ``check_resume`` points the run at."""
    ignored = opt['path'].get('ignore_resume_networks') or []
    return {key: osp.join(opt['path']['models'], f'net_{key[len("network_"):]}_{resume_iter}.pth')
            for key in opt if key.startswith('network_') and key not in ignored}


def state_problems(opt, path):
    """``(state, [])`` when ``path`` and the networks of its iteration are complete, else ``(None, [why])``."""
    from dlst_plugin.checkpoints.reading import read_checkpoint
    try:
        state = read_training_state(path)
    except Exception as err:  # truncated (EOFError/RuntimeError), not a zip, unpickling refused, ...
        return None, [f'{path} is truncated or unreadable ({short_reason(err, 160)})']
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        return None, [f'{path} is not a BasicSR training state (no {", ".join(STATE_KEYS)})']
    problems = []
    for key, net_path in resumed_network_files(opt, state['iter']).items():
        if not osp.isfile(net_path):
            problems.append(f'{net_path} ({key} of iteration {state["iter"]}) is missing')
            continue
        try:
            read_checkpoint(net_path)
        except Exception as err:
            problems.append(f'{net_path} ({key}) is truncated or unreadable ({short_reason(err, 160)})')
    return (None, problems) if problems else (state, [])


def newest_complete_state(opt):
    """``(path, state, [reports of the newer states passed over])``; path None when no state is complete."""
    folder = opt['path']['training_states']
    names = os.listdir(folder) if osp.isdir(folder) else []
    found = sorted((int(m[1]), name) for name in names if (m := STATE_NAME.fullmatch(name)))
    skipped = []
    for _, name in reversed(found):
        path = osp.join(folder, name)
        state, problems = state_problems(opt, path)
        if state is not None:
            return path, state, skipped
        skipped.append(f'--auto_resume: {name} skipped and left on disk: {"; ".join(problems)}')
    return None, None, skipped


def report(opt, message, level='warning'):
    """Tell the user now (stderr, rank 0) and in the log file once BasicSR's logger has been set up
    (calling ``get_root_logger`` earlier would keep BasicSR from ever adding the log file)."""
    if opt.get('rank', 0) == 0:
        print(f'{level}: {message}', file=sys.stderr, flush=True)
    _PENDING_LOG.append((level, message))


def flush_log():
    from basicsr.utils import get_root_logger
    logger = get_root_logger()
    while _PENDING_LOG:
        level, message = _PENDING_LOG.pop(0)
        getattr(logger, level)(message)


def load_resume_state(opt):
    """BasicSR's ``train.load_resume_state`` with the policy of the module docstring."""
    from basicsr.utils import check_resume
    if opt['auto_resume']:
        path, state, skipped = newest_complete_state(opt)
        for message in skipped:
            report(opt, message)
        if path is None:
            if skipped:
                raise InputError(f'--auto_resume: no complete training state in {opt["path"]["training_states"]} '
                                 f'({len(skipped)} skipped, see above; nothing was deleted). Restore the files, or '
                                 'start over without --auto_resume (BasicSR renames the old experiment folder).')
            return None
        if skipped:
            report(opt, f'--auto_resume: resuming from {path} (iteration {state["iter"]})')
        opt['path']['resume_state'] = path
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
        state, problems = state_problems(opt, path)
        if state is None:
            raise InputError(f'path.resume_state: cannot resume from {path}: {"; ".join(problems)}')
    else:
        return None
    check_resume(opt, state['iter'])
    return state
