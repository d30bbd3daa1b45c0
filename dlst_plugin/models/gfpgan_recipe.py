"""GFP-GAN's own training, its ``GFPGANModel``, with the four things the plugin adds around it
(docs/table1.md#gfp-gan-rows). Imported by ``GFPGANRecipeModel`` on first use: it imports ``gfpgan``.

Everything ``GFPGANModel`` does is kept: the pyramid restoration loss (dropped after
``remove_pyramid_loss``), L1 + perceptual + style, ``wgan_softplus`` with lazy R1, the three
facial-component discriminators and their style loss, the ArcFace identity loss, its optimizers,
EMA and saves. Added:

1. ``network_g.decoder_load_path`` of ``GFPGANv1Clean`` is read by the plugin (``weights_only=True``,
   any StyleGAN2 layout the plugin reads, e.g. GFP-GAN's ``StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth``,
   which GFP-GAN's own clean constructor cannot load), into the network and its EMA copy, as GFP-GAN's
   constructor does; a run that loads ``path.pretrain_network_g`` (fine-tuning, resume) keeps that file's.
2. Below 512 px, GFP-GAN sizes its eye and mouth crops ``int(out_size / 512)`` x 80 / 120 px, which is
   0; there the crops are scaled with the face (``round(80 * out_size / 512)`` px, at least 1). At 512 px
   and above ``GFPGANModel``'s own code runs.
3. The ``train:`` keys and ``network_*`` blocks are checked against what ``GFPGANModel`` reads (a
   misspelt key would otherwise train without its loss), missing weight files stop the run at start-up
   (``GFPGANRecipeModel``, before ``gfpgan`` is imported, and the option check of a launch),
   and checkpoints carry the plugin's network metadata, so ``dlst-restore`` rebuilds them without the
   option file.
4. ``GFPGANModel`` gives the generator's Adam ``betas=(0, 0.99)`` (an int and a float), which the PyTorch
   this plugin runs on refuses ("betas must be either both floats or both Tensors"): betas are passed as
   floats.
"""
import torch
from gfpgan.models.gfpgan_model import GFPGANModel
from torchvision.ops import roi_align

from dlst_plugin.archs.external import CLEAN_DECODER_ARCHS
from dlst_plugin.loading.priors import load_clean_decoder

REFERENCE_SIZE = 512  # the face size GFP-GAN's crop sizes are given for


def _crops(img, boxes, size):
    """``roi_align`` crops of ``img`` (n, c, h, w) inside ``boxes`` (n, 4: x1, y1, x2, y2), ``size`` px."""
    index = torch.arange(boxes.size(0), dtype=boxes.dtype, device=boxes.device).view(-1, 1)
    rois = torch.cat([index, boxes], 1).to(device=img.device, dtype=img.dtype)
    return roi_align(img, boxes=rois, output_size=size)


class GFPGANRecipe(GFPGANModel):
    """``GFPGANModel`` plus the four additions of the module docstring."""

    def __init__(self, opt):
        net_opt = dict(opt['network_g'])
        self.decoder_path = None
        if net_opt.get('type') in CLEAN_DECODER_ARCHS:
            self.decoder_path = net_opt.pop('decoder_load_path', None)
        super().__init__({**opt, 'network_g': net_opt})

    def init_training_settings(self):
        load = self.decoder_path and not self.opt['path'].get('pretrain_network_g')
        if load:
            load_clean_decoder(self.get_bare_model(self.net_g), self.decoder_path)
        super().init_training_settings()
        if load:  # the EMA copy takes parameters only: its decoder's noise buffers come from the prior too
            load_clean_decoder(self.net_g_ema, self.decoder_path)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        if 'betas' in kwargs:
            kwargs['betas'] = tuple(float(b) for b in kwargs['betas'])
        return super().get_optimizer(optim_type, params, lr, **kwargs)

    def get_roi_regions(self, eye_out_size=80, mouth_out_size=120):
        out_size = self.opt['network_g']['out_size']
        if out_size >= REFERENCE_SIZE:
            return super().get_roi_regions(eye_out_size, mouth_out_size)
        eye = max(1, round(eye_out_size * out_size / REFERENCE_SIZE))
        mouth = max(1, round(mouth_out_size * out_size / REFERENCE_SIZE))
        self.left_eyes_gt = _crops(self.gt, self.loc_left_eyes, eye)
        self.right_eyes_gt = _crops(self.gt, self.loc_right_eyes, eye)
        self.mouths_gt = _crops(self.gt, self.loc_mouths, mouth)
        self.left_eyes = _crops(self.output, self.loc_left_eyes, eye)
        self.right_eyes = _crops(self.output, self.loc_right_eyes, eye)
        self.mouths = _crops(self.output, self.loc_mouths, mouth)

    def network_meta(self, net_label):
        from dlst_plugin.checkpoints.meta import network_metadata
        net_opt = self.opt.get(f'network_{net_label[len("net_"):]}')
        return network_metadata(net_opt) if net_opt and 'type' in net_opt else None
