# DL-ST's Skip-Transformer (ST) restorer trained with MMagic's SRGAN editor: a 512 px degraded
# face in, the restored 512 px face out (x1, no upsampling). Laid out like MMagic's GLEAN FFHQ
# recipe, with the GLEAN generator replaced by the plugin's SkipTransformer and the DL-ST paper's
# loss weights and optimiser settings. Data, evaluation and runtime: _base_/faces_512_srgan.py.
#   python tools/train.py options/mmagic/dlst_st_x1_ffhq_512.py   (from an MMagic checkout)
# Needs: pip install 'dlst-plugin[mmengine]' and MMagic. Lines marked "SET ME" name files a user
# must provide (here and in the base file). CI tests the parsing of this file by mmengine and the
# building of its networks; a shrunk copy trains a few iterations in MMagic itself on demand
# (scripts/check_against_mmagic.py; see docs/mmagic.md for what that covers).

_base_ = ['./_base_/faces_512_srgan.py']

experiment_name = 'dlst_st_x1_ffhq_512'
work_dir = f'./work_dirs/{experiment_name}'

# --- model: the SRGAN editor runs G and D steps; ST is the generator, StyleGAN2's D the critic
model = dict(
    generator=dict(
        type='SkipTransformer',
        out_size=512,
        num_style_feat=512,
        num_mlp=8,
        channel_multiplier=1,  # the decoder has GFP-GAN's 512 px StyleGAN2 widths; the encoder mirrors them
        narrow=1,
        encoder_narrow=1,
        num_first_blocks=4,  # residual blocks at the full 512 px encoder stage
        attention=True,  # False gives the paper's ablation without self-attention
        skip_resolutions=[8, 16, 32, 64, 128, 256],
        # SET ME: a pretrained 512 px StyleGAN2 generator (BasicSR, rosinality or GFP-GAN clean
        # layout), e.g. GFP-GAN's StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth; None = random decoder
        decoder_load_path='checkpoints/StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth',
        # colour order the prior was trained on: 'bgr' for a StyleGAN2 trained in MMagic (its pipeline loads
        # BGR images; its ToRGB outputs are then swapped on loading), 'rgb' for GFP-GAN's and official weights
        decoder_channel_order='rgb',
        fix_decoder=False),
    # the plugin's discriminator is a plain torch module (no init_cfg): it starts from random weights
    discriminator=dict(type='PureStyleGAN2Discriminator', out_size=512, channel_multiplier=1),
    # losses with the DL-ST paper's weights: 1.0 L2 + 0.02 VGG16 perceptual + 0.02 vanilla GAN
    pixel_loss=dict(type='MSELoss', loss_weight=1.0, reduction='mean'),
    perceptual_loss=dict(
        type='PerceptualLoss',
        vgg_type='vgg16',
        # torchvision vgg16.features indices of conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (the
        # paper names no layers; these are the plugin's BasicSR recipe's, taken from GFP-GAN)
        layer_weights={'2': 0.1, '7': 0.1, '14': 1.0, '21': 1.0, '28': 1.0},
        perceptual_weight=0.02,
        style_weight=0,
        norm_img=True,  # images are in [-1, 1]; VGG wants [0, 1] before its ImageNet normalisation
        criterion='mse',
        pretrained='torchvision://vgg16'),
    gan_loss=dict(type='GANLoss', gan_type='vanilla', loss_weight=0.02, real_label_val=1.0, fake_label_val=0),
)

# --- data: the base file's face pairs, with fewer loader workers
train_dataloader = dict(num_workers=6)
val_dataloader = dict(num_workers=4)
test_dataloader = dict(num_workers=4)

# --- schedule: the paper's 220k iterations, cosine annealing restarted every 55k
train_cfg = dict(type='IterBasedTrainLoop', max_iters=220_000, val_interval=5000)
optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    generator=dict(
        type='OptimWrapper',
        optimizer=dict(type='Adam', lr=5e-5, betas=(0.5, 0.99)),
        # the pretrained decoder learns 10x slower (5e-6), as in the paper
        paramwise_cfg=dict(custom_keys={'decoder': dict(lr_mult=0.1)})),
    discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=5e-5, betas=(0.5, 0.99))),
)
param_scheduler = dict(
    type='CosineRestartLR',
    by_epoch=False,
    periods=[55_000, 55_000, 55_000, 55_000],
    restart_weights=[1, 1, 1, 1],
    eta_min=1e-7)
