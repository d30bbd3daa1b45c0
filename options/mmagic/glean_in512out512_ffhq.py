# GLEAN as a 512 px blind face restorer (512 px degraded face in, 512 px face out), the GLEAN
# baseline DL-ST is compared with, using the plugin's GLEANStyleGAN2 in MMagic's SRGAN editor.
# Losses, optimiser and schedule follow MMagic's GLEAN FFHQ recipe; only the sizes and the data
# differ (no 16x downsampled input). Self-contained: no _base_ file is read.
#   python tools/train.py options/mmagic/glean_in512out512_ffhq.py   (from an MMagic checkout)
# Needs: pip install 'dlst-plugin[mmengine]' and MMagic. Lines marked "SET ME" name files a user
# must provide. Only the parsing of this file by mmengine and the building of its networks are
# tested in the plugin; MMagic itself is not (see docs/mmagic.md).

# --- plugin: importing this module registers GLEANStyleGAN2, SkipTransformer and the StyleGAN2
# generator/discriminator in mmengine's root MODELS registry, which MMagic's registry falls back to
custom_imports = dict(imports=['dlst_plugin.integrations.mmengine'], allow_failed_imports=False)

# --- run: names resolve in MMagic's registries first, then mmengine's
default_scope = 'mmagic'
experiment_name = 'glean_in512out512_ffhq'
save_dir = './work_dirs'
work_dir = f'{save_dir}/{experiment_name}'

# --- model: GLEAN (encoder + frozen StyleGAN2 latent bank + decoder) as the SRGAN generator
model = dict(
    type='SRGAN',
    generator=dict(
        type='GLEANStyleGAN2',
        in_size=512,
        out_size=512,
        num_style_feat=512,
        num_mlp=8,
        channel_multiplier=2,  # StyleGAN2 config-f widths, the bank GLEAN uses
        narrow=1,
        encoder_narrow=1,
        num_first_blocks=1,
        # SET ME: a 512 px StyleGAN2 FFHQ generator saved by MMagic (channel_multiplier 2). MMagic
        # publishes FFHQ StyleGAN2 weights at 256 and 1024 px only, so this is one trained at 512 px
        # (with MMagic or converted to its layout). None leaves the bank random.
        bank_load_path='checkpoints/stylegan2_c2_ffhq_512_mmagic.pth',
        bank_layout='auto',  # let the plugin's checkpoint reader detect the layout
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
    train_cfg=dict(),
    test_cfg=dict(),
    # 0..255 RGB -> [-1, 1], the range the plugin's networks take and give back
    data_preprocessor=dict(type='DataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
)
# each network gets its own DDP wrapper; the frozen bank's mapping network is never used
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
    num_workers=8,
    batch_size=8,  # per GPU; MMagic's GLEAN FFHQ recipe runs 2 GPUs x 8
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
    num_workers=8,
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

# --- schedule and optimisers of MMagic's GLEAN recipe
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300_000, val_interval=5000)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')
optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    generator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))),
    discriminator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99))),
)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, T_max=600_000, eta_min=1e-7)

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
