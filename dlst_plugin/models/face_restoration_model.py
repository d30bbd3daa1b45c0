"""The general face restorer: trains any registered architecture that maps an aligned face to a
restored one, on the adversarial core.

The network takes ``(b, 3, S, S)`` RGB in [-1, 1] and returns the restored face in [-1, 1] at its
output size (a tuple output, such as GFP-GAN's ``(image, rgbs)``, gives its first element). Known to
train: ``SkipTransformer``, ``GLEANStyleGAN2`` and GFP-GAN's ``GFPGANv1Clean`` (the paper's Table 1).
An arch with an ``in_size`` smaller than the data's faces (GLEAN's super-resolution) gets its input
resized to ``in_size`` (bicubic, antialiased) here.

Real images for D and the target of the pixel/perceptual terms are the ground truth ``gt``.
Parameters the restored image does not depend on (GFP-GAN's intermediate ``toRGB`` layers, an unused
mapping network) are frozen at start-up with one log line, so DDP never waits for their gradients.
Validation, metrics and image saving are BasicSR's ``SRModel``'s; images are shown in [0, 1].
"""
import contextlib
from collections import OrderedDict

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY
from torch.nn import functional as F

from dlst_plugin.archs.face_input import first_output
from dlst_plugin.loading.networks import build_restorer
from dlst_plugin.models.adversarial_core import AdversarialModel
from dlst_plugin.models.core_parts import unreached_parameter_names
from dlst_plugin.options.blocks import RestorerTrain

PRETRAINED_NETWORK_KEYS = ('decoder_load_path', 'bank_load_path')


@MODEL_REGISTRY.register()
class FaceRestorationModel(AdversarialModel):
    """Options: ``network_g`` (any restorer arch), ``network_d`` (needed with ``train.gan_opt``),
    ``path.pretrain_network_d`` (any StyleGAN2 discriminator layout the plugin reads, or a saved
    ``net_d``), and in ``train``: ``pixel_opt``, ``perceptual_opt``, ``gan_opt``, ``optim_g`` (``lr``
    and ``<group>_lr`` for the arch's parameter groups), ``optim_d``, ``ema_decay`` (0 = no EMA),
    ``scheduler``."""

    TRAIN_OPTIONS = RestorerTrain

    PRETRAINED_NETWORK_KEYS = PRETRAINED_NETWORK_KEYS
    DEFAULT_VGG = 'vgg16'

    @classmethod
    def option_problems(cls, opt):
        """The core's file checks, and the ``train.stream_pairs`` degrader: a degrader checkpoint of the
        restorer's face size."""
        problems = super().option_problems(opt)
        stream = (opt.get('train') or {}).get('stream_pairs')
        if isinstance(stream, dict) and stream.get('degrader'):
            from dlst_plugin.models.pair_stream import degrader_size_problem
            size = (opt.get('network_g') or {}).get('out_size')
            problems += degrader_size_problem(stream['degrader'], stream.get('network'), size)
        return problems

    # --- the network ----------------------------------------------------------------------------
    def build_generator(self):
        return build_restorer(self.opt['network_g'])

    def input_size(self, net=None):
        """The face size the network takes: its ``in_size`` (GLEAN) or ``out_size``, else the option's."""
        net = net if net is not None else self.bare_g
        opt = self.opt['network_g']
        size = getattr(net, 'in_size', None) or opt.get('in_size') or getattr(net, 'out_size', None)
        return int(size or opt.get('out_size') or 0)

    def prepare_generator_for_training(self, net_g):
        """Freeze the trainable parameters the restored image does not depend on."""
        size = self.input_size(net_g)
        if not size:
            return
        unused = set(unreached_parameter_names(net_g, torch.zeros(1, 3, size, size, device=self.device)))
        if not unused:
            return
        for name, p in net_g.named_parameters():
            if name in unused:
                p.requires_grad_(False)
        prefixes = sorted({'.'.join(n.split('.')[:2]) for n in unused})
        self.logger.info(f'{len(unused)} parameters of {type(net_g).__name__} do not affect its output and stay '
                         f'frozen: {", ".join(prefixes)}')

    def generator_input_size(self, net_g):
        return self.input_size(net_g)

    def run_generator(self, net, lq):
        return first_output(net(lq))

    def init_training_settings(self):
        super().init_training_settings()
        self.stream = None
        if self.train_options.stream_pairs is not None:
            from dlst_plugin.models.pair_stream import PairStream
            self.stream = PairStream(self.train_options.stream_pairs, self.device, self.opt.get('rank', 0),
                                     self.opt.get('manual_seed') or 0)
            self.stream.check_size(self.input_size(), self.gt_size())
            batch = ((self.opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
            if batch:
                how = ('instead of' if self.stream.replaces_batch else '+')
                self.logger.info(f'Streamed pairs: each batch = {self.stream.count(batch)} drawn by the degrader '
                                 f'({self.stream.mode}, pool {self.stream.queue_size or "off"}) {how} the {batch} '
                                 'of the data loader.')

    def gt_size(self):
        """The side of the restored faces (the targets): the arch's ``out_size``."""
        return int(getattr(self.bare_g, 'out_size', 0) or self.opt['network_g'].get('out_size') or 0)

    def optimize_parameters(self, current_iter):
        if getattr(self, 'stream', None) is not None:
            lq, gt = self.stream.pairs(self.stream.count(self.lq.shape[0]), current_iter)
            lq = self.resize_input(lq)
            if not self.stream.replaces_batch:  # second_order: appended to the loader's (FFHQ) batch
                lq, gt = torch.cat([self.lq, lq]), torch.cat([self.gt, gt])
            self.lq, self.gt = self.to_memory_format(lq), self.to_memory_format(gt)
        super().optimize_parameters(current_iter)

    # --- data -----------------------------------------------------------------------------------
    def feed_data(self, data):
        if 'degradation' in data and 'lq' not in data:  # the data loader left GFP-GAN's degradation to the device
            data = dict(data, **self.degrade_on_device(data))
        # contiguous unless train.channels_last: some archs (GFP-GAN's) flatten features with .view
        self.lq = self.to_memory_format(self.resize_input(data['lq'].to(self.device)))
        if 'gt' in data:
            self.gt = self.to_memory_format(data['gt'].to(self.device))

    def degrade_on_device(self, data):
        """lq / gt of a batch whose dataset drew the degradation but left its application to the device."""
        from dlst_plugin.data.device_degradation import degrade_batch
        gt01 = (data['gt'].to(self.device).float() + 1) / 2
        lq, gt = degrade_batch(gt01, data['degradation'])
        return {'lq': lq * 2 - 1, 'gt': gt * 2 - 1}

    def resize_input(self, lq):
        size = self.input_size()
        if size and lq.shape[-1] != size:
            lq = F.interpolate(lq, size=(size, size), mode='bicubic', align_corners=False, antialias=True)
            lq = lq.clamp(-1, 1)
        return lq

    # --- what the core asks ---------------------------------------------------------------------
    def generate(self):
        self.output = self.run_generator(self.net_g, self.lq)
        return self.output

    def loss_target(self):
        return self.gt

    def real_images(self):
        return self.gt

    # --- inference and validation ---------------------------------------------------------------
    @torch.no_grad()
    def test(self):
        """The restored batch from the EMA network (else the live one), in the training's autocast."""
        net = getattr(self, 'net_g_ema', None)
        if net is None:
            net = self.net_g
            net.eval()
        control = getattr(self, 'step_control', None)
        with control.autocast() if control is not None else contextlib.nullcontext():
            self.output = self.run_generator(net, self.lq).float()
        if net is self.net_g:
            net.train()

    dist_validation = SRModel.dist_validation
    nondist_validation = SRModel.nondist_validation
    _log_validation_metric_values = SRModel._log_validation_metric_values

    def get_current_visuals(self):
        """lq / result / gt mapped from [-1, 1] to [0, 1], the range ``tensor2img`` and the metrics of
        BasicSR's validation expect."""
        out = OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu())
        if hasattr(self, 'gt'):
            out['gt'] = self.gt.detach().cpu()
        return OrderedDict((k, (v + 1) / 2) for k, v in out.items())
