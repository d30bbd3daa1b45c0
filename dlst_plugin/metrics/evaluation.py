"""Scoring restored faces like the paper's Table 2: FID, NIQE; PSNR/SSIM/LPIPS with ground truth.

:func:`evaluate` is the library behind ``dlst-evaluate`` (the demo and ``dlst-table1 evaluate`` call it too).
Each method is a folder of restored faces (one table row); images are matched across folders by file stem.
Results go to ``OUTPUT/metrics.json`` (every number with its backend, image format and resize rule) and
``OUTPUT/report.html`` (metric table and input | methods | ground-truth thumbnails). Nothing is downloaded:
FID's Inception weights are read from disk. An image that cannot be decoded is left out, named, and listed in
:attr:`Evaluation.failed`; ground truth matching no restored image is an error, not a table of dashes.

PSNR of an image equal to its ground truth is infinite, as BasicSR's ``calculate_psnr`` gives it; it is
counted, so the method's mean PSNR is then ``inf``. metrics.json, which must stay valid JSON, writes it as the
string ``"inf"`` and adds ``identical_images`` and ``finite_mean``.

Messages name the flags of ``dlst-evaluate`` that match each setting (``reference`` is ``--reference``).
"""
import datetime
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dlst_plugin.errors import ConfigError, InputError
from dlst_plugin.metrics.images import IMAGE_FORMAT, EvaluationSetupError, list_images, read_image, warn

METRICS = ('niqe', 'fid', 'psnr', 'ssim', 'lpips')
FAILED = 'failed'  # the 'kind' of a skipped record whose image could not be decoded or compared


@dataclass
class EvaluationSettings:
    """What to score and how; each field is the ``dlst-evaluate`` flag of the same name."""
    input: str = None  # the degraded inputs, shown as thumbnails only
    gt: str = None  # ground-truth faces matched by file stem: PSNR/SSIM/LPIPS
    reference: str = None  # HQ faces FID compares against ...
    reference_stats: str = None  # ... or their statistics (.npz mu/sigma or BasicSR .pth mean/cov)
    save_stats: str = None  # write the statistics of ``reference`` here
    metrics: list = None  # a subset of METRICS; None: niqe, fid with a reference, psnr/ssim/lpips with gt
    niqe_backend: str = 'auto'  # auto (BasicSR, plus pyiqa when installed), basicsr, pyiqa, both
    paired_channel: str = 'rgb'  # PSNR/SSIM on RGB or on the Y channel
    fid_dims: int = 2048
    inception_weights: str = None
    weights_dir: str = None
    inception_random_init: int = None  # TESTS ONLY: a randomly initialised Inception
    batch_size: int = 16
    device: str = 'auto'
    thumbnails: int = 12


@dataclass
class Evaluation:
    """What :func:`evaluate` did: a record per method, the files that could not be scored (each also in
    its method's ``skipped``), and the payload written to metrics.json (None when no method was scored)."""
    records: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    payload: dict = None


def check_methods(methods):
    """``[(name, Path)]`` of ``methods`` ([(name, folder)]); two methods of one name are a ConfigError."""
    names = [name for name, _ in methods]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f'--restored: two methods are named {name!r}; name them with NAME=DIR')
    return [(name, Path(folder)) for name, folder in methods]


def check_settings(settings, methods):
    if settings.reference and settings.reference_stats:
        raise ConfigError('give either --reference or --reference-stats, not both')
    if settings.save_stats and not settings.reference:
        raise ConfigError('--save-stats saves the statistics of --reference DIR; --reference is missing')
    if not methods and not settings.save_stats:
        raise ConfigError('nothing to evaluate: give --restored [NAME=]DIR (or --reference DIR --save-stats FILE)')
    for role, folder in [('-i/--input', settings.input), ('--gt', settings.gt), ('--reference', settings.reference)] \
            + [(f'--restored {n}', f) for n, f in methods]:
        if folder and not Path(folder).is_dir():
            raise EvaluationSetupError(f'{role} {folder} does not exist or is not a directory')


def choose_metrics(settings, lpips_reason):
    """The metrics to compute and ``{metric: reason}`` for those that cannot be."""
    has_reference = bool(settings.reference or settings.reference_stats)
    if settings.metrics:
        chosen = [m.strip().lower() for m in settings.metrics if m.strip()]
        unknown = sorted(set(chosen) - set(METRICS))
        if unknown:
            raise ConfigError(f'--metrics: unknown metric(s) {unknown}; choose from {",".join(METRICS)}')
        if 'fid' in chosen and not has_reference:
            raise ConfigError('--metrics fid needs --reference DIR or --reference-stats FILE')
        if {'psnr', 'ssim', 'lpips'} & set(chosen) and not settings.gt:
            raise ConfigError('--metrics psnr/ssim/lpips need ground truth: --gt DIR')
    else:
        chosen = ['niqe'] + (['fid'] if has_reference else []) + (['psnr', 'ssim', 'lpips'] if settings.gt else [])
    unavailable = {}
    if 'lpips' in chosen and lpips_reason:
        unavailable['lpips'] = lpips_reason
        chosen.remove('lpips')
        if settings.metrics:
            print(f'warning: LPIPS unavailable: {lpips_reason}', file=sys.stderr)
    return [m for m in METRICS if m in chosen], unavailable


def mean_of(values):
    """Mean of the values that are not None (an infinite PSNR makes it infinite, as BasicSR's mean); None if none."""
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None


def finite_or_none(value):
    return value if value is not None and math.isfinite(value) else None


def skip(skipped, path, err):
    """Record an image that could not be decoded or compared (it lands in :attr:`Evaluation.failed`)."""
    warn(f'skipping {path}: {err}')
    skipped.append({'file': str(path), 'reason': str(err), 'kind': FAILED})


def reference_statistics(settings, inception):
    """``(mu, sigma, info)`` of the FID reference, from ``reference_stats`` or computed on ``reference``."""
    from tqdm import tqdm

    from dlst_plugin.metrics import fid
    if settings.reference_stats:
        return fid.load_statistics(settings.reference_stats, inception)
    images, skipped = list_images(settings.reference, '--reference')
    for path in tqdm(list(images.values()), desc='FID features (reference)', unit='img', file=sys.stderr):
        try:
            inception.add(read_image(path))
        except InputError as err:
            skip(skipped, path, err)
    features = inception.take_features()
    count = len(features)
    mu, sigma = fid.feature_statistics(features)
    if settings.save_stats:
        fid.save_statistics(settings.save_stats, mu, sigma, count, inception.weights, settings.reference)
        print(f'saved FID reference statistics of {count} images to {settings.save_stats}')
    return mu, sigma, {'dir': str(settings.reference), 'num_images': count, 'inception_weights': inception.weights,
                       'resize': fid.FID_RESIZE_RULE, 'skipped': skipped}


def check_gt_matches(methods, listings, gt_images, gt_dir):
    """Ground truth must share file stems with every method: no match would score nothing and print dashes."""
    for name, folder in methods:
        if not set(listings[name][0]) & set(gt_images):
            def some(stems):
                return ', '.join(sorted(stems)[:3]) + (' ...' if len(stems) > 3 else '')
            raise InputError(f'--gt {gt_dir} and --restored {name} ({folder}) share no file stem, so nothing can be '
                             f'compared (--gt: {some(gt_images)}; --restored: {some(listings[name][0])}). Images are '
                             'matched by stem (face_0001.png <-> face_0001.jpg): rename them or pass matching folders')


@dataclass
class Scorers:
    """The scoring networks of one evaluation (each None / empty when its metric is not computed)."""
    niqe: list
    inception: object
    reference: tuple
    paired: object
    lpips: object

    def keys(self):
        """The per-image metric keys, in the order of the report."""
        return [s.key for s in self.niqe] + list(self.paired.keys if self.paired else ()) + \
            (['lpips'] if self.lpips else [])


def build_scorers(settings, metrics):
    """:class:`Scorers` for ``metrics`` (the FID reference statistics computed or read first)."""
    from dlst_plugin.devices import pick_device
    from dlst_plugin.metrics import fid as fid_metric
    from dlst_plugin.metrics.niqe import build_niqe_backends, pyiqa_available
    from dlst_plugin.metrics.paired import LPIPS, PSNRSSIM
    backends = {'auto': ['basicsr'] + (['pyiqa'] if pyiqa_available() else []), 'basicsr': ['basicsr'],
                'pyiqa': ['pyiqa'], 'both': ['basicsr', 'pyiqa']}[settings.niqe_backend]
    niqe = build_niqe_backends(backends) if 'niqe' in metrics else []
    inception = reference = None
    if 'fid' in metrics or settings.save_stats:
        inception = fid_metric.FIDInception(settings.inception_weights, settings.weights_dir, settings.fid_dims,
                                            settings.inception_random_init, settings.batch_size,
                                            pick_device(settings.device))
        reference = reference_statistics(settings, inception)
    paired = PSNRSSIM(settings.paired_channel, metrics) if {'psnr', 'ssim'} & set(metrics) else None
    return Scorers(niqe, inception, reference, paired, LPIPS() if 'lpips' in metrics else None)


def score_image(img, path, stem, scorers, gt_images, values):
    """Score one restored image into ``values`` (metric key -> {stem: value}); return whether NIQE upscaled it."""
    from dlst_plugin.metrics.niqe import upscale_for_niqe
    from dlst_plugin.metrics.paired import paired_value
    upscaled = False
    if scorers.niqe:
        niqe_img, upscaled = upscale_for_niqe(img)
        for scorer in scorers.niqe:
            values[scorer.key][stem] = finite_or_none(scorer(niqe_img))
            if values[scorer.key][stem] is None:
                warn(f'{scorer.label} of {path} is not finite; left out of the mean')
    if gt_images is None or stem not in gt_images:
        return upscaled
    gt = read_image(gt_images[stem])
    if gt.shape != img.shape:
        raise InputError(f'{path} is {img.shape[1]}x{img.shape[0]} but ground truth {gt_images[stem]} is '
                         f'{gt.shape[1]}x{gt.shape[0]}: size differs from ground truth; no PSNR/SSIM/LPIPS for it')
    for key, value in (scorers.paired(img, gt).items() if scorers.paired else ()):
        values[key][stem] = paired_value(key, value)
        if values[key][stem] is None:
            warn(f'{key.upper()} of {path} is not finite; left out of the mean')
    if scorers.lpips:
        values['lpips'][stem] = scorers.lpips(img, gt)
    return upscaled


def method_record(name, folder, skipped, scored, values, scorers, upscaled):
    """One method's JSON record (without FID, which needs every image first)."""
    from dlst_plugin.metrics.niqe import NIQE_RESIZE_RULE
    from dlst_plugin.metrics.paired import psnr_extras
    from dlst_plugin.metrics.report import metric_entry
    record = {'name': name, 'dir': str(folder), 'num_images': scored, 'skipped': skipped, 'metrics': {}}
    for scorer in scorers.niqe:
        per_image = values[scorer.key]
        record['metrics'][scorer.key] = metric_entry(
            scorer.key, mean_of(per_image.values()), scorer.backend, f'{IMAGE_FORMAT}; scored on the Y channel',
            NIQE_RESIZE_RULE, len(per_image), per_image=per_image, upscaled_images=upscaled)
    for key in [*(scorers.paired.keys if scorers.paired else ()), *(['lpips'] if scorers.lpips else [])]:
        backend = scorers.lpips.backend if key == 'lpips' else scorers.paired.backend[key]
        image_format = f'{IMAGE_FORMAT}; {"RGB in [-1, 1]" if key == "lpips" else scorers.paired.image_format}'
        record['metrics'][key] = metric_entry(key, mean_of(values[key].values()), backend, image_format,
                                              'none (restored and ground truth must have the same size)',
                                              len(values[key]), per_image=values[key],
                                              **(psnr_extras(values[key]) if key == 'psnr' else {}))
    return record


def evaluate_method(name, folder, listing, gt_images, scorers, with_fid):
    """Score one method's images (``listing`` = (images by stem, skipped)); returns its JSON record."""
    from tqdm import tqdm
    images, skipped = listing
    values = {key: {} for key in scorers.keys()}
    upscaled = scored = 0
    for stem, path in tqdm(images.items(), desc=f'evaluate {name}', unit='img', file=sys.stderr):
        try:
            img = read_image(path)
        except InputError as err:
            skip(skipped, path, err)
            continue
        scored += 1
        if with_fid:
            scorers.inception.add(img)
        try:
            upscaled += score_image(img, path, stem, scorers, gt_images, values)
        except InputError as err:  # ground truth unreadable or of another size
            skip(skipped, path, err)
    record = method_record(name, folder, skipped, scored, values, scorers, upscaled)
    if gt_images is not None:
        record['missing_gt'] = sorted(set(images) - set(gt_images))
        record['missing_restored'] = sorted(set(gt_images) - set(images))
        for what, stems in (('without ground truth', record['missing_gt']),
                            ('of --gt missing from --restored', record['missing_restored'])):
            if stems:
                warn(f'{name}: {len(stems)} image(s) {what}: {", ".join(stems[:5])}{" ..." if len(stems) > 5 else ""}')
    return record


def add_fid(record, scorers):
    from dlst_plugin.metrics import fid as fid_metric
    from dlst_plugin.metrics.report import metric_entry
    mu_ref, sigma_ref, ref_info = scorers.reference
    mu, sigma = fid_metric.feature_statistics(scorers.inception.take_features())
    record['metrics']['fid'] = metric_entry(
        'fid', fid_metric.frechet_distance(mu, sigma, mu_ref, sigma_ref), scorers.inception.backend, IMAGE_FORMAT,
        fid_metric.FID_RESIZE_RULE, record['num_images'],
        reference=ref_info.get('dir') or ref_info.get('file'), reference_images=ref_info['num_images'],
        formula='symmetric eigendecomposition (= basicsr calculate_fid)')


def thumbnail_grid(settings, methods, method_images, gt_images):
    """(column labels, [(stem, [data URI or None per column])]) of the report's first ``settings.thumbnails``
    stems: the input (``settings.input``), each method, the ground truth."""
    from dlst_plugin.metrics.report import thumbnail_data_uri
    folders = []
    if settings.input:
        folders.append(('input', list_images(settings.input, '--input')[0]))
    folders += [(name, method_images[name]) for name, _ in methods]
    if gt_images is not None:
        folders.append(('ground truth', gt_images))
    stems = sorted(set().union(*method_images.values()))[:max(0, settings.thumbnails)]
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


def write_outputs(output, payload, settings, methods, method_images, gt_images):
    """Print the table and its notes; write ``output``/metrics.json and report.html."""
    from dlst_plugin.metrics.report import format_table, identical_notes, write_html, write_json
    print(format_table(payload['methods']))
    for line in identical_notes(payload['methods']):
        print(line)
    for key, reason in payload['unavailable'].items():
        print(f'{key}: unavailable ({reason})')
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'metrics.json', payload)
    write_html(out / 'report.html', payload, *thumbnail_grid(settings, methods, method_images, gt_images))
    print(f'wrote {out / "metrics.json"} and {out / "report.html"}')


def make_payload(settings, records, scorers, unavailable, command):
    from dlst_plugin._package import __version__
    payload = {'tool': 'dlst-evaluate', 'dlst_plugin_version': __version__,
               'created_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               'command': command, 'image_format': IMAGE_FORMAT,
               'fid_reference': scorers.reference[2] if scorers.reference else None,
               'ground_truth': str(settings.gt) if settings.gt else None,
               'input': str(settings.input) if settings.input else None,
               'unavailable': unavailable, 'methods': records}
    if scorers.inception is not None and settings.inception_random_init is not None:
        payload['notes'] = ['FID computed with a RANDOMLY INITIALISED Inception (--inception-random-init): test only']
    return payload


def evaluate(methods, output, settings=None, command=None):
    """Score ``methods`` ([(name, folder of restored faces)]) and write ``output``/metrics.json and report.html
    (replaced; nothing is written when no method is given, e.g. only reference statistics were saved).

    ``settings``: :class:`EvaluationSettings` (default: NIQE only, without reference or ground truth);
    ``command``: the command line recorded in metrics.json. Returns an :class:`Evaluation`; a setting that
    cannot be met raises ConfigError, a folder of no images or ground truth matching nothing InputError."""
    from dlst_plugin.metrics.paired import lpips_unavailable_reason
    settings = settings or EvaluationSettings()
    methods = check_methods(methods)
    check_settings(settings, methods)
    metrics, unavailable = choose_metrics(settings, lpips_unavailable_reason())
    gt_images = list_images(settings.gt, '--gt')[0] if settings.gt else None
    listings = {name: list_images(folder, f'--restored {name}') for name, folder in methods}
    if gt_images is not None:
        check_gt_matches(methods, listings, gt_images, settings.gt)
    scorers = build_scorers(settings, metrics)
    result = Evaluation()
    for name, folder in methods:
        record = evaluate_method(name, folder, listings[name], gt_images, scorers, 'fid' in metrics)
        if 'fid' in metrics:
            add_fid(record, scorers)
        result.records.append(record)
    result.failed = [s['file'] for r in result.records + ([scorers.reference[2]] if scorers.reference else [])
                     for s in r.get('skipped', []) if s.get('kind') == FAILED]
    if result.records:
        result.payload = make_payload(settings, result.records, scorers, unavailable, command)
        write_outputs(output, result.payload, settings, methods, {name: listings[name][0] for name, _ in methods},
                      gt_images)
    return result
