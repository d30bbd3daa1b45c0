"""``GFPGANRecipeModel``: GFP-GAN's training (its ``GFPGANModel``) as the GFP-GAN rows of Table 1 run it.

The class registered here is a light entry: importing the plugin does not import ``gfpgan``. Building it
(``model_type: GFPGANRecipeModel``) imports :mod:`dlst_plugin.models.gfpgan_recipe` and returns that
module's ``GFPGANRecipe``, a ``GFPGANModel`` subclass (docs/table1.md#gfp-gan-rows); a missing
``gfpgan`` package is an error naming the extra to install.
"""
from basicsr.models.base_model import BaseModel
from basicsr.utils.registry import MODEL_REGISTRY

from dlst_plugin.errors import ConfigError
from dlst_plugin.models.pretrained_files import missing_pretrained_files, stop_if_pretrained_files_missing
from dlst_plugin.options.basicsr_keys import GFPGAN_NETWORKS

COMPONENT_NETWORKS = tuple(key for key in GFPGAN_NETWORKS if key.startswith('network_d_'))  # eyes and mouth


@MODEL_REGISTRY.register()
class GFPGANRecipeModel(BaseModel):
    """GFP-GAN's ``GFPGANModel`` (built from the ``gfpgan`` package on first use). Its option keys are
    GFP-GAN's ``options/train_gfpgan_v1.yml``'s; see :mod:`dlst_plugin.models.gfpgan_recipe`."""

    PRETRAINED_NETWORK_KEYS = ('decoder_load_path', )  # the StyleGAN2 prior of GFPGANv1Clean
    DEFAULT_VGG = 'vgg19'  # BasicSR's PerceptualLoss's, GFP-GAN's recipe's

    def __new__(cls, opt):
        check_gfpgan_options(opt)  # the key and file checks need no gfpgan: before importing it
        stop_if_pretrained_files_missing(opt, **cls.pretrained_file_checks(opt.get('is_train', True)))
        try:
            from dlst_plugin.models.gfpgan_recipe import GFPGANRecipe
        except ImportError as err:
            raise ConfigError(f'model_type GFPGANRecipeModel trains with the gfpgan package, which cannot be imported '
                              f'({err}); install it with: pip install "dlst-plugin[baselines]"') from None
        return GFPGANRecipe(opt)

    @classmethod
    def pretrained_file_checks(cls, training):
        """The arguments of ``missing_pretrained_files`` for this model: a test run needs no prior (its checkpoint
        holds the decoder); the VGG19 weights, ArcFace's and any other ``path.pretrain_network_*`` file are checked
        as for every model."""
        return {'network_keys': cls.PRETRAINED_NETWORK_KEYS if training else (), 'default_vgg': cls.DEFAULT_VGG}

    @classmethod
    def option_problems(cls, opt):
        """The weight files ``opt`` names that are missing (the prior, VGG19, ArcFace, ...), for the option check
        of a launch: found before anything is created."""
        return missing_pretrained_files(dict(opt, is_train=True), **cls.pretrained_file_checks(True))

    @classmethod
    def option_rules(cls, opt):
        """What GFPGANModel needs beyond its key table (``dlst_plugin.options.basicsr_keys``), for the option
        check: the three component discriminators together, their boxes in the training set, no streaming."""
        problems = []
        components = [k for k in COMPONENT_NETWORKS if k in opt]
        if components and len(components) < len(COMPONENT_NETWORKS):
            missing = sorted(set(COMPONENT_NETWORKS) - set(components))
            problems.append(f'{", ".join(missing)}: missing (the component discriminators are used only when all '
                            'three are set)')
        train = opt.get('train') if isinstance(opt.get('train'), dict) else {}
        if train.get('stream_pairs'):
            problems.append('train.stream_pairs: GFPGANRecipeModel trains on the loader\'s pairs only (GFPGANModel '
                            'does not stream); use a dataset of generated pairs (dlst-generate-pairs)')
        if components and train.get('gan_component_opt') is None:
            problems.append('train.gan_component_opt: missing: the component discriminators need it')
        if components and train.get('optim_component') is None:
            problems.append('train.optim_component: missing: the component discriminators need it')
        if 'network_identity' in opt and train.get('identity_weight') is None:
            problems.append('train.identity_weight: missing: network_identity needs it')
        train_set = (opt.get('datasets') or {}).get('train')
        if components and isinstance(train_set, dict) and not train_set.get('crop_components'):
            problems.append('datasets.train.crop_components: must be true: the component discriminators need each '
                            'face\'s eye and mouth boxes (docs/table1.md#component-boxes)')
        return problems


def check_gfpgan_options(opt, name='GFPGANRecipeModel'):
    """ConfigError listing every ``network_*`` block GFPGANModel does not build and, for training, every
    ``train:`` key it does not read, the required ones that are missing (it would stop with a bare KeyError,
    or train without the term) and a training set without the component boxes its discriminators need."""
    from dlst_plugin.options import basicsr_keys as B
    from dlst_plugin.options.check_typed import table_problems
    table = B.MODELS[('gfpgan', 'GFPGANModel')]
    problems = [f'{key}: {name} builds no such network (it builds {", ".join(table.networks)})'
                for key in opt if str(key).startswith('network_') and key not in table.networks]
    if opt.get('is_train', True):
        problems += table_problems(opt.get('train') or {}, table.train, 'train') + GFPGANRecipeModel.option_rules(opt)
    if problems:
        raise ConfigError(f'{name} options:\n  ' + '\n  '.join(problems))
