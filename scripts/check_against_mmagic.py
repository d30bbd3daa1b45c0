"""Check the plugin's GLEAN against MMagic's own ``GLEANStyleGANv2`` (run on demand, not in CI).

MMagic 1.2.0 runs on a CPU in a virtualenv of its own (its pins clash with the plugin's environment)::

    python -m venv /work/venv_mmagic
    /work/venv_mmagic/bin/pip install torch==2.14.1 torchvision==0.29.1 mmengine==0.10.7 numpy==1.26.4 \\
        opencv-python==4.10.0.84 click requests scipy
    /work/venv_mmagic/bin/pip install --no-deps mmcv-lite==2.1.0 mmagic==1.2.0
    python scripts/check_against_mmagic.py --mmagic-python /work/venv_mmagic/bin/python

The script runs itself under that interpreter (``--mmagic-side compare``) to build MMagic's ``SRGAN`` editor with a
``GLEANStyleGANv2`` generator, give every weight random values, and save what MMagic computes together with
the weights (the bare module's state dict, and the editor's as mmengine saves it). Back in the plugin's
environment, the same files are read through every path a user has (the arch with the converted state
dict, ``load_restorer`` as ``dlst-restore`` / ``dlst-evaluate`` use it, spandrel, EMA prefixes) and the
outputs are compared. Exit code 1 when a difference exceeds ``--tolerance``.

``--train-iterations N`` (default 3) then trains each shipped ``options/mmagic/*.py`` config N iterations in
MMagic's own ``Runner`` and ``SRGAN`` editor (``--mmagic-side train``; networks shrunk to 32 px, four
generated face pairs, validation off), which needs basicsr in MMagic's virtualenv
(``pip install --no-build-isolation basicsr==1.4.2``) and imports this checkout through ``PYTHONPATH``.
VGG16's ImageNet weights cannot be downloaded here: the perceptual loss runs on a randomly initialised VGG16
(``torchvision.models.vgg.vgg16`` is wrapped to ignore ``pretrained``). The saved generator is read back with
the plugin's ``load_restorer``.

Two stand-ins make MMagic importable without compiled code or the diffusers stack: a module object for
``mmcv._ext`` (on CPU tensors mmcv's fused leaky ReLU, upfirdn2d and conv2d_gradfix take their PyTorch
paths and never call it; a call would raise), and empty package shells for ``mmagic.models``,
``mmagic.models.archs`` and ``mmagic.models.editors``, whose ``__init__`` files import diffusers and
transformers, so that only the modules GLEAN needs are executed, unmodified.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# (name, in_size, out_size, channel_multiplier, num_rrdbs): MMagic's GLEAN needs in_size < out_size
CASES = (('x4_c2', 16, 64, 2, 3), ('x2_c1', 32, 64, 1, 23))
SEED = 0


# --- the MMagic side (runs in MMagic's virtualenv; imports nothing of the plugin) ---------------------------
def import_mmagic():
    import importlib
    import importlib.machinery
    import os
    import types

    class CompiledOpsStandIn(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)

            def not_compiled(*args, **kwargs):
                raise RuntimeError(f'mmcv._ext.{name} was called: mmcv-lite has no compiled operators')
            return not_compiled

    stand_in = CompiledOpsStandIn('mmcv._ext')
    stand_in.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)  # mmengine looks for it (pkgutil)
    sys.modules['mmcv._ext'] = stand_in
    import mmagic
    root = os.path.dirname(mmagic.__file__)

    def shell(name, exports=()):
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(root, *name.split('.')[1:])]
        sys.modules[name] = module
        parent, _, child = name.rpartition('.')
        setattr(sys.modules[parent], child, module)
        for attr, sub in exports:
            setattr(module, attr, getattr(importlib.import_module(f'{name}.{sub}'), attr))

    shell('mmagic.models')
    shell('mmagic.models.archs', (('PixelShufflePack', 'upsample'), ('pixel_unshuffle', 'downsample'),
                                  ('AllGatherLayer', 'all_gather_layer'), ('ResidualBlockNoBN', 'sr_backbone')))
    shell('mmagic.models.editors')
    for name in ('editors.glean.glean_styleganv2', 'editors.stylegan2', 'editors.srgan', 'losses',
                 'data_preprocessors'):
        importlib.import_module(f'mmagic.models.{name}')
    from mmengine.registry import DefaultScope
    DefaultScope.get_instance('check_against_mmagic', scope_name='mmagic')
    from mmagic.registry import MODELS
    return MODELS


def randomise(module, generator):
    """Every parameter and buffer moved off its initial value (zero biases and noise strengths included), so
    each weight counts in the comparison; FIR kernels are fixed and left alone."""
    import torch
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point() or name.endswith('kernel'):
                continue
            scale = tensor.std().item() if tensor.numel() > 1 and tensor.std() > 0 else 0.1
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.2 * scale)


def mmagic_side(out_dir):
    import mmengine
    import torch
    MODELS = import_mmagic()
    torch.manual_seed(SEED)
    for name, in_size, out_size, multiplier, num_rrdbs in CASES:
        editor = MODELS.build(dict(
            type='SRGAN', generator=dict(type='GLEANStyleGANv2', in_size=in_size, out_size=out_size,
                                         channel_multiplier=multiplier, num_rrdbs=num_rrdbs),
            discriminator=dict(type='StyleGANv2Discriminator', in_size=out_size, channel_multiplier=multiplier),
            pixel_loss=dict(type='MSELoss', loss_weight=1.0), gan_loss=dict(type='GANLoss', gan_type='vanilla'),
            data_preprocessor=dict(type='DataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3)))
        gen = torch.Generator().manual_seed(SEED)
        randomise(editor.generator, gen)
        glean = editor.generator.eval()
        x = torch.rand(2, 3, in_size, in_size, generator=gen) * 2 - 1
        w = torch.randn(2, 512, generator=gen)
        with torch.no_grad():
            y, again = glean(x), glean(x)
            image = glean.generator([w], input_is_latent=True, randomize_noise=False)
        torch.save({'x': x, 'y': y, 'w': w, 'image': image, 'deterministic': bool(torch.equal(y, again))},
                   out_dir / f'{name}_io.pth')
        torch.save(glean.state_dict(), out_dir / f'{name}_module.pth')
        meta = {'iter': 1, 'epoch': 0, 'experiment_name': name, 'mmengine_version': mmengine.__version__}
        torch.save({'meta': meta, 'state_dict': editor.state_dict()}, out_dir / f'{name}_srgan.pth')


def shrink_network(net):
    """A network entry of a shipped config at 32 px and a few channels, loading no file."""
    net = dict(net)
    net.update(out_size=32, narrow=1 / 32)
    for key, value in (('in_size', 32), ('num_style_feat', 32), ('num_mlp', 2)):
        if key in net:
            net[key] = value
    if net.get('skip_resolutions'):
        net['skip_resolutions'] = [r for r in net['skip_resolutions'] if r < 32]
    if net['type'] == 'GLEANStyleGAN2':
        net.update(rrdb_channels=8, num_rrdbs=1, rrdb_growth_channels=4)
    for key in ('decoder_load_path', 'bank_load_path'):
        if key in net:
            net[key] = None
    return net


def tiny_pairs(root, count=4):
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    for folder in ('img', 'gt'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        gt = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / 'gt' / f'{i:03d}.png'), gt)
        cv2.imwrite(str(root / 'img' / f'{i:03d}.png'), cv2.GaussianBlur(gt, (5, 5), 1.5))


def train_side(out_dir, iterations):
    """Train each shipped options/mmagic config a few iterations in MMagic's SRGAN editor, tiny and on CPU."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    import_mmagic()
    from mmagic.engine import hooks  # noqa: F401  (registers MMagic's hooks)
    from torchvision.models import vgg  # MMagic's PerceptualVGG calls vgg.vgg16(pretrained=True)
    vgg16 = vgg.vgg16
    vgg.vgg16 = lambda pretrained=False, **kwargs: vgg16(**kwargs)  # no download here: a random VGG16
    tiny_pairs(out_dir / 'pairs')
    results = {}
    for path in sorted((REPO / 'options' / 'mmagic').glob('*.py')):
        cfg = Config.fromfile(str(path))
        cfg.model.generator = shrink_network(cfg.model.generator)
        cfg.model.discriminator = shrink_network(cfg.model.discriminator)
        dataset = cfg.train_dataloader.dataset
        dataset.update(data_root=str(out_dir / 'pairs'), data_prefix=dict(img='img', gt='gt'), ann_file='')
        cfg.train_dataloader.update(batch_size=2, num_workers=0)
        cfg.train_cfg.update(max_iters=iterations, val_interval=10 * iterations)
        for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg', 'test_evaluator'):
            cfg[key] = None
        cfg.default_hooks.checkpoint.update(interval=iterations, save_best=None, rule=None, out_dir=None)
        cfg.default_hooks.logger.update(interval=1)
        cfg.custom_hooks = []
        cfg.work_dir = str(out_dir / path.stem)
        runner = Runner.from_cfg(cfg)
        runner.train()
        scalars = runner.message_hub.log_scalars
        results[path.name] = {key: [float(v) for v in scalars[key].data[0]] for key in scalars
                              if key.startswith('train/loss')}
        saved = Path(cfg.work_dir) / f'iter_{iterations}.pth'
        import torch
        with torch.serialization.safe_globals([]):
            ckpt = torch.load(saved, map_location='cpu', weights_only=False)  # our own file, just written
        torch.save({'meta': ckpt['meta'], 'state_dict': ckpt['state_dict']}, out_dir / f'{path.stem}_trained.pth')
    (out_dir / 'train_results.json').write_text(json.dumps(results, indent=1))


# --- the plugin side ---------------------------------------------------------------------------------------
def max_diff(a, b):
    return float((a.float() - b.float()).abs().max())


def plugin_outputs(name, out_dir, io):
    """{path: output} for each way the plugin reads the MMagic files."""
    import torch

    from dlst_plugin.archs.glean_stylegan2_arch import GLEANStyleGAN2
    from dlst_plugin.checkpoints.glean_mmagic import glean_from_mmagic
    from dlst_plugin.loading.networks import load_restorer
    from dlst_plugin.loading.shapes import infer_glean
    bare = torch.load(out_dir / f'{name}_module.pth', map_location='cpu', weights_only=True)
    state = glean_from_mmagic(bare)
    net = GLEANStyleGAN2(**infer_glean(state, name)).eval()
    net.load_state_dict(state, strict=True)
    saved = torch.load(out_dir / f'{name}_srgan.pth', map_location='cpu', weights_only=True)
    ema = {'state_dict': {**{'generator_ema.module.' + k[len('generator.'):]: v for k, v in saved['state_dict'].items()
                             if k.startswith('generator.')}, 'generator_ema.steps': torch.tensor(1)}}
    torch.save(ema, out_dir / f'{name}_ema.pth')
    outputs = {}
    with torch.no_grad():
        outputs['GLEANStyleGAN2 + converted module state dict'] = net(io['x'])
        for what, file in (('load_restorer, SRGAN save (generator.)', 'srgan'),
                           ('load_restorer, EMA save (generator_ema.module.)', 'ema')):
            restorer, _ = load_restorer(out_dir / f'{name}_{file}.pth')
            outputs[what] = restorer(io['x'])
        outputs['spandrel, SRGAN save'] = spandrel_output(out_dir / f'{name}_srgan.pth', io['x'])
    return outputs, net


def spandrel_output(path, x):
    import spandrel

    from dlst_plugin.integrations.spandrel import install
    install()
    model = spandrel.ModelLoader().load_from_file(path)
    return model.model.eval()(x)


def bank_output(net, io):
    import torch
    with torch.no_grad():
        image, _ = net.bank([io['w']], input_is_latent=True, randomize_noise=False)
    return image


def plugin_side(out_dir, tolerance):
    import torch
    rows, worst = [], 0.0
    for name, in_size, out_size, multiplier, num_rrdbs in CASES:
        io = torch.load(out_dir / f'{name}_io.pth', map_location='cpu', weights_only=True)
        outputs, net = plugin_outputs(name, out_dir, io)
        case = f'{name}: in {in_size}, out {out_size}, channel_multiplier {multiplier}, {num_rrdbs} RRDBs'
        rows.append({'case': case, 'what': 'MMagic deterministic (two forwards equal)', 'ok': io['deterministic']})
        for what, y in outputs.items():
            diff = max_diff(y, io['y'])
            worst = max(worst, diff)
            rows.append({'case': case, 'what': f'GLEAN output, {what}', 'max_abs_diff': diff,
                         'output_range': [float(io['y'].min()), float(io['y'].max())]})
        diff = max_diff(bank_output(net, io), io['image'])
        worst = max(worst, diff)
        rows.append({'case': case, 'what': 'latent bank image from w (StyleGANv2Generator vs the bank)',
                     'max_abs_diff': diff})
    return rows, worst


def trained_rows(work):
    """The losses of each config's short MMagic run, and its saved generator read back by the plugin."""
    import torch

    from dlst_plugin.loading.networks import load_restorer
    rows = []
    for name, losses in json.loads((work / 'train_results.json').read_text()).items():
        net, options = load_restorer(work / f'{Path(name).stem}_trained.pth')
        size = options.get('in_size', options['out_size'])
        with torch.no_grad():
            out = net(torch.rand(1, 3, size, size) * 2 - 1)
        finite = all(bool(torch.isfinite(torch.tensor(values)).all()) for values in losses.values())
        rows.append({'case': f'MMagic SRGAN run of options/mmagic/{name}', 'what': 'losses per iteration',
                     'losses': losses, 'ok': finite and bool(torch.isfinite(out).all()),
                     'restored by the plugin': options['type']})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mmagic-python', help="interpreter of MMagic's virtualenv")
    parser.add_argument('--work-dir', help='where the exchanged files go (default: a temporary folder)')
    parser.add_argument('--tolerance', type=float, default=1e-4, help='largest max-abs difference accepted')
    parser.add_argument('--train-iterations', type=int, default=3,
                        help="iterations of MMagic's SRGAN editor on each shipped options/mmagic config (0: none)")
    parser.add_argument('--mmagic-side', choices=('compare', 'train'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mmagic_side == 'compare':
        mmagic_side(Path(args.work_dir))
        return 0
    if args.mmagic_side == 'train':
        train_side(Path(args.work_dir), args.train_iterations)
        return 0
    if not args.mmagic_python:
        parser.error('--mmagic-python is required (see the module docstring for the virtualenv)')
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.mmagic_python, __file__, '--mmagic-side', 'compare', '--work-dir', str(work)], check=True)
        sys.path.insert(0, str(REPO))
        rows, worst = plugin_side(work, args.tolerance)
        if args.train_iterations:
            env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')])}
            subprocess.run([args.mmagic_python, __file__, '--mmagic-side', 'train', '--work-dir', str(work),
                            '--train-iterations', str(args.train_iterations)], check=True, env=env)
            rows += trained_rows(work)
    print(json.dumps(rows, indent=1))
    failed = worst > args.tolerance or not all(r.get('ok', True) for r in rows)
    print(f'largest difference {worst:.3g} (tolerance {args.tolerance:g}): {"FAILED" if failed else "ok"}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
