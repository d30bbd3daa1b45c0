"""One adversarial training core for every GAN model of the plugin (restorers and the degrader).

A model built on :class:`AdversarialModel` says only what is particular to it:

* ``build_generator()`` - the network that trains (default: ``network_g`` from the registry);
* ``generate()`` - runs it on the current batch and returns the fake images (and keeps whatever
  the loss terms compare them with);
* ``loss_target()`` - what the pixel and perceptual terms compare the fake images with;
* ``real_images()`` - what the discriminator learns as real;
* ``extra_generator_terms(fake)`` / ``extra_discriminator_terms(real, real_pred, it)`` - terms of its
  own (R1 for the degrader), as ``{name: loss}``.

The core owns everything else, the same way for every model: the losses (``train.pixel_opt``,
``perceptual_opt``, ``gan_opt``), the discriminator (built, loaded from any checkpoint layout the
plugin reads, FreezeD blocks in no optimizer), optimizers (betas as floats, a learning rate per
parameter group), EMA, the step order, log keys, saving and resuming. The step, each iteration:

1. **G step** - the generator runs once; its loss is the weighted sum of the pixel, perceptual and
   adversarial terms (plus the model's own). D's trainable parameters have ``requires_grad`` off and
   the *bare* D (not its DDP wrapper) is called, so no gradient is computed or all-reduced for D.
2. **D step** - D sees the real images and the same fake images, detached; one backward for the real
   and fake terms (and the model's own, e.g. lazy R1), so DDP all-reduces D's gradients once.
3. **EMA** of the generator's trainable parameters.

Log keys: ``l_g_<term>`` (``pix``, ``percep``, ``gan`` and the model's own), ``l_d_real``,
``l_d_fake``, ``l_d_<term>``, ``out_d_real`` / ``out_d_fake`` (mean D outputs).
"""
import copy
from collections import OrderedDict

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger

from dlst_plugin.models import core_parts, network_setup
from dlst_plugin.models.core_parts import GAN_TERM, LOSS_TERMS, TrainingOptionError
from dlst_plugin.models.step_control import StepControl, TrainingDivergedError
from dlst_plugin.options.blocks import TrainOptions


class AdversarialModel(BaseModel):
    """Base of the plugin's GAN models (see the module docstring for what a subclass provides)."""

    TRAIN_OPTIONS = TrainOptions  # the typed ``train:`` block this model reads (dlst_plugin.options.blocks)
    REQUIRE_GAN = False  # True: a model whose whole point is the adversarial term
    NETWORK_G_PARAM_KEY = 'params'
    PRETRAINED_NETWORK_KEYS = ()  # network_g keys naming weight files that must exist
    DEFAULT_VGG = 'vgg16'  # the perceptual loss's network when the option does not say

    @classmethod
    def option_problems(cls, opt):
        """Problems of the files ``opt`` names (weights that must exist), found by the option check of a launch
        before anything is created or renamed (and again here, for models built in Python)."""
        from dlst_plugin.models.pretrained_files import missing_pretrained_files
        return missing_pretrained_files(dict(opt, is_train=True), cls.PRETRAINED_NETWORK_KEYS, cls.DEFAULT_VGG)

    def __init__(self, opt):
        from dlst_plugin.models.pretrained_files import stop_if_pretrained_files_missing
        stop_if_pretrained_files_missing(opt, network_keys=self.PRETRAINED_NETWORK_KEYS, default_vgg=self.DEFAULT_VGG)
        super().__init__(opt)
        self.net_d = None
        self.train_options = self.decode_train_options() if self.is_train else None
        net_g = self.build_generator().to(self.device)
        self.channels_last = False
        if self.is_train:
            self.prepare_generator_for_training(net_g)
            self.channels_last = network_setup.resolve_channels_last(self.train_options, self.device,
                                                                     self.trained_networks(net_g))
            net_g = network_setup.place(net_g, self.train_options, 'network_g', self.generator_input_size(net_g),
                                        self.example_forward('g') if self.opt['dist'] else None, self.channels_last)
        self.net_g = self.model_to_device(net_g)
        self.print_network(self.net_g)
        self.load_generator()
        if self.is_train:
            self.init_training_settings()

    # --- what a model says (override) ----------------------------------------------------------
    def build_generator(self):
        return build_network(self.opt['network_g'])

    def prepare_generator_for_training(self, net_g):
        """Hook run on the bare generator before DDP wraps it (e.g. freeze what no loss reaches)."""

    def generator_input_size(self, net_g):
        """Side of the generator's input images (for start-up checks), or None when it takes none."""
        return None

    def example_forward(self, which):
        """A function running network ``which`` ('g' or 'd') on a tiny batch (the DDP layout probe)."""
        def forward(net):
            size = self.generator_input_size(net) if which == 'g' else getattr(net, 'out_size', None)
            return net(self.to_memory_format(torch.zeros(1, 3, size, size, device=self.device)))
        return forward

    def generate(self):
        raise NotImplementedError

    def loss_target(self):
        raise NotImplementedError

    def real_images(self):
        raise NotImplementedError

    def extra_generator_terms(self, fake):
        return {}

    def extra_discriminator_terms(self, real, real_pred, current_iter):
        return {}

    def discriminator_options(self):
        """``network_d`` as the discriminator is built (a model may add defaults, e.g. FreezeD depth)."""
        return dict(self.opt['network_d'])

    # --- set-up ---------------------------------------------------------------------------------
    def trained_networks(self, net_g):
        """``(option key, build)`` of each network the run trains, ``build()`` giving ``(network, input side)``,
        for ``network_setup.resolve_channels_last``: the generator as built, and the discriminator (when the
        adversarial term needs one) as a throw-away copy built on the CPU, the only device that asks, with the
        random state restored after (the meta device cannot probe: its convolutions return contiguous outputs
        whatever their input's layout, so a ``.view`` of them passes there)."""
        def probe_discriminator():
            with torch.random.fork_rng(devices=[]):
                net_d = build_network(self.discriminator_options())
            return net_d, getattr(net_d, 'out_size', None)
        networks = [('network_g', lambda: (net_g, self.generator_input_size(net_g)))]
        if self.train_options.gan_opt and self.opt.get('network_d'):
            networks.append(('network_d', probe_discriminator))
        return networks

    def decode_train_options(self):
        """``train:`` as this model's typed block (defaults filled in); the deprecated loss names renamed first.
        Raises OptionsError (exit code 2) listing every problem: the option check found them already when
        the run came through a launcher."""
        train_opt = core_parts.normalise_loss_options(self.opt['train'], self.logger.warning)
        allowed = [k for k in self.opt.get('allow_unknown') or () if isinstance(k, str)]
        return self.TRAIN_OPTIONS.decode(train_opt, 'train', allowed=allowed)

    def to_memory_format(self, x):
        """An input batch in the training's memory format (``network_setup.resolve_channels_last``)."""
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def get_bare_model(self, net):
        return network_setup.unwrap(net)

    @property
    def bare_g(self):
        return self.get_bare_model(self.net_g)

    @property
    def bare_d(self):
        return None if self.net_d is None else self.get_bare_model(self.net_d)

    @property
    def logger(self):
        return get_root_logger()

    def load_generator(self):
        """``path.pretrain_network_g`` (a checkpoint this model saved: fine-tuning and resume)."""
        path_opt = self.opt['path']
        load_path = path_opt.get('pretrain_network_g')
        if load_path:
            self.load_network(self.net_g, load_path, path_opt.get('strict_load_g', True),
                              path_opt.get('param_key_g', self.NETWORK_G_PARAM_KEY))

    def init_training_settings(self):
        train = self.train_options
        self.net_g.train()
        self.ema_decay = train.ema_decay
        self.setup_ema()
        self.losses = {suffix: build_loss(getattr(train, key)).to(self.device)
                       for key, suffix in LOSS_TERMS.items() if getattr(train, key)}
        self.cri_gan = build_loss(train.gan_opt).to(self.device) if train.gan_opt else None
        if self.cri_gan is None and self.REQUIRE_GAN:
            raise TrainingOptionError(f'train.{GAN_TERM} is required by {type(self).__name__}: the adversarial '
                                      'term is what it learns from')
        if not (self.losses or self.cri_gan):
            raise TrainingOptionError(f'train: set at least one of {", ".join(LOSS_TERMS)}, {GAN_TERM}')
        if self.cri_gan is not None:
            self.setup_discriminator()
        self.setup_optimizers()
        if train.scheduler:
            self.setup_schedulers()
        self.step_control = StepControl(train, self.device)
        self.g_params = [p for group in self.optimizer_g.param_groups for p in group['params']]
        self.d_params = [p for group in self.optimizer_d.param_groups for p in group['params']] \
            if self.net_d is not None else []
        self.saved_iters = []  # iterations whose checkpoints this run wrote (named when the run diverges)
        self.log_effective_batch()

    def log_effective_batch(self):
        batch = ((self.opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
        control = self.step_control
        if batch:
            world = self.opt.get('world_size', 1)
            self.logger.info(f'Effective batch {batch * world * control.accum} (batch_size_per_gpu {batch} x '
                             f'{world} processes x accum_iter {control.accum}); mixed precision: '
                             f'{str(control.dtype).replace("torch.", "") if control.use_amp else "off"}.')

    def setup_ema(self):
        """``net_g_ema``: a frozen copy of the generator, loaded from ``params_ema`` when fine-tuning."""
        if self.ema_decay <= 0:
            return
        self.net_g_ema = copy.deepcopy(self.bare_g).eval()
        for p in self.net_g_ema.parameters():
            p.requires_grad_(False)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        self.ema = core_parts.EMA(self.net_g_ema, self.bare_g)

    def setup_discriminator(self):
        if not self.opt.get('network_d'):
            raise TrainingOptionError(f'train.{GAN_TERM} needs a network_d (e.g. PureStyleGAN2Discriminator)')
        net_d = build_network(self.discriminator_options()).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_d')
        if load_path:
            self.load_discriminator(net_d, load_path)
        # the G step calls D without its DDP wrapper (no gradient for D there), compiled when asked
        self.d_for_g = network_setup.place(net_d, self.train_options, 'network_d', getattr(net_d, 'out_size', None),
                                           self.example_forward('d') if self.opt['dist'] else None,
                                           self.channels_last)
        self.net_d = self.model_to_device(self.d_for_g)
        self.print_network(self.net_d)
        self.net_d.train()

    def load_discriminator(self, net_d, path):
        """A StyleGAN2 discriminator checkpoint of any layout the plugin reads, or a saved ``net_d``;
        ``path.channel_order_d: bgr`` reads a discriminator trained on BGR images (its from-RGB input swapped)."""
        from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
        strict = self.opt['path'].get('strict_load_d', True)
        if isinstance(net_d, PureStyleGAN2Discriminator):
            from dlst_plugin.loading.priors import load_into
            layout = load_into(net_d, path, kind='discriminator', strict=strict,
                               channel_order=self.opt['path'].get('channel_order_d'), option='path.channel_order_d')
            self.logger.info(f'Loaded the discriminator from {path} ({layout} layout).')
        else:
            self.load_network(net_d, path, strict, self.opt['path'].get('param_key_d', 'params'))

    def setup_optimizers(self):
        train = self.train_options
        bare = self.bare_g
        optim_type, groups, kwargs = core_parts.parse_optimizer(
            train.optim_g, core_parts.parameter_groups(bare), getattr(bare, 'LR_FACTORS', None), 'train.optim_g')
        self.optimizer_g = self.get_optimizer(optim_type, groups, groups[0]['lr'], **kwargs)
        self.optimizers.append(self.optimizer_g)
        if self.net_d is not None:
            optim_type, groups, kwargs = core_parts.parse_optimizer(
                train.optim_d, {'all': core_parts.trainable(self.bare_d)}, None, 'train.optim_d')
            ratio = self.discriminator_step_ratio()
            if ratio != 1:
                kwargs = core_parts.lazy_regularisation_correction(groups, kwargs, ratio, optim_type)
                self.logger.info(f'Lazy regularisation: D\'s learning rate and betas corrected by {ratio:.4f} '
                                 f'(StyleGAN2): lr {groups[0]["lr"]:.4g}, betas {kwargs.get("betas")}.')
            self.optimizer_d = self.get_optimizer(optim_type, groups, groups[0]['lr'], **kwargs)
            self.optimizers.append(self.optimizer_d)

    def discriminator_step_ratio(self):
        """k / (k + 1) when D's extra terms run lazily every k iterations (StyleGAN2 then scales D's Adam
        learning rate and betas by it), else 1."""
        return 1

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        optimizers = {'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW, 'SGD': torch.optim.SGD}
        if optim_type not in optimizers:
            raise TrainingOptionError(f'optimizer type {optim_type!r} is not supported; use one of '
                                      f'{", ".join(optimizers)}')
        return optimizers[optim_type](params, lr, **kwargs)

    # --- the step -------------------------------------------------------------------------------
    def optimize_parameters(self, current_iter):
        log = OrderedDict()
        control = self.step_control
        last = control.is_last(current_iter)
        with control.no_sync(self.net_g, last):
            with control.autocast():
                fake = self.generate()
                terms = self.generator_losses(fake)
            control.backward('g', sum(terms.values()))
        log.update((k, v.detach().float()) for k, v in terms.items())
        stepped = control.step('g', self.optimizer_g, self.g_params) if last else False
        if self.net_d is not None:
            self.discriminator_step(fake.detach(), current_iter, log, last)
        if last:
            self.end_window(current_iter)
        if stepped and self.ema_decay > 0:
            self.ema.update(self.ema_decay)
        log['nonfinite_steps'] = torch.tensor(float(sum(control.skipped.values())), device=self.device)
        self._step_log, self._read_log = log, None

    def end_window(self, current_iter):
        """Close the accumulation window; when the non-finite guard stops the run, name the last checkpoint
        written before its first skipped step (checkpoints are never written during a run of skipped steps)."""
        try:
            self.step_control.end_window(current_iter)
        except TrainingDivergedError as err:
            good = [it for it in self.saved_iters if err.first_bad_iter is None or it < err.first_bad_iter]
            where = self.opt['path'].get('models', 'models')
            last = (f'The last checkpoint saved before it is iteration {good[-1]} ({where}/net_g_{good[-1]}.pth): '
                    '--auto_resume continues from it.' if good else 'No checkpoint was saved before it.')
            raise TrainingDivergedError(f'{err} {last}', err.first_bad_iter) from None

    @property
    def log_dict(self):
        """The last step's log as numbers, averaged over the processes under DDP. Reduced when read (BasicSR
        reads it every ``logger.print_freq`` iterations, on every rank), in one stack and one transfer, so
        a training step spends no device sync on its log."""
        if self._read_log is None:
            keys = list(self._step_log)
            values = torch.stack([self._step_log[k].float().mean() for k in keys]) if keys else torch.zeros(0)
            if self.opt['dist'] and keys:
                torch.distributed.all_reduce(values)
                values /= self.opt['world_size']
            self._read_log = OrderedDict(zip(keys, values.tolist()))
            if self.device.type == 'cuda':  # this process's high-water mark, in the log line
                self._read_log['peak_mem_gb'] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return self._read_log

    def generator_losses(self, fake):
        """{log key: loss} of the generator step (adversarial term through the bare, frozen D)."""
        terms = OrderedDict()
        if self.losses:
            target = self.loss_target()
            for suffix, criterion in self.losses.items():
                terms[f'l_g_{suffix}'] = criterion(fake, target).float()
        if self.cri_gan is not None:
            with core_parts.frozen(self.d_params):  # what the D optimizer trains: no gradient for it here
                terms['l_g_gan'] = self.cri_gan(self.d_for_g(fake), True, is_disc=False).float()
        terms.update((f'l_g_{name}', value.float()) for name, value in self.extra_generator_terms(fake).items())
        return terms

    def discriminator_step(self, fake, current_iter, log, last=True):
        control = self.step_control
        real = self.real_images().detach()
        with_extra = self.discriminator_extra_due(current_iter)
        real.requires_grad_(with_extra)
        with control.no_sync(self.net_d, last):
            with control.autocast():
                real_pred = self.net_d(real)
                fake_pred = self.net_d(fake)
                terms = OrderedDict(l_d_real=self.cri_gan(real_pred, True, is_disc=True).float(),
                                    l_d_fake=self.cri_gan(fake_pred, False, is_disc=True).float())
            if with_extra:
                extra = self.extra_discriminator_terms(real, real_pred, current_iter)
                terms.update((f'l_d_{name}', value.float()) for name, value in extra.items())
            control.backward('d', sum(terms.values()))
        if last:
            control.step('d', self.optimizer_d, self.d_params)
        log.update((k, v.detach()) for k, v in terms.items())
        log['out_d_real'] = real_pred.detach().float().mean()
        log['out_d_fake'] = fake_pred.detach().float().mean()

    def input_gradient(self, outputs, inputs):
        """d sum(D outputs) / d inputs with a graph, for gradient penalties (unscaled under float16)."""
        return self.step_control.input_gradient('d', outputs, inputs)

    def discriminator_extra_due(self, current_iter):
        """Whether ``extra_discriminator_terms`` runs this iteration (they need real images with grad)."""
        return False

    # --- checkpoints ----------------------------------------------------------------------------
    def network_meta(self, net_label):
        """The ``meta`` entry saved with ``net_label``'s files (BasicSR's patched ``save_network`` asks): the
        arch and its options, so the file alone rebuilds the network (``dlst_plugin.checkpoints.meta``)."""
        from dlst_plugin.checkpoints.meta import network_metadata
        net_opt = self.opt.get(f'network_{net_label[len("net_"):]}')
        return network_metadata(net_opt) if net_opt and 'type' in net_opt else None

    def save(self, epoch, current_iter):
        """``net_g_<iter>.pth`` (``params`` and, with EMA, ``params_ema``), ``net_d_<iter>.pth`` and the
        training state (optimizers, schedulers); BasicSR's resume reloads all of them. A periodic save that
        falls in a run of skipped (non-finite) steps is not written: the latest checkpoint stays the last
        healthy one, which ``--auto_resume`` then takes. Returns whether the checkpoint was written."""
        control = getattr(self, 'step_control', None)
        if current_iter != -1 and control is not None and control.in_bad_run:
            self.logger.warning(f'Checkpoint of iteration {current_iter} not written: the last {control.in_a_row} '
                                f'steps were skipped (non-finite losses or gradients since iteration '
                                f'{control.first_bad_iter}).')
            return False
        self.write_checkpoints(epoch, current_iter)
        if current_iter != -1 and hasattr(self, 'saved_iters'):
            self.saved_iters.append(current_iter)
        return True

    def write_checkpoints(self, epoch, current_iter):
        if getattr(self, 'net_g_ema', None) is not None:
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        if self.net_d is not None:
            self.save_network(self.net_d, 'net_d', current_iter)
        self.save_training_state(epoch, current_iter)
