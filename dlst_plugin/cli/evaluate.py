"""dlst-evaluate: score restored faces like the paper's Table 2 (FID, NIQE; PSNR/SSIM with ground truth).

Paper section 4 compares methods by FID (against high-quality faces) and NIQE (no reference).
Each ``--restored NAME=DIR`` is one method (one table row); images are matched across folders by
file stem. Results go to ``OUT/metrics.json`` (every number with its backend, image format and resize
rule) and ``OUT/report.html`` (self-contained: metric table and input | methods | ground-truth thumbnails).
Nothing is downloaded: FID's Inception weights are read from disk (see ``--weights-dir``).
"""
import argparse
import datetime
import math
import sys
from pathlib import Path

METRICS = ('niqe', 'fid', 'psnr', 'ssim', 'lpips')


def build_parser():
    p = argparse.ArgumentParser(prog='dlst-evaluate', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--restored', action='append', default=[], metavar='[NAME=]DIR',
                   help='folder of restored faces of one method, repeatable; a bare DIR is named after its folder')
    p.add_argument('--input', metavar='DIR', help='the degraded inputs (only shown as thumbnails)')
    p.add_argument('--gt', metavar='DIR', help='ground-truth faces, matched by file stem: enables PSNR/SSIM/LPIPS')
    p.add_argument('--reference', metavar='DIR', help='high-quality faces FID compares against')
    p.add_argument('--reference-stats', metavar='FILE',
                   help='FID reference statistics instead of --reference: .npz (mu, sigma) or BasicSR .pth (mean, cov)')
    p.add_argument('--save-stats', metavar='FILE.npz',
                   help='write the statistics of --reference here (then --restored is optional)')
    p.add_argument('--metrics', help=f'comma-separated subset of {",".join(METRICS)}; default: niqe, fid when a '
                   'reference is given, psnr/ssim (and lpips when installed) when --gt is given')
    p.add_argument('--niqe-backend', default='auto', choices=('auto', 'basicsr', 'pyiqa', 'both'),
                   help='auto: BasicSR, plus pyiqa when installed; both and pyiqa require pyiqa')
    p.add_argument('--paired-channel', default='rgb', choices=('rgb', 'y'),
                   help='PSNR/SSIM on RGB (GFP-GAN validation) or on the Y channel')
    p.add_argument('--fid-dims', type=int, default=2048, choices=(64, 192, 768, 2048),
                   help='Inception feature size for FID (2048 = the standard FID)')
    p.add_argument('--inception-weights', metavar='FILE',
                   help='path of pt_inception-2015-12-05-6726825d.pth (default: looked up in --weights-dir)')
    p.add_argument('--weights-dir', help='folder of pretrained files (default: $DLST_WEIGHTS_DIR, else ./weights)')
    p.add_argument('--inception-random-init', type=int, metavar='SEED',
                   help='TESTS ONLY: a randomly initialised Inception; its FID means nothing')
    p.add_argument('--batch-size', type=int, default=16, help='images per Inception forward pass')
    p.add_argument('--device', default='auto', help='torch device for the Inception (auto: cuda when available)')
    p.add_argument('--out', default='evaluation', help='folder for metrics.json and report.html (replaced)')
    p.add_argument('--thumbnails', type=int, default=12, help='image rows shown side by side in the HTML report')
    return p


def parse_restored(entries):
    """[(name, Path)] from ``NAME=DIR`` / ``DIR`` entries; names must be unique."""
    methods = []
    for entry in entries:
        name, sep, folder = entry.partition('=')
        if not sep:
            name, folder = Path(entry.rstrip('/\\')).name or entry, entry
        if not name or not folder:
            raise ValueError(f'--restored {entry!r}: expected NAME=DIR or DIR')
        if name in [n for n, _ in methods]:
            raise ValueError(f'--restored: two methods are named {name!r}; name them with NAME=DIR')
        methods.append((name, Path(folder)))
    return methods


def choose_metrics(args, lpips_reason):
    """The metrics to compute and ``{metric: reason}`` for those that cannot be."""
    has_reference = bool(args.reference or args.reference_stats)
    if args.metrics:
        chosen = [m.strip().lower() for m in args.metrics.split(',') if m.strip()]
        unknown = sorted(set(chosen) - set(METRICS))
        if unknown:
            raise ValueError(f'--metrics: unknown metric(s) {unknown}; choose from {",".join(METRICS)}')
        if 'fid' in chosen and not has_reference:
            raise ValueError('--metrics fid needs --reference DIR or --reference-stats FILE')
        if {'psnr', 'ssim', 'lpips'} & set(chosen) and not args.gt:
            raise ValueError('--metrics psnr/ssim/lpips need ground truth: --gt DIR')
    else:
        chosen = ['niqe'] + (['fid'] if has_reference else []) + (['psnr', 'ssim', 'lpips'] if args.gt else [])
    unavailable = {}
    if 'lpips' in chosen and lpips_reason:
        unavailable['lpips'] = lpips_reason
        chosen.remove('lpips')
        if args.metrics:
            print(f'warning: LPIPS unavailable: {lpips_reason}', file=sys.stderr)
    return [m for m in METRICS if m in chosen], unavailable


def mean_of(values):
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def reference_statistics(args, inception, folder_features):
    """``(mu, sigma, info)`` of the FID reference, from --reference-stats or computed on --reference."""
    from dlst_plugin.metrics import fid
    if args.reference_stats:
        return fid.load_statistics(args.reference_stats, inception)
    features, count, skipped = folder_features(args.reference, 'reference', inception)
    mu, sigma = fid.feature_statistics(features)
    if args.save_stats:
        fid.save_statistics(args.save_stats, mu, sigma, count, inception.weights, args.reference)
        print(f'saved FID reference statistics of {count} images to {args.save_stats}')
    return mu, sigma, {'dir': str(args.reference), 'num_images': count, 'inception_weights': inception.weights,
                       'resize': fid.FID_RESIZE_RULE, 'skipped': skipped}


def make_folder_features():
    from tqdm import tqdm

    from dlst_plugin.metrics.images import list_images, read_image, warn

    def folder_features(folder, role, inception):
        images, skipped = list_images(folder, role)
        for path in tqdm(list(images.values()), desc=f'FID features ({role})', unit='img', file=sys.stderr):
            try:
                inception.add(read_image(path))
            except Exception as err:  # unreadable file: skip it like a non-image
                warn(f'skipping {path}: {err}')
                skipped.append({'file': str(path), 'reason': str(err)})
        features = inception.take_features()
        return features, len(features), skipped
    return folder_features


def evaluate_method(name, folder, gt_images, scorers, inception, paired, lpips_net):
    """Score one method's folder; returns its JSON record (without FID, which needs the reference)."""
    from tqdm import tqdm

    from dlst_plugin.metrics.images import IMAGE_FORMAT, list_images, read_image, warn
    from dlst_plugin.metrics.niqe import upscale_for_niqe
    images, skipped = list_images(folder, f'--restored {name}')
    per_image = {s.key: {} for s in scorers}
    paired_values = {key: {} for key in (paired.keys if paired else ())}
    if lpips_net:
        paired_values['lpips'] = {}
    upscaled = scored = 0
    for stem, path in tqdm(images.items(), desc=f'evaluate {name}', unit='img', file=sys.stderr):
        try:
            img = read_image(path)
        except Exception as err:
            warn(f'skipping {path}: {err}')
            skipped.append({'file': str(path), 'reason': str(err)})
            continue
        scored += 1
        if scorers:
            niqe_img, was_upscaled = upscale_for_niqe(img)
            upscaled += was_upscaled
            for scorer in scorers:
                value = finite_or_none(scorer(niqe_img))
                if value is None:
                    warn(f'{scorer.label} of {path} is not finite; left out of the mean')
                per_image[scorer.key][stem] = value
        if inception is not None:
            inception.add(img)
        if gt_images is not None and stem in gt_images:
            gt = read_image(gt_images[stem])
            if gt.shape != img.shape:
                warn(f'{path} is {img.shape[1]}x{img.shape[0]} but ground truth {gt_images[stem]} is '
                     f'{gt.shape[1]}x{gt.shape[0]}; no PSNR/SSIM/LPIPS for it')
                skipped.append({'file': str(path), 'reason': 'size differs from ground truth'})
                continue
            if paired:
                for key, value in paired(img, gt).items():
                    paired_values[key][stem] = finite_or_none(value)
                    if paired_values[key][stem] is None:
                        warn(f'{key.upper()} of {path} is not finite (equal to ground truth?); left out of the mean')
            if lpips_net:
                paired_values['lpips'][stem] = lpips_net(img, gt)
    record = {'name': name, 'dir': str(folder), 'num_images': scored, 'skipped': skipped,
              'metrics': {}}
    from dlst_plugin.metrics.niqe import NIQE_RESIZE_RULE
    from dlst_plugin.metrics.report import metric_entry
    for scorer in scorers:
        values = per_image[scorer.key]
        record['metrics'][scorer.key] = metric_entry(
            scorer.key, mean_of(values.values()), scorer.backend, f'{IMAGE_FORMAT}; scored on the Y channel',
            NIQE_RESIZE_RULE, len(values), per_image=values, upscaled_images=upscaled)
    for key, values in paired_values.items():
        backend = lpips_net.backend if key == 'lpips' else paired.backend[key]
        image_format = f'{IMAGE_FORMAT}; {"RGB in [-1, 1]" if key == "lpips" else paired.image_format}'
        record['metrics'][key] = metric_entry(key, mean_of(values.values()), backend, image_format,
                                              'none (restored and ground truth must have the same size)',
                                              len(values), per_image=values)
    if gt_images is not None:
        record['missing_gt'] = sorted(set(images) - set(gt_images))
        record['missing_restored'] = sorted(set(gt_images) - set(images))
        for what, stems in (('without ground truth', record['missing_gt']),
                            ('of --gt missing from --restored', record['missing_restored'])):
            if stems:
                warn(f'{name}: {len(stems)} image(s) {what}: {", ".join(stems[:5])}{" ..." if len(stems) > 5 else ""}')
    return record, images


def thumbnail_grid(args, methods, method_images, gt_images):
    from dlst_plugin.metrics.images import list_images, read_image
    from dlst_plugin.metrics.report import thumbnail_data_uri
    folders = []
    if args.input:
        folders.append(('input', list_images(args.input, '--input')[0]))
    folders += [(name, method_images[name]) for name, _ in methods]
    if gt_images is not None:
        folders.append(('ground truth', gt_images))
    stems = sorted(set().union(*method_images.values()))[:max(0, args.thumbnails)]
    rows = []
    for stem in stems:
        uris = []
        for _, images in folders:
            try:
                uris.append(thumbnail_data_uri(read_image(images[stem])) if stem in images else None)
            except Exception:  # unreadable: already reported while scoring
                uris.append(None)
        rows.append((stem, uris))
    return [label for label, _ in folders], rows


def run(args, argv):
    import torch

    import dlst_plugin
    from dlst_plugin.metrics import fid as fid_metric
    from dlst_plugin.metrics.images import IMAGE_FORMAT, EvaluationError, list_images
    from dlst_plugin.metrics.niqe import build_niqe_backends, pyiqa_available
    from dlst_plugin.metrics.paired import LPIPS, PSNRSSIM, lpips_unavailable_reason
    from dlst_plugin.metrics.report import format_table, metric_entry, write_html, write_json

    methods = parse_restored(args.restored)
    if args.reference and args.reference_stats:
        raise ValueError('give either --reference or --reference-stats, not both')
    if args.save_stats and not args.reference:
        raise ValueError('--save-stats saves the statistics of --reference DIR; --reference is missing')
    if not methods and not args.save_stats:
        raise ValueError('nothing to evaluate: give --restored [NAME=]DIR (or --reference DIR --save-stats FILE)')
    metrics, unavailable = choose_metrics(args, lpips_unavailable_reason())
    for role, folder in [('--input', args.input), ('--gt', args.gt), ('--reference', args.reference)] + \
            [(f'--restored {n}', f) for n, f in methods]:
        if folder and not Path(folder).is_dir():
            raise EvaluationError(f'{role} {folder} does not exist or is not a directory')

    backends = {'auto': ['basicsr'] + (['pyiqa'] if pyiqa_available() else []), 'basicsr': ['basicsr'],
                'pyiqa': ['pyiqa'], 'both': ['basicsr', 'pyiqa']}[args.niqe_backend]
    scorers = build_niqe_backends(backends) if 'niqe' in metrics else []
    inception = reference = None
    if 'fid' in metrics or args.save_stats:
        device = ('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device
        inception = fid_metric.FIDInception(args.inception_weights, args.weights_dir, args.fid_dims,
                                            args.inception_random_init, args.batch_size, device)
        reference = reference_statistics(args, inception, make_folder_features())
    paired = PSNRSSIM(args.paired_channel) if {'psnr', 'ssim'} & set(metrics) else None
    lpips_net = LPIPS() if 'lpips' in metrics else None
    gt_images = list_images(args.gt, '--gt')[0] if args.gt else None

    records, method_images = [], {}
    for name, folder in methods:
        record, method_images[name] = evaluate_method(name, folder, gt_images, scorers,
                                                      inception if 'fid' in metrics else None, paired, lpips_net)
        if paired:  # only the asked-for ones of psnr/ssim
            record['metrics'] = {k: v for k, v in record['metrics'].items() if k in metrics or k.startswith('niqe')}
        if 'fid' in metrics:
            mu_ref, sigma_ref, ref_info = reference
            mu, sigma = fid_metric.feature_statistics(inception.take_features())
            record['metrics']['fid'] = metric_entry(
                'fid', fid_metric.frechet_distance(mu, sigma, mu_ref, sigma_ref), inception.backend, IMAGE_FORMAT,
                fid_metric.FID_RESIZE_RULE, record['num_images'],
                reference=ref_info.get('dir') or ref_info.get('file'), reference_images=ref_info['num_images'],
                formula='symmetric eigendecomposition (= basicsr calculate_fid)')
        records.append(record)
    if not records:
        return 0

    payload = {'tool': 'dlst-evaluate', 'dlst_plugin_version': dlst_plugin.__version__,
               'created_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               'command': ['dlst-evaluate'] + list(argv), 'image_format': IMAGE_FORMAT,
               'fid_reference': reference[2] if reference else None,
               'ground_truth': str(args.gt) if args.gt else None, 'input': str(args.input) if args.input else None,
               'unavailable': unavailable, 'methods': records}
    if inception is not None and args.inception_random_init is not None:
        payload['notes'] = ['FID computed with a RANDOMLY INITIALISED Inception (--inception-random-init): test only']
    print(format_table(records))
    for key, reason in unavailable.items():
        print(f'{key}: unavailable ({reason})')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'metrics.json', payload)
    write_html(out / 'report.html', payload, *thumbnail_grid(args, methods, method_images, gt_images))
    print(f'wrote {out / "metrics.json"} and {out / "report.html"}')
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from dlst_plugin.metrics.images import EvaluationError
    except ImportError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    try:
        return run(args, argv)
    except ValueError as err:  # bad combination of options
        print(f'error: {err}', file=sys.stderr)
        return 2
    except (EvaluationError, ImportError, OSError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
