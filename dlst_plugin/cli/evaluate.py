"""dlst-evaluate: score restored faces like the paper's Table 2 (FID, NIQE; PSNR/SSIM with ground truth).

Paper section 4 compares methods by FID (against high-quality faces) and NIQE (no reference).
Each ``--restored NAME=DIR`` is one method (one table row); images are matched across folders by
file stem. Results go to ``OUT/metrics.json`` (every number with its backend, image format and resize
rule) and ``OUT/report.html`` (self-contained: metric table and input | methods | ground-truth thumbnails).
Nothing is downloaded: FID's Inception weights are read from disk (see ``--weights-dir``).
An image that cannot be decoded is left out, named, and makes the exit code 1; ``--gt`` matching
no restored image is an error, not a table of dashes.

PSNR of an image equal to its ground truth is infinite, as BasicSR's ``calculate_psnr`` gives it (pyiqa's
``psnr`` gives about 80 dB there, from its eps); it is counted, so the method's mean PSNR is then ``inf``, as
BasicSR's validation averages it. The table shows ``inf``; metrics.json, which must stay valid JSON, writes it
as the string ``"inf"`` and adds ``identical_images`` (how many) and ``finite_mean`` (the mean of the others).
"""
import datetime
import math
import sys
from pathlib import Path

from dlst_plugin.cli.common import make_parser, run_command
from dlst_plugin.errors import EXIT_INPUT, ConfigError, InputError

METRICS = ('niqe', 'fid', 'psnr', 'ssim', 'lpips')
PSNR_NOTE = ('PSNR of an image equal to its ground truth is inf (BasicSR calculate_psnr), counted in the mean, '
             'which is then inf as in BasicSR; metrics.json writes it as the string "inf" and gives identical_images '
             'and finite_mean (the mean of the other images; pyiqa would give those images about 80 dB)')
EXAMPLE = ('examples:\n  dlst-evaluate --restored DL-ST=results/dlst --input testset/lq --reference ffhq512/ -o eval\n'
           '  dlst-evaluate --reference ffhq512/ --save-stats weights/ffhq512_fid.npz')


def build_parser():
    p = make_parser('dlst-evaluate', __doc__.split('\n')[0], epilog=EXAMPLE)
    p.add_argument('--restored', action='append', default=[], metavar='[NAME=]DIR',
                   help='folder of restored faces of one method, repeatable; a bare DIR is named after its folder')
    p.add_argument('-i', '--input', metavar='DIR', help='the degraded inputs (only shown as thumbnails)')
    p.add_argument('--gt', metavar='DIR',
                   help='ground-truth faces, matched by file stem: enables PSNR/SSIM/LPIPS. ' + PSNR_NOTE)
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
    p.add_argument('-o', '--output', '--out', dest='output', default='evaluation',
                   help='folder for metrics.json and report.html, which are replaced (--out: old spelling)')
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
            raise ConfigError(f'--restored {entry!r}: expected NAME=DIR or DIR')
        if name in [n for n, _ in methods]:
            raise ConfigError(f'--restored: two methods are named {name!r}; name them with NAME=DIR')
        methods.append((name, Path(folder)))
    return methods


def choose_metrics(args, lpips_reason):
    """The metrics to compute and ``{metric: reason}`` for those that cannot be."""
    has_reference = bool(args.reference or args.reference_stats)
    if args.metrics:
        chosen = [m.strip().lower() for m in args.metrics.split(',') if m.strip()]
        unknown = sorted(set(chosen) - set(METRICS))
        if unknown:
            raise ConfigError(f'--metrics: unknown metric(s) {unknown}; choose from {",".join(METRICS)}')
        if 'fid' in chosen and not has_reference:
            raise ConfigError('--metrics fid needs --reference DIR or --reference-stats FILE')
        if {'psnr', 'ssim', 'lpips'} & set(chosen) and not args.gt:
            raise ConfigError('--metrics psnr/ssim/lpips need ground truth: --gt DIR')
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
    """Mean of the values that are not None (an infinite PSNR makes it infinite, as BasicSR's mean); None if none."""
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


FAILED = 'failed'  # the 'kind' of a skipped record whose image could not be decoded or compared


def skip(skipped, path, err):
    """Record an image that could not be decoded or compared (it makes the exit code 1)."""
    from dlst_plugin.metrics.images import warn
    warn(f'skipping {path}: {err}')
    skipped.append({'file': str(path), 'reason': str(err), 'kind': FAILED})


def reference_statistics(args, inception):
    """``(mu, sigma, info)`` of the FID reference, from --reference-stats or computed on --reference."""
    from tqdm import tqdm

    from dlst_plugin.metrics import fid
    from dlst_plugin.metrics.images import list_images, read_image
    if args.reference_stats:
        return fid.load_statistics(args.reference_stats, inception)
    images, skipped = list_images(args.reference, '--reference')
    for path in tqdm(list(images.values()), desc='FID features (reference)', unit='img', file=sys.stderr):
        try:
            inception.add(read_image(path))
        except InputError as err:
            skip(skipped, path, err)
    features = inception.take_features()
    count = len(features)
    mu, sigma = fid.feature_statistics(features)
    if args.save_stats:
        fid.save_statistics(args.save_stats, mu, sigma, count, inception.weights, args.reference)
        print(f'saved FID reference statistics of {count} images to {args.save_stats}')
    return mu, sigma, {'dir': str(args.reference), 'num_images': count, 'inception_weights': inception.weights,
                       'resize': fid.FID_RESIZE_RULE, 'skipped': skipped}


def check_gt_matches(methods, listings, gt_images, gt_dir):
    """``--gt`` must share file stems with every method: no match would score nothing and print dashes."""
    for name, folder in methods:
        if not set(listings[name][0]) & set(gt_images):
            def some(stems):
                return ', '.join(sorted(stems)[:3]) + (' ...' if len(stems) > 3 else '')
            raise InputError(f'--gt {gt_dir} and --restored {name} ({folder}) share no file stem, so nothing can be '
                             f'compared (--gt: {some(gt_images)}; --restored: {some(listings[name][0])}). Images are '
                             'matched by stem (face_0001.png <-> face_0001.jpg): rename them or pass matching folders')


def score_image(img, path, stem, scorers, gt_images, paired, lpips_net, values):
    """Score one restored image into ``values`` (metric key -> {stem: value}); return whether NIQE upscaled it."""
    from dlst_plugin.metrics.images import read_image, warn
    from dlst_plugin.metrics.niqe import upscale_for_niqe
    from dlst_plugin.metrics.paired import paired_value
    upscaled = False
    if scorers:
        niqe_img, upscaled = upscale_for_niqe(img)
        for scorer in scorers:
            values[scorer.key][stem] = finite_or_none(scorer(niqe_img))
            if values[scorer.key][stem] is None:
                warn(f'{scorer.label} of {path} is not finite; left out of the mean')
    if gt_images is None or stem not in gt_images:
        return upscaled
    gt = read_image(gt_images[stem])
    if gt.shape != img.shape:
        raise InputError(f'{path} is {img.shape[1]}x{img.shape[0]} but ground truth {gt_images[stem]} is '
                         f'{gt.shape[1]}x{gt.shape[0]}: size differs from ground truth; no PSNR/SSIM/LPIPS for it')
    for key, value in (paired(img, gt).items() if paired else ()):
        values[key][stem] = paired_value(key, value)
        if values[key][stem] is None:
            warn(f'{key.upper()} of {path} is not finite; left out of the mean')
    if lpips_net:
        values['lpips'][stem] = lpips_net(img, gt)
    return upscaled


def method_record(name, folder, skipped, scored, values, scorers, paired, lpips_net, upscaled):
    """One method's JSON record (without FID, which needs the reference)."""
    from dlst_plugin.metrics.images import IMAGE_FORMAT
    from dlst_plugin.metrics.niqe import NIQE_RESIZE_RULE
    from dlst_plugin.metrics.paired import psnr_extras
    from dlst_plugin.metrics.report import metric_entry
    record = {'name': name, 'dir': str(folder), 'num_images': scored, 'skipped': skipped, 'metrics': {}}
    for scorer in scorers:
        per_image = values[scorer.key]
        record['metrics'][scorer.key] = metric_entry(
            scorer.key, mean_of(per_image.values()), scorer.backend, f'{IMAGE_FORMAT}; scored on the Y channel',
            NIQE_RESIZE_RULE, len(per_image), per_image=per_image, upscaled_images=upscaled)
    for key in [*(paired.keys if paired else ()), *(['lpips'] if lpips_net else [])]:
        backend = lpips_net.backend if key == 'lpips' else paired.backend[key]
        image_format = f'{IMAGE_FORMAT}; {"RGB in [-1, 1]" if key == "lpips" else paired.image_format}'
        record['metrics'][key] = metric_entry(key, mean_of(values[key].values()), backend, image_format,
                                              'none (restored and ground truth must have the same size)',
                                              len(values[key]), per_image=values[key],
                                              **(psnr_extras(values[key]) if key == 'psnr' else {}))
    return record


def evaluate_method(name, folder, listing, gt_images, scorers, inception, paired, lpips_net):
    """Score one method's images (``listing`` = (images by stem, skipped)); returns its JSON record."""
    from tqdm import tqdm

    from dlst_plugin.metrics.images import read_image, warn
    images, skipped = listing
    values = {key: {} for key in [s.key for s in scorers] + list(paired.keys if paired else ())
              + (['lpips'] if lpips_net else [])}
    upscaled = scored = 0
    for stem, path in tqdm(images.items(), desc=f'evaluate {name}', unit='img', file=sys.stderr):
        try:
            img = read_image(path)
        except InputError as err:
            skip(skipped, path, err)
            continue
        scored += 1
        if inception is not None:
            inception.add(img)
        try:
            upscaled += score_image(img, path, stem, scorers, gt_images, paired, lpips_net, values)
        except InputError as err:  # ground truth unreadable or of another size
            skip(skipped, path, err)
    record = method_record(name, folder, skipped, scored, values, scorers, paired, lpips_net, upscaled)
    if gt_images is not None:
        record['missing_gt'] = sorted(set(images) - set(gt_images))
        record['missing_restored'] = sorted(set(gt_images) - set(images))
        for what, stems in (('without ground truth', record['missing_gt']),
                            ('of --gt missing from --restored', record['missing_restored'])):
            if stems:
                warn(f'{name}: {len(stems)} image(s) {what}: {", ".join(stems[:5])}{" ..." if len(stems) > 5 else ""}')
    return record


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
            except InputError:  # unreadable: already reported while scoring
                uris.append(None)
        rows.append((stem, uris))
    return [label for label, _ in folders], rows


def check_args(args, methods):
    from dlst_plugin.metrics.images import EvaluationSetupError
    if args.reference and args.reference_stats:
        raise ConfigError('give either --reference or --reference-stats, not both')
    if args.save_stats and not args.reference:
        raise ConfigError('--save-stats saves the statistics of --reference DIR; --reference is missing')
    if not methods and not args.save_stats:
        raise ConfigError('nothing to evaluate: give --restored [NAME=]DIR (or --reference DIR --save-stats FILE)')
    for role, folder in [('-i/--input', args.input), ('--gt', args.gt), ('--reference', args.reference)] + \
            [(f'--restored {n}', f) for n, f in methods]:
        if folder and not Path(folder).is_dir():
            raise EvaluationSetupError(f'{role} {folder} does not exist or is not a directory')


def build_scorers(args, metrics):
    """(NIQE scorers, FID Inception and reference statistics or Nones, PSNR/SSIM, LPIPS) for ``metrics``."""

    from dlst_plugin.devices import pick_device
    from dlst_plugin.metrics import fid as fid_metric
    from dlst_plugin.metrics.niqe import build_niqe_backends, pyiqa_available
    from dlst_plugin.metrics.paired import LPIPS, PSNRSSIM
    backends = {'auto': ['basicsr'] + (['pyiqa'] if pyiqa_available() else []), 'basicsr': ['basicsr'],
                'pyiqa': ['pyiqa'], 'both': ['basicsr', 'pyiqa']}[args.niqe_backend]
    scorers = build_niqe_backends(backends) if 'niqe' in metrics else []
    inception = reference = None
    if 'fid' in metrics or args.save_stats:
        device = pick_device(args.device)
        inception = fid_metric.FIDInception(args.inception_weights, args.weights_dir, args.fid_dims,
                                            args.inception_random_init, args.batch_size, device)
        reference = reference_statistics(args, inception)
    paired = PSNRSSIM(args.paired_channel, metrics) if {'psnr', 'ssim'} & set(metrics) else None
    lpips_net = LPIPS() if 'lpips' in metrics else None
    return scorers, inception, reference, paired, lpips_net


def add_fid(record, inception, reference):
    from dlst_plugin.metrics import fid as fid_metric
    from dlst_plugin.metrics.images import IMAGE_FORMAT
    from dlst_plugin.metrics.report import metric_entry
    mu_ref, sigma_ref, ref_info = reference
    mu, sigma = fid_metric.feature_statistics(inception.take_features())
    record['metrics']['fid'] = metric_entry(
        'fid', fid_metric.frechet_distance(mu, sigma, mu_ref, sigma_ref), inception.backend, IMAGE_FORMAT,
        fid_metric.FID_RESIZE_RULE, record['num_images'],
        reference=ref_info.get('dir') or ref_info.get('file'), reference_images=ref_info['num_images'],
        formula='symmetric eigendecomposition (= basicsr calculate_fid)')


def write_outputs(args, argv, records, reference, inception, unavailable, methods, method_images, gt_images):
    import dlst_plugin
    from dlst_plugin.metrics.images import IMAGE_FORMAT
    from dlst_plugin.metrics.report import format_table, identical_notes, write_html, write_json
    payload = {'tool': 'dlst-evaluate', 'dlst_plugin_version': dlst_plugin.__version__,
               'created_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               'command': ['dlst-evaluate'] + list(argv), 'image_format': IMAGE_FORMAT,
               'fid_reference': reference[2] if reference else None,
               'ground_truth': str(args.gt) if args.gt else None, 'input': str(args.input) if args.input else None,
               'unavailable': unavailable, 'methods': records}
    if inception is not None and args.inception_random_init is not None:
        payload['notes'] = ['FID computed with a RANDOMLY INITIALISED Inception (--inception-random-init): test only']
    print(format_table(records))
    for line in identical_notes(records):
        print(line)
    for key, reason in unavailable.items():
        print(f'{key}: unavailable ({reason})')
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'metrics.json', payload)
    write_html(out / 'report.html', payload, *thumbnail_grid(args, methods, method_images, gt_images))
    print(f'wrote {out / "metrics.json"} and {out / "report.html"}')


def run(args, argv):
    from dlst_plugin.metrics.images import list_images
    from dlst_plugin.metrics.paired import lpips_unavailable_reason

    methods = parse_restored(args.restored)
    check_args(args, methods)
    metrics, unavailable = choose_metrics(args, lpips_unavailable_reason())
    gt_images = list_images(args.gt, '--gt')[0] if args.gt else None
    listings = {name: list_images(folder, f'--restored {name}') for name, folder in methods}
    if gt_images is not None:
        check_gt_matches(methods, listings, gt_images, args.gt)
    scorers, inception, reference, paired, lpips_net = build_scorers(args, metrics)
    records = []
    for name, folder in methods:
        record = evaluate_method(name, folder, listings[name], gt_images, scorers,
                                 inception if 'fid' in metrics else None, paired, lpips_net)
        if 'fid' in metrics:
            add_fid(record, inception, reference)
        records.append(record)
    failed = [s['file'] for r in records + ([reference[2]] if reference else [])
              for s in r.get('skipped', []) if s.get('kind') == FAILED]
    if records:
        write_outputs(args, argv, records, reference, inception, unavailable, methods,
                      {name: listings[name][0] for name, _ in methods}, gt_images)
    if failed:
        print(f'{len(failed)} image(s) could not be scored and were left out: {", ".join(failed[:5])}'
              + (' ...' if len(failed) > 5 else ''), file=sys.stderr)
        return EXIT_INPUT
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(), lambda args: run(args, argv), argv,
                       interrupted='nothing was written (metrics.json and report.html are written at the end)')


if __name__ == '__main__':
    sys.exit(main())
