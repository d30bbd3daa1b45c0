"""Tiny Table 1 cells for the tests: each row's own recipe (dlst_plugin.experiments.table1), shrunk to 32 px, a few
channels, CPU, a few iterations; GFP-GAN's extra networks and files made here (no download)."""
import numpy as np
import torch
from restorer_configs import tiny_cell_options

TINY_COMPONENT_NARROW = 1 / 16  # 4/8/16 channels instead of GFP-GAN's 64/128/256


def tiny_arcface_file(path):
    """A random ResNetArcFace (GFP-GAN's identity network, one IRBlock per stage) saved as GFP-GAN's
    ``arcface_resnet18.pth`` is, a bare state dict (in float16: it is 19M parameters, most in ``fc5``)."""
    from gfpgan.archs.arcface_arch import ResNetArcFace
    torch.manual_seed(0)
    net = ResNetArcFace('IRBlock', [1, 1, 1, 1], use_se=False)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, path)
    return path


def component_file(path, count, size):
    """GFP-GAN's landmark-file format (np.float64 values, 8-digit keys): the template's boxes, shifted by
    a pixel per face."""
    from dlst_plugin.data.face_components import template_boxes
    boxes = {f'{i:08d}': {part: [np.float64(v + i % 2) for v in box] for part, box in template_boxes(size).items()}
             for i in range(count)}
    torch.save(boxes, path)
    return path


def tiny_gfpgan_parts(opt, arcface, components=None):
    """GFP-GAN's recipe in ``opt`` made tiny: narrow component discriminators, a one-block ArcFace read from
    ``arcface``, R1 every 2 iterations, the pyramid loss dropped after the first, GFP-GAN's MultiStepLR, the
    decoder frozen as in the recipe (the tiny network_g of restorer_configs trains it)."""
    opt['network_g']['fix_decoder'] = True  # the recipe's frozen StyleGAN2 decoder
    for key in ('network_d_left_eye', 'network_d_right_eye', 'network_d_mouth'):
        opt[key]['narrow'] = TINY_COMPONENT_NARROW
    opt['network_identity']['layers'] = [1, 1, 1, 1]
    opt['path']['pretrain_network_identity'] = str(arcface)
    opt['datasets']['train'].update(component_path=str(components) if components else None, batch_size_per_gpu=2)
    total = opt['train']['total_iter']
    opt['train'].update(net_d_reg_every=2, remove_pyramid_loss=1,
                        scheduler={'type': 'MultiStepLR', 'milestones': [max(1, total - 1)], 'gamma': 0.5})
    return opt


def tiny_table1_cell(cell, faces, pairs=None, iters=2, tmp_root=None, arcface=None, components=None):
    """``tiny_cell_options`` for any cell, with GFP-GAN's extra parts for its row."""
    opt = tiny_cell_options(cell, faces, pairs, iters=iters, tmp_root=tmp_root)
    if cell.startswith('gfpgan'):
        tiny_gfpgan_parts(opt, arcface, components)
    return opt
