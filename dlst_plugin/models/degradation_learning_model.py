"""Degradation learning (paper 3.2.2-3.2.3, SPEC.md section 3) as a BasicSR model.

A ``CoupledStyleGAN2`` (``network_g``) turns each sampled z into a clean face (frozen red
network) and a degraded face (trainable green network). The green network minimises

    L = w_pix * L2(y_hat, y) + w_vgg * VGG19[18](avgpool_s(y_hat), avgpool_s(y)) + w_adv * softplus(-D(y_hat))

(weights 1.0 / 0.02 / 0.01 in the paper, set in the option file), while a StyleGAN2
discriminator with its early blocks frozen (FreezeD) learns real LQ faces against y_hat.
The data loader brings only real LQ faces (``{'lq': ...}``); z is sampled here.
"""
import copy
import os.path as osp
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.losses.gan_loss import r1_penalty
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger, imwrite
from basicsr.utils.registry import MODEL_REGISTRY

from dlst_plugin.models.degradation_learning_utils import (
    ema_update,
    image_statistics,
    mean_statistics,
    pair_grid,
)
from dlst_plugin.models.pretrained_files import stop_if_pretrained_files_missing

VAL_CODES_SEED = 2023  # the validation grid shows the same z at every validation (and after resume)


@MODEL_REGISTRY.register()
class DegradationLearningModel(BaseModel):
    """Trains the green network of a ``CoupledStyleGAN2`` on unpaired real LQ faces.

    Options (besides BasicSR's usual ones): ``network_g`` (CoupledStyleGAN2), ``network_d``
    (PureStyleGAN2Discriminator; ``num_frozen_blocks`` defaults to every block above 32 px),
    ``path.pretrain_network_d`` (any layout ``dlst_plugin.checkpoints`` reads), and in ``train``:
    ``pixel_opt``, ``vgg_opt``, ``gan_opt`` (each may be omitted to drop its term),
    ``optim_g``/``optim_d``, ``ema_decay``, ``r1_reg_weight`` and ``net_d_reg_every``
    (R1 on real LQ faces, lazily every N iterations; weight 0 turns it off), optional ``scheduler``
    (none = constant learning rate, the paper's). ``val``: ``num_samples``, ``pairs_per_row``.
    """

    def __init__(self, opt):
        stop_if_pretrained_files_missing(opt, network_keys=('pretrained', ), vgg_opt_key='vgg_opt',
                                         default_vgg='vgg19')
        super().__init__(opt)
        self.net_g = self.model_to_device(build_network(opt['network_g']))
        self.print_network(self.net_g)
        load_path = opt['path'].get('pretrain_network_g')
        if load_path:  # a coupled checkpoint saved by this model (fine-tuning, resume)
            self.load_network(self.net_g, load_path, opt['path'].get('strict_load_g', True),
                              opt['path'].get('param_key_g', 'params'))
        self.net_g_ema = copy.deepcopy(self.bare_g).eval()
        if load_path:
            self.load_network(self.net_g_ema, load_path, opt['path'].get('strict_load_g', True), 'params_ema')
        for p in self.net_g_ema.parameters():
            p.requires_grad_(False)
        val_opt = opt.get('val') or {}
        self.pairs_per_row = val_opt.get('pairs_per_row', 4)
        generator = torch.Generator().manual_seed(VAL_CODES_SEED)
        self.val_codes = self.bare_g.draw_codes(val_opt.get('num_samples', 8), generator=generator).to(self.device)
        if self.is_train:
            self.init_training_settings()

    @property
    def bare_g(self):
        return self.get_bare_model(self.net_g)

    @property
    def bare_d(self):
        return self.get_bare_model(self.net_d)

    # --- set-up --------------------------------------------------------------------------------
    def init_training_settings(self):
        train_opt = self.opt['train']
        self.net_d = self.model_to_device(build_network(self.discriminator_options()))
        self.print_network(self.net_d)
        load_path = self.opt['path'].get('pretrain_network_d')
        if load_path:
            from dlst_plugin.checkpoints import load_into
            load_into(self.bare_d, load_path, kind='discriminator', strict=self.opt['path'].get('strict_load_d', True))
        self.net_g.train()
        self.net_d.train()
        self.cri_pix = self._build_loss(train_opt.get('pixel_opt'))
        self.cri_vgg = self._build_loss(train_opt.get('vgg_opt'))
        self.cri_gan = self._build_loss(train_opt.get('gan_opt'))
        if self.cri_gan is None:
            raise ValueError('train.gan_opt is required: the adversarial term is what learns the degradation')
        self.ema_decay = train_opt.get('ema_decay', 0.999)
        self.r1_reg_weight = train_opt.get('r1_reg_weight', 10)
        self.net_d_reg_every = train_opt.get('net_d_reg_every', 16)
        self.setup_optimizers()
        if train_opt.get('scheduler'):
            self.setup_schedulers()

    def discriminator_options(self):
        """``network_d`` with FreezeD's default depth: every block above 32x32 (SPEC.md section 3)."""
        opt_d = dict(self.opt['network_d'])
        if 'num_frozen_blocks' not in opt_d:
            from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
            opt_d['num_frozen_blocks'] = PureStyleGAN2Discriminator.blocks_above(opt_d['out_size'], 32)
        return opt_d

    def _build_loss(self, loss_opt):
        return build_loss(loss_opt).to(self.device) if loss_opt else None

    def setup_optimizers(self):
        """Adam on the green network and on D's unfrozen blocks only: mapping, red network and
        frozen D blocks are in no optimizer (and have ``requires_grad=False``)."""
        train_opt = self.opt['train']
        for name, params, net in (('optim_g', self.bare_g.trainable_parameters(), 'g'),
                                  ('optim_d', self.bare_d.trainable_parameters(), 'd')):
            optim_opt = dict(train_opt[name])
            if 'betas' in optim_opt:  # YAML reads [0, 0.9] as an int and a float; Adam wants floats
                optim_opt['betas'] = tuple(float(b) for b in optim_opt['betas'])
            optimizer = self.get_optimizer(optim_opt.pop('type'), params, **optim_opt)
            setattr(self, f'optimizer_{net}', optimizer)
            self.optimizers.append(optimizer)

    # --- training ------------------------------------------------------------------------------
    def feed_data(self, data):
        self.real_lq = data['lq'].to(self.device)

    def optimize_parameters(self, current_iter):
        log = OrderedDict()
        codes = self.bare_g.draw_codes(self.real_lq.shape[0], device=self.device)
        clean, degraded = self.net_g(codes.z, codes.noise, codes.inject_index)

        # discriminator: real LQ faces vs degraded faces (logistic loss), lazy R1 on the real ones
        self.optimizer_d.zero_grad(set_to_none=True)
        with_r1 = self.r1_reg_weight > 0 and current_iter % self.net_d_reg_every == 0
        real = self.real_lq.detach().requires_grad_(with_r1)
        real_pred = self.net_d(real)
        fake_pred = self.net_d(degraded.detach())
        l_d = self.cri_gan(real_pred, True, is_disc=True) + self.cri_gan(fake_pred, False, is_disc=True)
        log['l_d'] = l_d.detach()
        log['real_score'] = real_pred.detach().mean()
        log['fake_score'] = fake_pred.detach().mean()
        if with_r1:
            l_d_r1 = self.r1_reg_weight / 2 * r1_penalty(real_pred, real) * self.net_d_reg_every
            log['l_d_r1'] = l_d_r1.detach()
            l_d = l_d + l_d_r1
        l_d.backward()
        self.optimizer_d.step()

        # green generator: stay close to the clean face, look like real LQ to D
        self.optimizer_g.zero_grad(set_to_none=True)
        l_g = self.cri_gan(self.net_d(degraded), True, is_disc=False)
        log['l_g_gan'] = l_g.detach()
        for name, cri in (('l_g_pix', self.cri_pix), ('l_g_vgg', self.cri_vgg)):
            if cri is not None:
                term = cri(degraded, clean)
                log[name] = term.detach()
                l_g = l_g + term
        l_g.backward()
        self.optimizer_g.step()
        self.optimizer_d.zero_grad(set_to_none=True)  # drop the D gradients the generator step left

        ema_update(self.net_g_ema.trainable_parameters(), self.bare_g.trainable_parameters(), self.ema_decay)
        self.log_dict = self.reduce_loss_dict(log)

    # --- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def test(self):
        """Clean and degraded faces of the fixed validation codes, from the EMA network."""
        self.clean, self.degraded = self.net_g_ema.generate(self.val_codes)

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

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, epoch, current_iter):
        """``net_g_<iter>.pth`` holds the whole coupled network (``params`` and ``params_ema``);
        ``dlst-generate-pairs`` reads it. BasicSR's resume reloads both, D and the optimizers."""
        self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)
