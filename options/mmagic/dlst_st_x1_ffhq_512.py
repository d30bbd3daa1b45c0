# DL-ST's Skip-Transformer (ST) restorer trained with MMagic's SRGAN editor: a 512 px degraded
# face in, the restored 512 px face out (x1, no upsampling). Laid out like MMagic's GLEAN FFHQ
# recipe, with the GLEAN generator replaced by the plugin's SkipTransformer and the DL-ST paper's
# loss weights and optimiser settings. Self-contained: no _base_ file is read.
#   python tools/train.py options/mmagic/dlst_st_x1_ffhq_512.py   (from an MMagic checkout)
# Needs: pip install 'dlst-plugin[mmengine]' and MMagic. Lines marked "SET ME" name files a user
# must provide. Only the parsing of this file by mmengine and the building of its networks are
# tested in the plugin; MMagic itself is not (see docs/mmagic.md).

# --- plugin: importing this module registers SkipTransformer, GLEANStyleGAN2 and the StyleGAN2
# generator/discriminator in mmengine's root MODELS registry, which MMagic's registry falls back to
custom_imports = dict(imports=['dlst_plugin.integrations.mmengine'], allow_failed_imports=False)

# --- run: names resolve in MMagic's registries first, then mmengine's
default_scope = 'mmagic'
experiment_name = 'dlst_st_x1_ffhq_512'
save_dir = './work_dirs'
work_dir = f'{save_dir}/{experiment_name}'

# --- model: the SRGAN editor runs G and D steps; ST is the generator, StyleGAN2's D the critic
model = dict(
    type='SRGAN',
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
    train_cfg=dict(),
    test_cfg=dict(),
    # 0..255 RGB -> [-1, 1], the range the plugin's networks take and give back
    data_preprocessor=dict(type='DataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
)
# each network gets its own DDP wrapper; the decoder's mapping network is frozen and unused
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', find_unused_parameters=True)

# --- data: pairs of aligned 512 px faces; 'img' is the degraded face, 'gt' the clean one, same file names
train_pipeline = [
    dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb'),
    dict(type='Flip', keys=['img', 'gt'], flip_ratio=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb'),
    dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb'),
    dict(type='PackInputs'),
]
dataset_type = 'BasicImageDataset'
train_dataloader = dict(
    num_workers=6,
    batch_size=8,  # per GPU; the paper trains with batch 8
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        metainfo=dict(dataset_type='ffhq', task_name='sisr'),
        data_root='data/ffhq',  # SET ME: folder holding the two image folders and the list below
        data_prefix=dict(img='degraded_512', gt='images_512'),  # SET ME: degraded / clean 512 px faces
        ann_file='meta_info_FFHQ_512.txt',  # SET ME: one gt file name a line ('' lists the gt folder)
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        metainfo=dict(dataset_type='celeba', task_name='sisr'),
        data_root='data/CelebA-HQ',  # SET ME: held-out faces degraded once with a fixed seed
        data_prefix=dict(img='degraded_512', gt='GT_512'),  # SET ME
        ann_file='',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='MAE'), dict(type='PSNR'), dict(type='SSIM')]
test_evaluator = val_evaluator

# --- schedule: the paper's 220k iterations, cosine annealing restarted every 55k
train_cfg = dict(type='IterBasedTrainLoop', max_iters=220_000, val_interval=5000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')
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

# --- runtime: checkpoints, logs and visualisation, as MMagic's default runtime sets them
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        interval=5000,
        save_optimizer=True,
        by_epoch=False,
        out_dir=save_dir,
        max_keep_ckpts=10,
        save_best=['MAE', 'PSNR', 'SSIM'],
        rule=['less', 'greater', 'greater']),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=4),
    dist_cfg=dict(backend='nccl'),
)
log_level = 'INFO'
log_processor = dict(type='LogProcessor', window_size=100, by_epoch=False)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='ConcatImageVisualizer',
    vis_backends=vis_backends,
    fn_key='gt_path',
    img_keys=['gt_img', 'input', 'pred_img'],
    bgr2rgb=True)
custom_hooks = [dict(type='BasicVisualizationHook', interval=1)]
load_from = None
resume = False
