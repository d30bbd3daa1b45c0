"""Stop a run before any work when a weight file its options name is missing (every plugin model).

Users otherwise learn of a missing VGG or StyleGAN2 file minutes in, from a deep traceback; here the
run ends at start-up with one line per file, naming the option and the path."""
import os.path as osp

from basicsr.utils import get_root_logger

PERCEPTUAL_KEYS = ('perceptual_opt', 'vgg_opt')  # vgg_opt: the degrader's former name of the same loss


def missing_pretrained_files(opt, network_keys, default_vgg):
    """One message per missing file: ``network_g.<key>`` for each of ``network_keys``, every non-empty
    ``path.pretrain_network_*`` (the generator's, a discriminator's, GFP-GAN's ArcFace), and the VGG weights
    of ``train.perceptual_opt`` (when training without ``random_init``)."""
    from dlst_plugin.losses.vgg_loss import VGG_WEIGHT_FILES, find_vgg_weights
    problems = []
    train = (opt.get('train') or {}) if opt.get('is_train') else {}
    vgg_opt_key = next((key for key in PERCEPTUAL_KEYS if train.get(key)), PERCEPTUAL_KEYS[0])
    loss = train.get(vgg_opt_key)
    if loss and not loss.get('random_init', False):
        vgg_type = loss.get('vgg_type', default_vgg)
        if vgg_type in VGG_WEIGHT_FILES:
            try:
                find_vgg_weights(vgg_type, loss.get('weights_path'), loss.get('weights_dir'))
            except FileNotFoundError as err:
                problems.append(f'train.{vgg_opt_key}: {err}')
    checks = [(f'network_g.{key}', (opt.get('network_g') or {}).get(key)) for key in network_keys]
    checks += [(f'path.{key}', path) for key, path in (opt.get('path') or {}).items()
               if str(key).startswith('pretrain_network_')]
    problems += [f'{key}: file not found: {path}' for key, path in checks
                 if path and not osp.isfile(osp.expanduser(path))]
    return problems


def stop_if_pretrained_files_missing(opt, **kwargs):
    """End the run at start-up, one line per file :func:`missing_pretrained_files` finds."""
    problems = missing_pretrained_files(opt, **kwargs)
    if problems:
        message = 'missing pretrained files:\n  ' + '\n  '.join(problems)
        get_root_logger().error(message)
        raise SystemExit(f'error: {message}')
