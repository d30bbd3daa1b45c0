"""``SkipTransformerModel``: the name users of the Skip-Transformer know, kept for their option files.

It is the general :class:`~dlst_plugin.models.face_restoration_model.FaceRestorationModel` (which
trains any restorer arch); with ``network_g.type: SkipTransformer`` it trains the paper's restorer
(3.3.4-3.3.5): loss ``1.0 L2 + 0.02 VGG16 perceptual + 0.02 vanilla GAN``, a StyleGAN2 discriminator,
Adam with the encoder, skip-layer and decoder parameter groups (``optim_g.decoder_lr`` defaults to a
tenth of ``lr``, ``optim_g.skip_lr`` to ``lr``), EMA of the generator.
"""
from basicsr.utils.registry import MODEL_REGISTRY

from dlst_plugin.models.face_restoration_model import FaceRestorationModel


@MODEL_REGISTRY.register()
class SkipTransformerModel(FaceRestorationModel):
    """Same as ``FaceRestorationModel``; see its options."""
