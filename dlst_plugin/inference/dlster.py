"""``DLSTer``: GFP-GAN's ``GFPGANer`` interface on the plugin's face restoration, so scripts written for
GFP-GAN (Real-ESRGAN's ``inference_realesrgan.py --face_enhance`` and the many copies of it) restore with a
DL-ST checkpoint by swapping one class::

    from dlst_plugin import DLSTer
    face_enhancer = DLSTer(model_path='net_g_latest.safetensors', upscale=2, arch='clean', channel_multiplier=2,
                           bg_upsampler=upsampler)
    cropped_faces, restored_faces, restored_img = face_enhancer.enhance(img, has_aligned=False,
                                                                        only_center_face=False, paste_back=True)

Images are BGR uint8 (grey, BGRA and 16-bit inputs are converted to 8-bit BGR first, as GFPGANer does), and
so are the results. It is :class:`~dlst_plugin.inference.face_restorer.FaceRestorer` underneath (YuNet or RetinaFace,
FFHQ alignment, feathered paste-back): the same faces as ``dlst-restore`` gives, no second code path.

Arguments GFP-GAN defines and what they do here:

- ``model_path``: a ``.pth`` or ``.safetensors`` file on disk (URLs are not downloaded). The checkpoint says
  which network it holds (metadata, else tensor shapes): Skip-Transformer, GLEAN, or GFP-GAN's clean model.
- ``arch``, ``channel_multiplier``: GFPGANer builds its network from them; here the checkpoint describes its
  network, so GFP-GAN's arch names (``clean`` ...) and ``channel_multiplier`` are accepted and not needed. A
  plugin arch name (``SkipTransformer``, ``GLEANStyleGAN2``, ``GFPGANv1Clean``) must match the checkpoint.
- ``upscale``: the restored photo is ``upscale`` x the input (may be fractional); faces are pasted at that
  scale onto ``bg_upsampler.enhance(img, outscale=upscale)[0]`` (any object with that method, e.g.
  Real-ESRGAN's ``RealESRGANer``), else onto a Lanczos-resized copy.
- ``enhance(..., weight=0.5)``: GFPGANer passes ``weight`` to its network, and GFP-GAN's networks (v1, clean,
  bilinear, RestoreFormer) take it as an unused keyword, so it changes nothing there; it is accepted and
  changes nothing here either, so outputs match what the same call gives with GFP-GAN.
- Faces whose eyes are less than 5 px apart are skipped, as GFPGANer does; ``only_center_face`` keeps the
  face nearest the photo's centre. A photo without a face gives ``([], [], background)``.
"""
from pathlib import Path

import cv2
import numpy as np

from dlst_plugin.inference.face_restorer import FaceRestorer, to_bgr8
from dlst_plugin.loading.networks import RestoreSetupError

GFPGAN_ARCHS = ('clean', 'original', 'bilinear', 'RestoreFormer')  # GFPGANer's arch names
MIN_EYE_DISTANCE = 5  # px: GFPGANer's eye_dist_threshold


def check_arch(arch, network_opt, path):
    """``arch`` as GFPGANer callers pass it, against the network the checkpoint holds."""
    held = network_opt['type']
    if arch in (None, 'auto', held):
        return
    if arch in GFPGAN_ARCHS:
        if held == 'GFPGANv1Clean' and arch != 'clean':
            raise RestoreSetupError(f'arch={arch!r}: {path} holds GFP-GAN\'s clean model (arch=\'clean\'); GFP-GAN\'s '
                                    f'{arch} networks are run by gfpgan.GFPGANer')
        return
    raise RestoreSetupError(f'arch={arch!r}: {path} holds a {held}; pass arch={held!r}, or leave arch as GFP-GAN '
                            'scripts set it (the checkpoint says which network it holds)')


class DLSTer:
    """GFPGANer's constructor and ``enhance``, restoring with the plugin's :class:`FaceRestorer`.

    Beyond GFPGANer's arguments: ``detector`` (``yunet``, offline, or ``retinaface``), ``weights_dir`` (detector
    weights), ``opt`` (an option file whose ``network_g`` overrides the checkpoint's own description),
    ``dtype`` (``auto``: the device's native precision, printed once; ``float32``, ``bfloat16``, ``float16`` on
    CUDA; GFPGANer's ``half`` is ``dtype='float16'``), ``compile`` (``torch.compile`` the network: a slow first
    face, faster ones after), ``batch_size`` (faces per forward pass)."""

    def __init__(self, model_path, upscale=2, arch='clean', channel_multiplier=2, bg_upsampler=None, device=None,
                 detector='yunet', weights_dir=None, opt=None, dtype='auto', batch_size=4, compile=False):
        model_path = str(model_path)
        if model_path.startswith(('http://', 'https://')):
            raise RestoreSetupError(f'model_path {model_path}: DLSTer reads files only; download it first and pass '
                                    'its path')
        if not upscale or upscale <= 0:
            raise RestoreSetupError(f'upscale={upscale!r}: must be a positive number (1 keeps the photo size)')
        self.upscale, self.bg_upsampler, self.channel_multiplier = upscale, bg_upsampler, channel_multiplier
        # the same set-up as dlst-restore: a bare name is looked up in weights_dir / $DLST_WEIGHTS_DIR too
        self.restorer = FaceRestorer.from_files(model_path, opt=opt, device=device or 'auto', dtype=dtype,
                                                weights_dir=weights_dir, detector=detector, batch_size=batch_size,
                                                min_eye_distance=MIN_EYE_DISTANCE, compile=compile)
        check_arch(arch, self.network_opt, model_path)

    @property
    def network_opt(self):
        """The ``network_g`` block of the network the checkpoint holds."""
        return self.restorer.network_opt

    @property
    def arch(self):
        return self.network_opt['type']

    @property
    def face_size(self):
        return self.restorer.face_size

    @property
    def device(self):
        return self.restorer.device

    @property
    def gfpgan(self):
        """The restorer network (GFPGANer's attribute of that name)."""
        return self.restorer.net

    def enhance(self, img, has_aligned=False, only_center_face=False, paste_back=True, weight=0.5):
        """``(cropped_faces, restored_faces, restored_img)`` as GFPGANer returns them: the aligned input faces
        and their restorations (BGR uint8, face size square), and the restored photo (BGR uint8, ``upscale`` x
        the input; None when ``paste_back`` is False or ``has_aligned``). ``weight``: see the module notes."""
        if isinstance(img, (str, Path)):
            img = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise RestoreSetupError('enhance: the image file cannot be read')
        bgr = to_bgr8(img)[0]
        if has_aligned:  # resized to the face size as dlst-restore --aligned does
            result = self.restorer.restore_image(bgr, aligned=True)
            return result.inputs, result.faces, None
        upscale, background = (self.upscale, self.background(bgr)) if paste_back else (1, None)
        result = self.restorer.restore_image(bgr, upscale=upscale, background=background, require_face=False,
                                             select='center' if only_center_face else 'all')
        return result.inputs, result.faces, (np.ascontiguousarray(result.image) if paste_back else None)

    def background(self, bgr):
        """``bg_upsampler.enhance(bgr, outscale=upscale)[0]``, or None without a background upsampler."""
        if self.bg_upsampler is None:
            return None
        out = self.bg_upsampler.enhance(bgr, outscale=self.upscale)
        return out[0] if isinstance(out, (tuple, list)) else out
