# What the plugin's MMagic configs share: the plugin import, 512 px face pairs for MMagic's SRGAN
# editor (data, evaluation, loops) and MMagic's default runtime. A config names this file in
# _base_ and adds its model, optimisers and schedule. Paths are relative to this repository's
# options/mmagic/ folder; no MMagic config file is read. Lines marked "SET ME" name files a user
# must provide.

# --- plugin: importing this module registers SkipTransformer, GLEANStyleGAN2 and the StyleGAN2
# generator/discriminator in mmengine's root MODELS registry, which MMagic's registry falls back to
custom_imports = dict(imports=['dlst_plugin.integrations.mmengine'], allow_failed_imports=False)

# --- run: names resolve in MMagic's registries first, then mmengine's
default_scope = 'mmagic'
save_dir = './work_dirs'

# 0..255 RGB -> [-1, 1], the range the plugin's networks take and give back
model = dict(
    type='SRGAN',
    train_cfg=dict(),
    test_cfg=dict(),
    data_preprocessor=dict(type='DataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
)
# each network gets its own DDP wrapper (the StyleGAN2 mapping network of the decoder / bank is unused)
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
    batch_size=8,  # per GPU: the DL-ST paper trains with batch 8, MMagic's GLEAN FFHQ recipe with 2 GPUs x 8
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

val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')

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
