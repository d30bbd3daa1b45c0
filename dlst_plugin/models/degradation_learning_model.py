"""Degradation learning (paper 3.2.2-3.2.3) as a BasicSR model on the adversarial core.

A ``CoupledStyleGAN2`` (``network_g``) turns each sampled z into a clean face (frozen red
network) and a degraded face (trainable green network). The green network minimises

    L = w_pix * L2(y_hat, y) + w_vgg * VGG19[18](avgpool_s(y_hat), avgpool_s(y)) + w_adv * softplus(-D(y_hat))

(weights 1.0 / 0.02 / 0.01 in the paper, set in the option file), while a StyleGAN2
discriminator with its early blocks frozen (FreezeD) learns real LQ faces against y_hat.
The data loader brings only real LQ faces (``{'lq': ...}``); z is sampled here.
"""
import os.path as osp

import torch
from basicsr.utils import get_root_logger, imwrite
from basicsr.utils.registry import MODEL_REGISTRY

from dlst_plugin.models.adversarial_core import AdversarialModel
from dlst_plugin.models.degradation_learning_utils import image_statistics, mean_statistics, pair_grid
from dlst_plugin.options.blocks import DegraderTrain, DegraderVal

VAL_CODES_SEED = 2023  # the validation grid shows the same z at every validation (and after resume)


@MODEL_REGISTRY.register()
class DegradationLearningModel(AdversarialModel):
    """Trains the green network of a ``CoupledStyleGAN2`` on unpaired real LQ faces, on the adversarial core.

    Options (besides BasicSR's usual ones): ``network_g`` (CoupledStyleGAN2), ``network_d``
    (PureStyleGAN2Discriminator; ``num_frozen_blocks`` defaults to every block above 32 px),
    ``path.pretrain_network_d`` (any layout ``dlst_plugin.checkpoints.reading`` reads), and in ``train``:
    ``pixel_opt``, ``perceptual_opt`` (the pooled VGG19 term; ``vgg_opt`` is its former name),
    ``gan_opt`` (required), ``optim_g``/``optim_d``, ``ema_decay``, ``r1_reg_weight`` and
    ``net_d_reg_every`` (R1 on real LQ faces, lazily every N iterations; weight 0 turns it off),
    optional ``scheduler`` (none = constant learning rate, the paper's). ``val``: ``num_samples``,
    ``pairs_per_row``.

    What the core is told: the fake images are the green network's degraded faces; the pixel and
    perceptual terms compare them with the red network's clean faces of the same codes; the real
    images for D are the real LQ faces of the batch; only the green network trains.
    """

    REQUIRE_GAN = True
    TRAIN_OPTIONS = DegraderTrain
    VAL_OPTIONS = DegraderVal  # the validation grid (besides BasicSR's val keys)

    PRETRAINED_NETWORK_KEYS = ('pretrained', )
    DEFAULT_VGG = 'vgg19'

    def __init__(self, opt):
        super().__init__(opt)
        own = {k: v for k, v in (opt.get('val') or {}).items() if k in DegraderVal.keys()}
        val = DegraderVal.decode(own, 'val')
        self.pairs_per_row = val.pairs_per_row
        generator = torch.Generator().manual_seed(VAL_CODES_SEED)
        self.val_codes = self.bare_g.draw_codes(val.num_samples, generator=generator).to(self.device)

    def discriminator_options(self):
        """``network_d`` with FreezeD's default depth: every block above 32x32."""
        opt_d = dict(self.opt['network_d'])
        if 'num_frozen_blocks' not in opt_d:
            from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
            opt_d['num_frozen_blocks'] = PureStyleGAN2Discriminator.blocks_above(opt_d['out_size'], 32)
        return opt_d

    def example_forward(self, which):
        if which == 'd':
            return super().example_forward(which)

        def forward(net):
            codes = net.draw_codes(1, device=self.device)
            return net(codes.z, codes.noise, codes.inject_index)[1]
        return forward

    # --- what the core asks ---------------------------------------------------------------------
    def feed_data(self, data):
        self.real_lq = self.to_memory_format(data['lq'].to(self.device))

    def generate(self):
        codes = self.bare_g.draw_codes(self.real_lq.shape[0], device=self.device)
        self.clean, self.degraded = self.net_g(codes.z, codes.noise, codes.inject_index)
        return self.degraded

    def loss_target(self):
        return self.clean

    def real_images(self):
        return self.real_lq

    def r1_settings(self):
        """(weight, every): ``train.r1_reg_weight`` and ``train.net_d_reg_every`` (defaults in DegraderTrain)."""
        return self.train_options.r1_reg_weight, self.train_options.net_d_reg_every

    def discriminator_step_ratio(self):
        """Lazy R1 every k iterations: D's Adam learning rate and betas x k / (k + 1), as StyleGAN2 (and
        BasicSR's StyleGAN2Model, GFP-GAN) do (docs/design.md#degradation-learning)."""
        weight, every = self.r1_settings()
        return every / (every + 1) if weight > 0 else 1

    def discriminator_extra_due(self, current_iter):
        weight, every = self.r1_settings()
        return weight > 0 and current_iter % every == 0

    def extra_discriminator_terms(self, real, real_pred, current_iter):
        """Lazy R1 (StyleGAN2): ``weight / 2 * |grad D(real)|^2``, scaled by the interval it runs at."""
        weight, every = self.r1_settings()
        grad = self.input_gradient(real_pred, real)
        return {'r1': weight / 2 * grad.float().pow(2).flatten(1).sum(1).mean() * every}

    # --- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def test(self):
        """Clean and degraded faces of the fixed validation codes, from the EMA network when there is one."""
        net = getattr(self, 'net_g_ema', None)
        self.clean, self.degraded = (net if net is not None else self.bare_g).generate(self.val_codes)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """No ground truth exists: log how the degraded faces compare with the clean ones and with
        the real LQ faces of ``dataloader``, and save the clean | degraded sample grid."""
        self.test()
        stats = {'clean': image_statistics(self.clean), 'degraded': image_statistics(self.degraded)}
        if dataloader is not None:
            stats['real_lq'] = mean_statistics(data['lq'] for data in dataloader)
        self.val_statistics = stats
        logger = get_root_logger()
        logger.info(f'Validation {current_iter}: ' + '; '.join(
            f'{src} ' + ', '.join(f'{k} {v:.5f}' for k, v in values.items()) for src, values in stats.items()))
        if tb_logger is not None:
            for src, values in stats.items():
                for key, value in values.items():
                    tb_logger.add_scalar(f'degradation/{key}_{src}', value, current_iter)
        if save_img:
            imwrite(pair_grid(self.clean, self.degraded, self.pairs_per_row), self.sample_grid_path(current_iter))

    def sample_grid_path(self, current_iter):
        folder = 'train' if self.opt['is_train'] else 'test'
        return osp.join(self.opt['path']['visualization'], folder, f'samples_{current_iter}.png')
