"""Every patch dlst-plugin applies to BasicSR 1.4.2, in one place (SPEC.md section 7).

Each function fixes one BasicSR behaviour, named in its docstring; ``apply()`` runs them
all once. They are tested one by one in ``tests/test_compat.py``.
"""
import collections
import os
import os.path as osp

import dlst_plugin_startup

_APPLIED = False


def alias_functional_tensor():
    """basicsr/data/degradations.py imports ``torchvision.transforms.functional_tensor``,
    which torchvision removed in 0.17. The start-up finder serves it from
    ``torchvision.transforms._functional_tensor``; it must be in place before basicsr
    is imported, so this runs first (and at interpreter start-up through the .pth)."""
    dlst_plugin_startup.install()


def _cuda_usable():
    import torch
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def patch_init_dist():
    """basicsr.utils.dist_util._init_dist_pytorch always calls ``torch.cuda.set_device``
    and ``init_dist`` defaults to NCCL: ``--launcher pytorch`` dies on a CPU-only machine.
    Use NCCL and pin the local GPU when CUDA is usable, gloo otherwise."""
    import torch
    import torch.distributed as dist
    from basicsr.utils import dist_util

    def _init_dist_pytorch(backend='nccl', **kwargs):
        if _cuda_usable():
            local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        else:
            backend = 'gloo'
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, **kwargs)

    dist_util._init_dist_pytorch = _init_dist_pytorch


def patch_model_to_device():
    """basicsr.models.base_model.BaseModel.model_to_device passes
    ``device_ids=[torch.cuda.current_device()]`` to DistributedDataParallel, which fails
    without CUDA. On CPU, wrap without device ids (gloo DDP)."""
    import torch
    from basicsr.models.base_model import BaseModel
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    def model_to_device(self, net):
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

    BaseModel.model_to_device = model_to_device


def _basicsr_install_root():
    import basicsr
    return osp.abspath(osp.join(osp.dirname(basicsr.__file__), osp.pardir))


def patch_parse_options():
    """basicsr.utils.options.parse_options puts ``experiments/`` (and basicsr.train the
    ``tb_logger/``) under the root it is given; ``python -m basicsr.train`` gives it
    site-packages. Use the working directory instead, and honour a ``path.experiments_root``
    set in the option file (BasicSR overwrites it)."""
    from basicsr.utils import options

    original = getattr(options.parse_options, '__wrapped__', options.parse_options)

    def parse_options(root_path, is_train=True):
        if osp.abspath(root_path) == _basicsr_install_root():
            root_path = os.getcwd()
        opt, args = original(root_path, is_train=is_train)
        wanted = _experiments_root_from_file(args.opt)
        if is_train and wanted:
            root = osp.abspath(osp.expanduser(wanted))
            opt['path'].update(
                experiments_root=root, models=osp.join(root, 'models'),
                training_states=osp.join(root, 'training_states'), log=root,
                visualization=osp.join(root, 'visualization'), tb_logger=osp.join(root, 'tb_logger'))
        return opt, args

    parse_options.__wrapped__ = original
    options.parse_options = parse_options
    from basicsr import test, train  # both bound the original name at import time
    train.parse_options = test.parse_options = parse_options


def _experiments_root_from_file(opt_path):
    import yaml
    from basicsr.utils.options import ordered_yaml
    with open(opt_path, encoding='utf-8') as f:
        raw = yaml.load(f, Loader=ordered_yaml()[0])
    return ((raw or {}).get('path') or {}).get('experiments_root')


def patch_train_pipeline():
    """basicsr.train.load_resume_state maps every storage to CUDA (``storage.cuda(id)``) and
    looks for ``--auto_resume`` states in ``./experiments/<name>`` whatever the experiments
    root is; ``init_tb_loggers`` ignores a custom experiments root. Load onto the GPU when
    there is one and the CPU otherwise (``weights_only=True``), from the configured root."""
    from basicsr import train
    from basicsr.utils import check_resume, init_tb_logger, scandir

    def load_resume_state(opt):
        path = None
        if opt['auto_resume']:
            state_dir = opt['path']['training_states']
            if osp.isdir(state_dir):
                states = [float(v.split('.state')[0]) for v in scandir(state_dir, suffix='state', recursive=False)]
                if states:
                    path = osp.join(state_dir, f'{max(states):.0f}.state')
                    opt['path']['resume_state'] = path
        elif opt['path'].get('resume_state'):
            path = opt['path']['resume_state']
        if path is None:
            return None
        state = load_training_state(path)
        check_resume(opt, state['iter'])
        return state

    original_tb = train.init_tb_loggers

    def init_tb_loggers(opt):
        if opt['path'].get('tb_logger') and opt['logger'].get('use_tb_logger') and opt['rank'] == 0:
            return init_tb_logger(log_dir=opt['path']['tb_logger'])
        return original_tb(opt)

    train.load_resume_state = load_resume_state
    train.init_tb_loggers = init_tb_loggers


def load_training_state(path):
    """Read a BasicSR ``.state`` file onto the current device, without unpickling code."""
    import torch
    location = f'cuda:{torch.cuda.current_device()}' if _cuda_usable() else 'cpu'
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(path, map_location=location, weights_only=True)


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
    _APPLIED = True
