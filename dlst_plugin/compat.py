"""Every patch dlst-plugin applies to BasicSR 1.4.2, in one place.

Each function fixes one BasicSR behaviour, named in its docstring; ``apply()`` runs them
all once. They are tested one by one in ``tests/test_compat.py`` (saving and resuming in
``tests/test_training_state.py``, the option check in ``tests/test_options_check.py``). The
longer logic lives beside: :mod:`dlst_plugin.checkpoints.training_state` (atomic saves, resume policy),
:mod:`dlst_plugin.options.check` (the option check), :mod:`dlst_plugin.options.file` (reading an
option file without evaluating Python tags).

The plugin is imported into every BasicSR process of the environment. Each patch changes behaviour only
for the plugin's runs (:mod:`dlst_plugin.options.ownership`); another project's run goes through BasicSR's
own code, except where the patch changes nothing it can observe (the torchvision alias; atomic checkpoint
writes, which leave the same files).
"""
import os
import os.path as osp
import sys

import dlst_plugin_startup

_APPLIED = False


def _plugin_run():
    from dlst_plugin.options.ownership import is_plugin_run
    return is_plugin_run()


def alias_functional_tensor():
    """basicsr/data/degradations.py imports ``torchvision.transforms.functional_tensor``,
    which torchvision removed in 0.17. The start-up finder serves it from
    ``torchvision.transforms._functional_tensor``; it must be in place before basicsr
    is imported, so this runs first (and at interpreter start-up through the .pth)."""
    dlst_plugin_startup.install()


def patch_init_dist():
    """basicsr.utils.dist_util._init_dist_pytorch always calls ``torch.cuda.set_device``
    and ``init_dist`` defaults to NCCL: ``--launcher pytorch`` dies on a CPU-only machine.
    Use NCCL and pin the local GPU when CUDA is usable, gloo otherwise."""
    import torch
    import torch.distributed as dist
    from basicsr.utils import dist_util

    original = getattr(dist_util._init_dist_pytorch, '__wrapped__', dist_util._init_dist_pytorch)

    def _init_dist_pytorch(backend='nccl', **kwargs):
        from dlst_plugin.devices import cuda_usable
        if not _plugin_run():
            return original(backend, **kwargs)
        if cuda_usable():
            local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        else:
            backend = 'gloo'
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, **kwargs)

    _init_dist_pytorch.__wrapped__ = original
    dist_util._init_dist_pytorch = _init_dist_pytorch


def patch_model_to_device():
    """basicsr.models.base_model.BaseModel.model_to_device passes
    ``device_ids=[torch.cuda.current_device()]`` to DistributedDataParallel, which fails
    without CUDA. On CPU, wrap without device ids (gloo DDP)."""
    import torch
    from basicsr.models.base_model import BaseModel
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    original = getattr(BaseModel.model_to_device, '__wrapped__', BaseModel.model_to_device)

    def model_to_device(self, net):
        if not _plugin_run():
            return original(self, net)
        net = net.to(self.device)
        if self.opt['dist']:
            find_unused = self.opt.get('find_unused_parameters', False)
            if self.device.type == 'cuda':
                net = DistributedDataParallel(
                    net, device_ids=[torch.cuda.current_device()], find_unused_parameters=find_unused)
            else:
                net = DistributedDataParallel(net, find_unused_parameters=find_unused)
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net

    model_to_device.__wrapped__ = original
    BaseModel.model_to_device = model_to_device


def _basicsr_install_root():
    import basicsr
    return osp.abspath(osp.join(osp.dirname(basicsr.__file__), osp.pardir))


def patch_parse_options():
    """basicsr.utils.options.parse_options reads option files unchecked: keys it does not read are
    ignored (``pixel_optt`` trains without that loss, ``manual_seedd`` with a random seed), a misspelt
    required key is a bare KeyError (``save_checkpoint_freq`` only after training has started) and a
    string where a number belongs fails deep inside. It also puts ``experiments/`` (and basicsr.train
    the ``tb_logger/``) under the root it is given, which ``python -m basicsr.train`` makes
    site-packages, and overwrites a ``path.experiments_root`` set in the file.

    Read and check the ``-opt`` file (after ``--force_yml``) once, with the plugin's own loader (it
    evaluates no ``!!python/object`` tag; BasicSR's load runs them), before BasicSR acts on it, and decide
    whose run it is. A plugin run with a problem stops with one ``error:`` block, exit code 2, from every
    launcher; then it uses the working directory as the root, and the file's ``path.experiments_root``
    when it sets one. Another project's run gets the findings as warnings and BasicSR's own parsing."""
    from basicsr.utils import options

    original = getattr(options.parse_options, '__wrapped__', options.parse_options)

    def parse_options(root_path, is_train=True):
        from dlst_plugin.options.check import check_launch
        from dlst_plugin.options.ownership import launcher
        checked, plugin_run = check_launch(sys.argv[1:], is_train)
        if not plugin_run:  # as BasicSR would: the takeover of python -m basicsr.X passed the working directory
            if launcher() in ('basicsr.train', 'basicsr.test'):
                root_path = _basicsr_install_root()
            return original(root_path, is_train=is_train)
        if osp.abspath(root_path) == _basicsr_install_root():
            root_path = os.getcwd()
        opt, args = original(root_path, is_train=is_train)
        path_opt = (checked or {}).get('path')
        wanted = path_opt.get('experiments_root') if isinstance(path_opt, dict) else None
        if is_train and wanted:
            root = osp.abspath(osp.expanduser(wanted))
            opt['path'].update(
                experiments_root=root, models=osp.join(root, 'models'),
                training_states=osp.join(root, 'training_states'), log=root,
                visualization=osp.join(root, 'visualization'), tb_logger=osp.join(root, 'tb_logger'))
        if is_train:
            _guard_training_run(opt)
        return opt, args

    parse_options.__wrapped__ = original
    from basicsr import test, train  # both bound the original name at import time
    options.parse_options = train.parse_options = test.parse_options = parse_options


def _guard_training_run(opt):
    """A plugin training run: hold the lock of its experiment folder (rank 0; every rank learns the verdict)
    and stop cleanly on SIGTERM / SIGUSR1 (:mod:`dlst_plugin.run_control`). A live run of the same name
    stops this one here with exit code 2, before BasicSR renames or writes anything."""
    import atexit

    from dlst_plugin import run_control
    from dlst_plugin.checkpoints import training_state
    from dlst_plugin.errors import ConfigError
    verdict = None
    if opt.get('rank', 0) == 0:
        lock = run_control.ExperimentLock(opt['path']['experiments_root'])
        try:  # any failure becomes the verdict every rank learns (an escaping one would leave them waiting)
            took_over = lock.acquire()
        except ConfigError as err:
            verdict = str(err)
        except OSError as err:
            verdict = f'cannot take the lock {lock.path} of {lock.folder} ({err.strerror or err}); nothing was run'
        else:
            atexit.register(lock.release)
            if took_over and lock.file is None:  # the file system cannot lock: going on without
                training_state.report(opt, took_over)
            elif took_over:
                training_state.report(opt, f'{lock.path}: {took_over}', level='info')
    if opt.get('dist'):
        import torch.distributed as dist
        shared = [verdict]
        dist.broadcast_object_list(shared, src=0)
        verdict = shared[0]
    if verdict is not None:
        if opt.get('rank', 0) == 0:
            print(f'error: {verdict}', file=sys.stderr, flush=True)
        sys.exit(2)
    run_control.STOP.install()


def patch_train_pipeline():
    """basicsr.train.load_resume_state maps every storage to CUDA (``storage.cuda(id)``), looks for
    ``--auto_resume`` states in ``./experiments/<name>`` whatever the experiments root is, and
    takes the highest-numbered ``.state`` even when it is truncated (a bare EOFError) or the
    networks of its iteration are missing; ``init_tb_loggers`` ignores a custom experiments root.
    Resume from the newest complete state of the configured root, onto the GPU when there is one
    and the CPU otherwise (``weights_only=True``), and log each state passed over
    (:mod:`dlst_plugin.checkpoints.training_state`)."""
    from basicsr import train
    from basicsr.utils import init_tb_logger

    from dlst_plugin.checkpoints import training_state

    original_tb = getattr(train.init_tb_loggers, '__wrapped__', train.init_tb_loggers)
    original_resume = getattr(train.load_resume_state, '__wrapped__', train.load_resume_state)

    def init_tb_loggers(opt):
        training_state.flush_log()  # the first call after BasicSR set up its log file (warnings included)
        if _plugin_run() and opt['path'].get('tb_logger') and opt['logger'].get('use_tb_logger') \
                and opt['rank'] == 0:
            return init_tb_logger(log_dir=opt['path']['tb_logger'])
        return original_tb(opt)

    def load_resume_state(opt):
        return training_state.load_resume_state(opt) if _plugin_run() else original_resume(opt)

    init_tb_loggers.__wrapped__ = original_tb
    load_resume_state.__wrapped__ = original_resume
    train.load_resume_state = load_resume_state
    train.init_tb_loggers = init_tb_loggers
    _patch_preemption(train)


def _patch_preemption(train):
    """basicsr.train's loop dies on SIGTERM with whatever was saved last. In a plugin run, the model it builds
    saves and stops after the iteration a stop signal arrived in (:func:`dlst_plugin.run_control.guard_optimize`);
    the epoch for the training state is what the sampler was last told."""
    from basicsr.data.data_sampler import EnlargedSampler

    from dlst_plugin import run_control
    original_build = getattr(train.build_model, '__wrapped__', train.build_model)
    original_set_epoch = getattr(EnlargedSampler.set_epoch, '__wrapped__', EnlargedSampler.set_epoch)
    epochs = {}

    def build_model(opt):
        model = original_build(opt)
        if _plugin_run() and opt.get('is_train'):
            run_control.guard_optimize(model, opt, epochs)
        return model

    def set_epoch(self, epoch):
        epochs['epoch'] = epoch
        original_set_epoch(self, epoch)

    build_model.__wrapped__ = original_build
    set_epoch.__wrapped__ = original_set_epoch
    train.build_model = build_model
    EnlargedSampler.set_epoch = set_epoch


def patch_save_network():
    """basicsr.models.base_model.BaseModel.save_network writes ``net_*_N.pth`` in place with
    torch.save (a kill mid-write leaves a truncated file under the final name) and, after three
    failed tries, logs "Just ignore it" and trains on without the checkpoint. Write through
    ``atomic_torch_save`` and stop with CheckpointSaveError when every try failed (another project's run:
    the same atomic writes, and BasicSR's "Just ignore it" after the third failure)."""
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import get_root_logger
    from basicsr.utils.dist_util import master_only

    from dlst_plugin.checkpoints import training_state

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        meta = self.network_meta(net_label) if hasattr(self, 'network_meta') else None  # the plugin's models
        training_state.save_network(self, net, net_label, current_iter, param_key, get_root_logger().warning, meta)

    BaseModel.save_network = save_network


def patch_save_training_state():
    """basicsr.models.base_model.BaseModel.save_training_state writes ``N.state`` in place (a kill
    leaves a 0-byte ``N.state`` that ``--auto_resume`` then picks) and ignores a save that failed
    three times. Write through ``atomic_torch_save``; stop with CheckpointSaveError when every
    try failed (another project's run: atomic writes, failures ignored as BasicSR does)."""
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import get_root_logger
    from basicsr.utils.dist_util import master_only

    from dlst_plugin.checkpoints import training_state

    @master_only
    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers]}
        path = osp.join(self.opt['path']['training_states'], f'{current_iter}.state')
        training_state.save_with_retries(state, path, 'training state', get_root_logger().warning)

    BaseModel.save_training_state = save_training_state


def patch_load_network():
    """basicsr.models.base_model.BaseModel.load_network (``path.pretrain_network_*`` and resumed
    ``net_*_N.pth`` of BasicSR's own models) calls torch.load without ``weights_only``: a crafted
    file runs code as soon as torch's default is switched off (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1),
    and a text or truncated file gives a pickle traceback. Read through
    ``dlst_plugin.checkpoints.reading.read_checkpoint`` (``weights_only=True``, passed explicitly); a file
    that is not a network checkpoint stops the run with one InputError naming it."""
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import get_root_logger

    from dlst_plugin.checkpoints import training_state

    original = getattr(BaseModel.load_network, '__wrapped__', BaseModel.load_network)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        if not _plugin_run():
            return original(self, net, load_path, strict, param_key)
        training_state.load_network(self, net, load_path, strict, param_key, get_root_logger())

    load_network.__wrapped__ = original
    BaseModel.load_network = load_network


def patch_arch_registry():
    """basicsr.utils.registry.ARCH_REGISTRY only knows the archs of packages already imported: an
    option file naming GFP-GAN's ``GFPGANv1Clean`` fails with a bare KeyError unless the user imports
    gfpgan first. Import the package of a known external arch on its first lookup (and name the
    extra to install when it is missing); every other name behaves as before."""
    import types

    from basicsr.utils.registry import ARCH_REGISTRY

    from dlst_plugin.archs.external import import_external_arch

    if getattr(ARCH_REGISTRY.get, '_dlst_lazy', False):
        return
    original = ARCH_REGISTRY.get

    def get(self, name, suffix='basicsr'):
        if name not in self._obj_map and _plugin_run() and import_external_arch(name):
            return self._obj_map[name]
        return original(name, suffix)

    get._dlst_lazy = True
    ARCH_REGISTRY.get = types.MethodType(get, ARCH_REGISTRY)


def apply():
    """Apply every patch once. Called by ``import dlst_plugin``."""
    global _APPLIED
    if _APPLIED:
        return
    alias_functional_tensor()
    patch_init_dist()
    patch_model_to_device()
    patch_parse_options()
    patch_train_pipeline()
    patch_save_network()
    patch_save_training_state()
    patch_load_network()
    patch_arch_registry()
    _APPLIED = True
