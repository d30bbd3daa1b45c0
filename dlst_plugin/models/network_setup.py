"""Putting a network on its device before DDP wraps it: memory format and ``torch.compile``.

* Memory format: an arch that runs channels-last inside (the Skip-Transformer, GLEAN, the StyleGAN2
  synthesis of the degrader; on a GPU, and in inference everywhere) declares ``MEMORY_FORMAT =
  torch.channels_last``; on a GPU its 4-D weights are stored channels-last too. Under DDP every trainable
  parameter then takes the strides its gradient arrives with (measured), so DistributedDataParallel's
  buckets match them (otherwise it warns "Grad strides do not match bucket view strides" and copies
  every gradient each step). ``train.channels_last: true`` puts every network and the input batches in
  channels-last memory.
* ``train.compile: true`` compiles each network with ``torch.compile`` (``train.compile_mode``,
  ``train.compile_backend``); the first step pays the compilation. Checkpoints keep the plain keys.
"""
import torch

from dlst_plugin.errors import ConfigError


def memory_format(net, step):
    """The memory format ``net`` trains in: channels-last when asked for, or when the arch runs in it on
    its device (the archs train contiguous on a CPU: ``archs.stylegan2_ops.activation_format``).
    ``step``: the run's :class:`dlst_plugin.options.blocks.StepOptions`."""
    if step.channels_last:
        return torch.channels_last
    param = next(net.parameters(), None)
    if param is None or param.device.type == 'cpu':
        return torch.contiguous_format
    return getattr(net, 'MEMORY_FORMAT', torch.contiguous_format)


def check_channels_last(net, size, name):
    """One forward of a channels-last input (batch 1, no graph) on the network's device: archs that
    flatten features with ``.view`` (GFP-GAN's) fail here, at start-up, instead of in the first step."""
    param = next(net.parameters(), None)
    device = param.device if param is not None else 'cpu'
    x = torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(x)
    except RuntimeError as err:
        raise ConfigError(f'train.channels_last: {name} ({type(net).__name__}) cannot take channels-last input '
                          f'({str(err).splitlines()[0][:120]}); set train.channels_last: false') from None
    finally:
        net.train(was_training)


def compile_network(net, step, name):
    """``torch.compile`` of ``net`` as ``train.compile*`` ask, with a clear error where it cannot work."""
    if not step.compile:
        return net
    if not hasattr(torch, 'compile'):
        raise ConfigError(f'train.compile: this PyTorch ({torch.__version__}) has no torch.compile')
    try:
        import torch._dynamo as dynamo
        if not dynamo.is_dynamo_supported():
            raise ConfigError('train.compile: torch.compile is not supported on this Python/platform; '
                              'set train.compile: false')
    except ImportError as err:
        raise ConfigError(f'train.compile: torch.compile is unavailable ({err}); set train.compile: false') from None
    dynamo.config.suppress_errors = True  # a graph that cannot compile (no compiler, an unsupported op) runs eagerly
    from basicsr.utils import get_root_logger
    get_root_logger().info(f'train.compile: {name} is compiled at its first step ({step.compile_backend}, mode '
                           f'{step.compile_mode or "default"}); parts that cannot compile run eagerly, with a warning')
    return torch.compile(net, mode=step.compile_mode, backend=step.compile_backend)


def unwrap(net):
    """The plain module under DDP/DataParallel and ``torch.compile`` wrappers."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel
    if isinstance(net, (DataParallel, DistributedDataParallel)):
        net = net.module
    return getattr(net, '_orig_mod', net)


def place(net, step, name, size=None, example=None):
    """Memory format (and the channels-last check), gradient layout under DDP, and compilation of one
    network, before DDP wraps it. ``step``: the run's StepOptions; ``example(net)``: a forward on a tiny
    batch (for the layout probe)."""
    fmt = memory_format(net, step)
    if step.channels_last and size:
        check_channels_last(net, size, name)
    to_memory_format(net, fmt)
    if example is not None:
        align_parameter_strides(net, example)
    return compile_network(net, step, name)


@torch.no_grad()
def to_memory_format(net, fmt):
    """Store the 4-D parameters and buffers of ``net`` in ``fmt`` (``Module.to(memory_format=...)``
    refuses modules holding 5-D weights, as StyleGAN2's modulated convolutions)."""
    for tensor in list(net.parameters()) + list(net.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=fmt)


def align_parameter_strides(net, example):
    """Give every trainable parameter the strides its gradient arrives with, measured by one forward and
    backward of ``example(net)``.

    DistributedDataParallel lays its gradient buckets out like the parameters and copies every
    gradient whose strides differ ("Grad strides do not match bucket view strides", each step). The
    strides a gradient gets depend on the kernels (channels-last convolutions, depthwise weights whose
    size-1 dimension makes two layouts equal, broadcast biases), so they are measured, not guessed."""
    params = [p for p in net.parameters() if p.requires_grad]
    out = example(net)
    from dlst_plugin.archs.face_input import first_output
    out = first_output(out)
    grads = torch.autograd.grad(out.float().mean(), params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None and g.stride() != p.stride():
                p.data = torch.empty_strided(p.shape, g.stride(), dtype=p.dtype, device=p.device).copy_(p.data)
