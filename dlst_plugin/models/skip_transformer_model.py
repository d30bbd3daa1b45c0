"""Training of the Skip-Transformer restorer (paper 3.3.4-3.3.5, SPEC.md section 5).

Loss ``pixel (L2, 1.0) + perceptual (VGG16, 0.02) + adversarial (vanilla, 0.02)``, each from
the option file; a StyleGAN2 discriminator; Adam with separate parameter groups for the
encoder, the skip layers and the decoder; EMA of the generator; BasicSR's validation (PSNR,
SSIM, NIQE), image saving and resume, inherited from ``SRModel``.
"""
from collections import OrderedDict

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from dlst_plugin.models.pretrained_files import stop_if_pretrained_files_missing

DECODER_LR_FACTOR = 0.1  # decoder lr = encoder lr / 10 unless optim_g.decoder_lr is set (paper 3.3.5)


@MODEL_REGISTRY.register()
class SkipTransformerModel(SRModel):
    """BasicSR model for ``SkipTransformer`` (``network_g``) with a ``PureStyleGAN2Discriminator``
    (``network_d``, needed only when ``train.gan_opt`` is set).

    Option keys beyond ``SRModel``'s:
      train.optim_g.decoder_lr (default lr / 10), train.optim_g.skip_lr (default lr);
      train.gan_opt, train.optim_d; path.pretrain_network_d: a discriminator checkpoint in any
      layout ``dlst_plugin.checkpoints`` reads (a pretrained StyleGAN2 or a saved ``net_d``).
    Images are in [-1, 1]; visuals and validation see them in [0, 1].
    """

    def __init__(self, opt):
        stop_if_pretrained_files_missing(opt, network_keys=('decoder_load_path', ), vgg_opt_key='perceptual_opt',
                                         default_vgg='vgg16')
        super().__init__(opt)

    # --- set-up ------------------------------------------------------------------------------
    def init_training_settings(self):
        train_opt = self.opt['train']
        self.net_g.train()
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            load_path = self.opt['path'].get('pretrain_network_g')
            if load_path:
                self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
            else:
                self.model_ema(0)
            self.net_g_ema.eval()

        self.cri_pix = build_loss(train_opt['pixel_opt']).to(self.device) if train_opt.get('pixel_opt') else None
        self.cri_perceptual = (build_loss(train_opt['perceptual_opt']).to(self.device)
                               if train_opt.get('perceptual_opt') else None)
        self.cri_gan = build_loss(train_opt['gan_opt']).to(self.device) if train_opt.get('gan_opt') else None
        if not (self.cri_pix or self.cri_perceptual or self.cri_gan):
            raise ValueError('train: set at least one of pixel_opt, perceptual_opt, gan_opt')

        self.net_d = None
        if self.cri_gan is not None:
            if not self.opt.get('network_d'):
                raise ValueError('train.gan_opt needs a network_d (PureStyleGAN2Discriminator) in the options')
            self.net_d = self.model_to_device(build_network(self.opt['network_d']))
            self.print_network(self.net_d)
            load_path = self.opt['path'].get('pretrain_network_d')
            if load_path:
                self.load_discriminator(load_path)
            self.net_d.train()

        self.setup_optimizers()
        self.setup_schedulers()

    def load_discriminator(self, path):
        from dlst_plugin.checkpoints import load_into
        layout = load_into(self.get_bare_model(self.net_d), path, kind='discriminator',
                           strict=self.opt['path'].get('strict_load_d', True))
        get_root_logger().info(f'Loaded discriminator from {path} ({layout} layout).')

    def setup_optimizers(self):
        train_opt = self.opt['train']
        optim_g = dict(train_opt['optim_g'])
        optim_type, lr = optim_g.pop('type'), optim_g.pop('lr')
        group_lrs = {'encoder': lr, 'skip': optim_g.pop('skip_lr', lr),
                     'decoder': optim_g.pop('decoder_lr', lr * DECODER_LR_FACTOR)}
        groups = self.get_bare_model(self.net_g).param_groups()
        params = [{'params': groups[name], 'lr': group_lrs[name], 'name': name} for name in group_lrs if groups[name]]
        self.optimizer_g = self.get_optimizer(optim_type, params, lr, **optim_g)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_d = dict(train_opt['optim_d'])
            optim_type = optim_d.pop('type')
            self.optimizer_d = self.get_optimizer(optim_type, self.get_bare_model(self.net_d).trainable_parameters(),
                                                  **optim_d)
            self.optimizers.append(self.optimizer_d)

    # --- training ----------------------------------------------------------------------------
    def optimize_parameters(self, current_iter):
        loss_dict = OrderedDict()
        bare_d = self.get_bare_model(self.net_d) if self.net_d is not None else None
        d_params = bare_d.trainable_parameters() if bare_d is not None else []
        for p in d_params:  # only the trainable ones: FreezeD blocks stay frozen (SPEC.md section 3)
            p.requires_grad_(False)

        self.optimizer_g.zero_grad(set_to_none=True)
        self.output = self.net_g(self.lq)
        l_total = 0
        if self.cri_pix is not None:
            loss_dict['l_pix'] = self.cri_pix(self.output, self.gt)
            l_total = l_total + loss_dict['l_pix']
        if self.cri_perceptual is not None:
            loss_dict['l_percep'] = self.cri_perceptual(self.output, self.gt)
            l_total = l_total + loss_dict['l_percep']
        if self.cri_gan is not None:
            # the bare D: its parameters take no gradient here, DDP must not wait for them
            loss_dict['l_g_gan'] = self.cri_gan(bare_d(self.output), True, is_disc=False)
            l_total = l_total + loss_dict['l_g_gan']
        l_total.backward()
        self.optimizer_g.step()

        if bare_d is not None:
            for p in d_params:
                p.requires_grad_(True)
            self.optimizer_d.zero_grad(set_to_none=True)
            real = self.net_d(self.gt)
            l_d_real = self.cri_gan(real, True, is_disc=True)
            l_d_real.backward()
            fake = self.net_d(self.output.detach())
            l_d_fake = self.cri_gan(fake, False, is_disc=True)
            l_d_fake.backward()
            self.optimizer_d.step()
            loss_dict.update(l_d_real=l_d_real, l_d_fake=l_d_fake, out_d_real=real.detach().mean(),
                             out_d_fake=fake.detach().mean())

        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    # --- outputs -----------------------------------------------------------------------------
    def get_current_visuals(self):
        """lq / result / gt mapped from [-1, 1] to [0, 1], the range ``tensor2img`` and the
        metrics of ``SRModel``'s validation expect."""
        return OrderedDict((k, (v + 1) / 2) for k, v in super().get_current_visuals().items())

    def save(self, epoch, current_iter):
        if hasattr(self, 'net_g_ema'):
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        if getattr(self, 'net_d', None) is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)
