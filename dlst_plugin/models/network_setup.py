"""Putting a network on its device before DDP wraps it: memory format and ``torch.compile``.

* Memory format: an arch that runs channels-last inside (the Skip-Transformer, GLEAN, the StyleGAN2
  synthesis of the degrader; on a GPU, and in inference everywhere) declares ``MEMORY_FORMAT =
  torch.channels_last``; on a GPU its 4-D weights are stored channels-last too. Under DDP every trainable
  parameter then takes the strides its gradient arrives with (measured), so DistributedDataParallel's
  buckets match them (otherwise it warns "Grad strides do not match bucket view strides" and copies
  every gradient each step). ``train.channels_last: true`` puts every network and the input batches in
  channels-last memory; ``~`` (the default) does so where it was measured faster: bfloat16 autocast on a
  CPU that computes bfloat16 natively (oneDNN copies contiguous bfloat16 inputs to channels-last in every
  convolution; docs/benchmarks.md), unless a network of the run (the generator or the discriminator) cannot
  take channels-last input.
* ``train.compile: true`` compiles each network with ``torch.compile`` (``train.compile_mode``,
  ``train.compile_backend``); the first step pays the compilation. Checkpoints keep the plain keys.
"""
import torch

from dlst_plugin import devices
from dlst_plugin.errors import ConfigError


def channels_last_is_faster(step, device):
    """``train.channels_last: ~``: bfloat16 autocast on a CPU with native bfloat16 (measured 1.1-1.3x a
    training step there); elsewhere the archs choose (channels-last on a GPU, contiguous on other CPUs)."""
    return (torch.device(device).type == 'cpu' and step.use_amp and step.amp_dtype == 'bfloat16'
            and devices.cpu_has_native_bf16())


def resolve_channels_last(step, device, networks):
    """Whether the run's networks and batches are channels-last: ``train.channels_last`` when set (true is
    checked on each network where it is placed, :func:`place`: a clear error where one cannot), else
    :func:`channels_last_is_faster`, kept off (with a log line) when any network of the run cannot take
    channels-last input, as GFP-GAN's generator or BasicSR's StyleGAN2 discriminator. ``networks``: ``(option
    key, build)`` of each network, ``build()`` returning ``(network, input side or None)``; called in that
    auto mode only (the discriminator is built there for the probe, before the one that trains)."""
    if step.channels_last is not None:
        return step.channels_last
    if not channels_last_is_faster(step, device):
        return False
    for name, build in networks:
        try:
            net, size = build()
            if size:
                forward_channels_last(net, size)
        except Exception as err:  # any failure of the probe (a build or a forward) keeps the default layout
            from basicsr.utils import get_root_logger
            reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
            get_root_logger().info(f'train.channels_last: ~ keeps contiguous memory ({name} cannot take '
                                   f'channels-last input: {reason})')
            return False
    return True


def memory_format(net, channels_last):
    """The memory format ``net`` trains in: channels-last when the run is (:func:`resolve_channels_last`),
    or when the arch runs in it on its device (the archs train contiguous on a CPU:
    ``archs.stylegan2_ops.activation_format``)."""
    if channels_last:
        return torch.channels_last
    param = next(net.parameters(), None)
    if param is None or param.device.type == 'cpu':
        return torch.contiguous_format
    return getattr(net, 'MEMORY_FORMAT', torch.contiguous_format)


def forward_channels_last(net, size):
    """One forward of a channels-last input (batch 1, no graph) on the network's device; raises what the
    forward raises."""
    param = next(net.parameters(), None)
    device = param.device if param is not None else 'cpu'
    x = torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        net.train(was_training)


def check_channels_last(net, size, name):
    """:func:`forward_channels_last` as a start-up check: archs that flatten features with ``.view`` (GFP-GAN's)
    fail here, at start-up, instead of in the first step."""
    try:
        forward_channels_last(net, size)
    except RuntimeError as err:
        raise ConfigError(f'train.channels_last: {name} ({type(net).__name__}) cannot take channels-last input '
                          f'({str(err).splitlines()[0][:120]}); set train.channels_last: false') from None


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


def place(net, step, name, size=None, example=None, channels_last=False):
    """Memory format (and the channels-last check), gradient layout under DDP, and compilation of one
    network, before DDP wraps it. ``step``: the run's StepOptions; ``example(net)``: a forward on a tiny
    batch (for the layout probe); ``channels_last``: :func:`resolve_channels_last`'s answer (``size``: the
    input side for the channels-last check of ``train.channels_last: true``; ``~`` checked every network
    before it chose channels-last; None skips it)."""
    fmt = memory_format(net, channels_last)
    if channels_last and size and step.channels_last:
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
