"""The blocks of options the plugin owns, each declared once: type, default, range, one line of help.

The models read their options through these declarations (``TrainOptions.decode(opt['train'], 'train')``),
the option check reports against them, and ``docs/options.md`` is generated from them
(``python -m dlst_plugin.options.reference``). Adding a train option to a plugin model is one field here.

* :class:`StepOptions` - how a loss becomes an optimizer step (mixed precision, accumulation, clipping,
  the non-finite guard, compilation, memory format);
* :class:`TrainOptions` - what the adversarial core reads under ``train:`` (losses, optimizers, EMA);
  :class:`RestorerTrain` and :class:`DegraderTrain` add each model's own keys and defaults;
* :class:`StreamPairs` - ``train.stream_pairs`` (pairs drawn from a trained degrader every iteration);
* :class:`DegraderVal` - the degrader's extra ``val:`` keys.

The datasets declare their blocks beside them (``OPTIONS`` of each dataset class); the degradation recipe is
``dlst_plugin.data.degradations.FaceDegradation``; network blocks are checked against the constructors.
"""
import dataclasses
from typing import Literal, Optional

from dlst_plugin.options import basicsr_keys
from dlst_plugin.options.schema import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Block, Range, option

block = dataclasses.dataclass(frozen=True, kw_only=True)

# keys of a dataset block that BasicSR reads itself (it adds phase and scale): a plugin dataset passes them
DATASET_PASSED_THROUGH = tuple(basicsr_keys.DATASET) + ('phase', 'scale') + tuple(basicsr_keys.TRAIN_LOADER)
RGB_HALF = (0.5, 0.5, 0.5)
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')
EMA_RANGE = Range(0, 1, hi_open=True, note='(0 = no EMA)')


@block
class StreamPairs(Block):
    """``train.stream_pairs``: unlimited (degraded, clean) pairs drawn on the training device every iteration."""
    degrader: str = option(doc='a DegradationLearningModel checkpoint (its EMA green network is used)')
    ratio: float = option(0.5, Range(0, 1, lo_open=True, hi_open=True),
                          'share of streamed pairs in each batch (second_order; method1 streams whole batches)')
    queue_size: int = option(0, NON_NEGATIVE, 'a shuffled pool of this many pairs (Real-ESRGAN\'s); 0: off')
    mode: Literal['second_order', 'method1'] = option(
        'second_order', doc='second_order: the paper\'s set; method1: Table 3\'s ablation (no FFHQ)')
    seed: Optional[int] = option(None, doc='seed of the drawn pairs; ~: the run\'s manual_seed')
    degradation: dict = option(factory=dict, doc='GFP-GAN degradation keys (as DegradedFaceDataset\'s); {}: its '
                                                  'recipe')
    network: Optional[dict] = option(None, doc='the degrader\'s network_g options; ~: the checkpoint\'s meta, '
                                               'else its shapes')


@block
class StepOptions(Block):
    """How the core turns a loss into an optimizer step (also under ``train:``)."""
    use_amp: bool = option(False, doc='mixed precision: forward passes and losses under torch.autocast')
    amp_dtype: Literal['bfloat16', 'float16'] = option('bfloat16', doc='autocast dtype (float16 adds a GradScaler)')
    accum_iter: int = option(1, AT_LEAST_ONE, 'sum the gradients of this many iterations per optimizer step')
    grad_clip: Optional[float] = option(None, POSITIVE, 'clip each network\'s gradient norm to this; ~: off')
    max_nonfinite_steps: int = option(20, AT_LEAST_ONE, 'stop after this many skipped (non-finite) steps in a row')
    max_loss: Optional[float] = option(None, POSITIVE, 'a finite loss above this counts as a non-finite step; ~: off')
    channels_last: Optional[bool] = option(None, doc='every network and batch in channels-last memory; ~: where '
                                                     'faster (bfloat16 AMP on a CPU with native bf16)')
    compile: bool = option(False, doc='torch.compile each network (the first step pays the compilation)')
    compile_mode: Optional[Literal[COMPILE_MODES]] = option(None, doc='torch.compile mode; ~: default')
    compile_backend: str = option('inductor', doc='torch.compile backend')


@block
class TrainOptions(StepOptions):
    """``train:`` of a model on the adversarial core (losses and optimizers are built by BasicSR's registries
    and checked against their constructors)."""
    total_iter: int = option(doc='iterations to train', rule=POSITIVE)
    warmup_iter: int = option(-1, Range(-1), 'linear learning-rate warm-up iterations; -1: none')
    optim_g: dict = option(doc='generator optimizer: type, lr, betas, <group>_lr per parameter group')
    optim_d: Optional[dict] = option(None, doc='discriminator optimizer (needed with gan_opt)')
    scheduler: Optional[dict] = option(None, doc='BasicSR scheduler block; ~: constant learning rate')
    pixel_opt: Optional[dict] = option(None, doc='pixel loss (any BasicSR loss type)')
    perceptual_opt: Optional[dict] = option(None, doc='perceptual loss (any BasicSR loss type)')
    vgg_opt: Optional[dict] = option(None, doc='former name of perceptual_opt (read as it, with a warning)')
    gan_opt: Optional[dict] = option(None, doc='adversarial loss (BasicSR GANLoss); trains network_d')
    ema_decay: float = option(0.999, EMA_RANGE, 'EMA of the generator; 0: none')


@block
class RestorerTrain(TrainOptions):
    """``train:`` of ``FaceRestorationModel`` / ``SkipTransformerModel``."""
    ema_decay: float = option(0.0, EMA_RANGE, 'EMA of the generator; 0: none')
    stream_pairs: Optional[StreamPairs] = option(None, doc='pairs drawn from a trained degrader; ~: off')


@block
class DegraderTrain(TrainOptions):
    """``train:`` of ``DegradationLearningModel``."""
    r1_reg_weight: float = option(10.0, NON_NEGATIVE, 'R1 penalty weight on real LQ faces; 0: off')
    net_d_reg_every: int = option(16, AT_LEAST_ONE, 'lazy R1: every this many iterations (D\'s Adam is '
                                                   'corrected by k/(k+1), as StyleGAN2)')


@block
class DegraderVal(Block):
    """The degrader's own ``val:`` keys (besides BasicSR's val_freq, save_img, ...)."""
    num_samples: int = option(8, AT_LEAST_ONE, 'codes in the validation grid (the same at every validation)')
    pairs_per_row: int = option(4, AT_LEAST_ONE, 'clean | degraded pairs per row of the grid')
