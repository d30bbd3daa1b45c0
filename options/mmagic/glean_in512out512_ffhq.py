# GLEAN as a 512 px blind face restorer (512 px degraded face in, 512 px face out), the GLEAN
# baseline DL-ST is compared with, using the plugin's GLEANStyleGAN2 (MMagic's GLEANStyleGANv2 on the
# plugin's StyleGAN2, with in_size == out_size allowed) in MMagic's SRGAN editor.
# Losses, optimiser and schedule follow MMagic's GLEAN FFHQ recipe; only the sizes and the data
# differ (no 16x downsampled input). Data, evaluation and runtime: _base_/faces_512_srgan.py.
#   python tools/train.py options/mmagic/glean_in512out512_ffhq.py   (from an MMagic checkout)
# Needs: pip install 'dlst-plugin[mmengine]' and MMagic. Lines marked "SET ME" name files a user
# must provide (here and in the base file). CI tests the parsing of this file by mmengine and the
# building of its networks; a shrunk copy trains a few iterations in MMagic itself on demand
# (scripts/check_against_mmagic.py; see docs/mmagic.md for what that covers).

_base_ = ['./_base_/faces_512_srgan.py']

experiment_name = 'glean_in512out512_ffhq'
work_dir = f'./work_dirs/{experiment_name}'

# --- model: GLEAN (encoder + frozen StyleGAN2 latent bank + decoder) as the SRGAN generator
model = dict(
    generator=dict(
        type='GLEANStyleGAN2',  # MMagic's GLEANStyleGANv2 on the plugin's StyleGAN2 (docs/mmagic.md#glean)
        in_size=512,  # = out_size: restoration, the plugin's extension (MMagic's GLEAN needs in_size < out_size)
        out_size=512,
        num_style_feat=512,
        num_mlp=8,
        channel_multiplier=2,  # StyleGAN2 config-f widths, the bank GLEAN uses
        narrow=1,
        rrdb_channels=64,  # MMagic's RRDB trunk: 23 RRDBs of 64 channels at the input size
        num_rrdbs=23,
        # SET ME: a 512 px StyleGAN2 FFHQ generator (channel_multiplier 2), any layout the plugin reads.
        # MMagic publishes FFHQ StyleGAN2 weights at 256 and 1024 px only, so this is one trained at 512 px.
        # None leaves the bank random.
        bank_load_path='checkpoints/stylegan2_c2_ffhq_512_mmagic.pth',
        bank_layout='auto',  # let the plugin's checkpoint reader detect the layout
        # colour order the prior was trained on: MMagic's StyleGAN2 pipeline trains on BGR images, so a prior
        # trained in MMagic is 'bgr'. GLEAN never runs the bank's ToRGB layers, so its output does not depend
        # on it; setting it keeps the loaded bank an RGB generator (and silences the loader's warning)
        bank_channel_order='rgb',
        fix_bank=True),  # GLEAN keeps the latent bank frozen
    # the plugin's discriminator is a plain torch module (no init_cfg): unlike MMagic's GLEAN recipe
    # it is not initialised from the StyleGAN2 checkpoint and starts from random weights
    discriminator=dict(type='PureStyleGAN2Discriminator', out_size=512, channel_multiplier=2),
    # losses of MMagic's GLEAN recipe: L2 1.0, VGG16 conv4_3 perceptual 0.01, vanilla GAN 0.01
    pixel_loss=dict(type='MSELoss', loss_weight=1.0, reduction='mean'),
    perceptual_loss=dict(
        type='PerceptualLoss',
        layer_weights={'21': 1.0},
        vgg_type='vgg16',
        perceptual_weight=1e-2,
        style_weight=0,
        norm_img=False,  # as in the GLEAN recipe (images reach VGG in [-1, 1])
        criterion='mse',
        pretrained='torchvision://vgg16'),
    gan_loss=dict(type='GANLoss', gan_type='vanilla', loss_weight=1e-2, real_label_val=1.0, fake_label_val=0),
)
# --- schedule and optimisers of MMagic's GLEAN recipe
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300_000, val_interval=5000)
optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    generator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))),
    discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))),
)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, T_max=600_000, eta_min=1e-7)
