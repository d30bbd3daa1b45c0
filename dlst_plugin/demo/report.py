"""The demo's self-contained HTML report: pictures of every stage, training curves, NIQE, timings."""
import base64
import html
import json
from pathlib import Path

import cv2
import numpy as np

from dlst_plugin.demo.layout import REGION_METHODS, STAGES, experiment, fit_curve_file
from dlst_plugin.demo.plots import fit_curve, plot_png
from dlst_plugin.experiments.runs import training_curves
from dlst_plugin.fileio.images import list_images
from dlst_plugin.fileio.lmdb import is_lmdb_dir, lmdb_keys, read_lmdb_images
from dlst_plugin.options.file import read_option_file

CSS = ('body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 1em}img{max-width:100%}'
       'table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}'
       'th:first-child,td:first-child{text-align:left}.look{background:#f3f6fa;border-left:4px solid #4a78b0;'
       'padding:.4em .8em}.better{color:#1a7f37}.worse{color:#b42318}')


def img_tag(img, alt='', fmt='.jpg'):
    ok, buf = cv2.imencode(fmt, img, [cv2.IMWRITE_JPEG_QUALITY, 92] if fmt == '.jpg' else [])
    mime = 'jpeg' if fmt == '.jpg' else 'png'
    data = base64.b64encode(buf.tobytes()).decode() if ok else ''
    return f'<img alt="{html.escape(alt)}" src="data:image/{mime};base64,{data}">'


def png_tag(png_bytes, alt):
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png_bytes).decode()}">'


def as_bgr(im):
    return im if im.ndim == 3 else cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)


def tile(images, cols=8, size=96, pad=2):
    """Images (BGR uint8) -> one grid image, each scaled to ``size`` (pixels kept sharp when enlarged)."""
    if not images:
        return None
    cells = [cv2.copyMakeBorder(cv2.resize(as_bgr(im), (size, size), interpolation=cv2.INTER_NEAREST
                                           if im.shape[0] < size else cv2.INTER_AREA),
                                pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255)) for im in images]
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % cols)
    return np.concatenate([np.concatenate(cells[i:i + cols], 1) for i in range(0, len(cells), cols)], 0)


def spread(items, limit):
    """``limit`` items evenly spread over ``items`` (every source photo shows, not just the first)."""
    if len(items) <= limit:
        return list(items)
    return [items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else items[:1]


def folder_images(folder, limit=16):
    paths = [Path(path) for _, path in list_images(folder)] if Path(folder).is_dir() else []
    return [im for im in (cv2.imread(str(p)) for p in spread(paths, limit)) if im is not None]


def lmdb_images(path, limit=8):
    """Up to ``limit`` images of the LMDB ``path``, spread over its keys ([] before the LMDB exists)."""
    if not is_lmdb_dir(path):
        return []
    return list(read_lmdb_images(path, spread(lmdb_keys(path), limit)).values())


def newest_png(folder):
    pngs = sorted(Path(folder).rglob('*.png'), key=lambda p: p.stat().st_mtime) if Path(folder).is_dir() else []
    return cv2.imread(str(pngs[-1])) if pngs else None


def enlarged(img, factor=2):
    return None if img is None else cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def read_json(path):
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def section(title, look_for, body):
    return f'<h2>{html.escape(title)}</h2><p class="look"><b>What to look for:</b> {look_for}</p>{body}'


def picture(img, alt, fmt='.jpg'):
    return img_tag(img, alt, fmt) if img is not None else '<p><i>(nothing to show)</i></p>'


def curves_figure(curves, title):
    png = plot_png(curves, title)
    return png_tag(png, title) if png else '<p><i>(no loss lines in the log)</i></p>'


# --- the prior ---------------------------------------------------------------------------------------

def framed_samples(folder, detection, size=112):
    """The prior's samples enlarged, framed green where YuNet found a face and red where not."""
    images = [cv2.imread(str(p)) for p in sorted(Path(folder).glob('sample_*.png'))]
    scores = (detection or {}).get('scores', [0] * len(images))
    cells = []
    for im, score in zip(images, scores):
        cell = cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC)
        color = (60, 170, 40) if score > 0 else (40, 40, 220)
        cell = cv2.copyMakeBorder(cell, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=color)
        cv2.putText(cell, f'{score:.2f}' if score else 'none', (6, size + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
        cells.append(cell)
    return tile(cells, cols=8, size=size + 8, pad=2) if cells else None


def learning_rates(option_file):
    if not Path(option_file).is_file():
        return 'learning rates: see the option file'
    train = read_option_file(option_file)['train']
    return f'generator learning rate {train["optim_g"]["lr"]:g}, discriminator {train["optim_d"]["lr"]:g}'


def comparison_text(detection):
    comp = detection.get('comparison', {})
    parts = [f'in {v["faces_found"]} of {v["images"]} {what}' for key, what in (
        ('real_faces', 'of the demo\'s real HQ faces at this size'),
        ('random_generator', 'samples of the same generator randomly initialised (the demo before it had a prior)'))
        if (v := comp.get(key))]
    return f'For comparison, it finds one {" and ".join(parts)}.' if parts else ''


def prior_section(out):
    detection = read_json(out / 'prior' / 'samples' / 'detection.json')
    rate = ('<p><i>(no samples)</i></p>' if not detection else
            f'<p><b>YuNet finds a face in {detection["faces_found"]} of {detection["samples"]} samples '
            f'({100 * detection["rate"]:.0f} %)</b> (each sample upscaled to {detection["upscaled_to"]} px, '
            f'default score threshold; the score is under each face). {comparison_text(detection)}</p>')
    curves = fit_curve(fit_curve_file(out))
    body = (rate + picture(framed_samples(out / 'prior' / 'samples', detection), 'prior samples') +
            '<p>With three source photos the prior memorises them: its faces are the three people and blends of '
            'them, not new people. That is enough for the demo (its clean faces look like faces), and it is '
            'what a StyleGAN2 trained on a handful of images does. A StyleGAN2 learns faces from scratch in '
            'GPU-days, so the demo first <i>fits</i> the generator to one face per photo (a minute of CPU, '
            '<code>dlst_plugin/demo/prior.py</code>); BasicSR\'s <code>StyleGAN2Model</code> then trains on '
            'the HQ faces from there (the full-scale recipe, <code>options/train_stylegan2_prior.yml</code>, '
            'trains from scratch) and gives the discriminator that the degrader and the restorer start from.</p>'
            + curves_figure(curves, 'the fit: L1 of the generated blends (pixels in [-1, 1])')
            + curves_figure(training_curves(experiment(out, 'demo_prior')),
                            f'BasicSR StyleGAN2Model ({learning_rates(out / "options" / "demo_prior.yml")})'))
    return section('4. StyleGAN2 face prior', 'faces in the samples (green frames), the three people of the '
                   'sample photos; the fit\'s L1 falling; D(real) above D(fake) as the discriminator learns '
                   'to tell the fitted faces from the real ones.', body)


# --- restoration and NIQE ----------------------------------------------------------------------------

def method_values(metrics, name, key):
    for method in (metrics or {}).get('methods', []):
        if method['name'] == name and key in method['metrics']:
            return method['metrics'][key]
    return None


def niqe_keys(metrics):
    keys = {k for m in (metrics or {}).get('methods', []) for k in m['metrics'] if k.startswith('niqe')}
    return [k for k in ('niqe', 'niqe_pyiqa') if k in keys]


def region_rows(metrics):
    """[(photo, {key: (input, restored)})] of the per-photo face-region NIQE values."""
    keys = niqe_keys(metrics)
    per = {k: [method_values(metrics, n, k) for n in REGION_METHODS] for k in keys}
    photos = sorted(set().union(*[set((v or {}).get('per_image', {})) for pair in per.values() for v in pair]))
    rows = []
    for photo in photos:
        rows.append((photo, {k: tuple((v or {}).get('per_image', {}).get(photo) for v in per[k]) for k in keys}))
    return rows


def fmt(value):
    return '-' if value is None else f'{value:.2f}'


NIQE_LABELS = {'niqe': 'BasicSR', 'niqe_pyiqa': 'pyiqa'}


def mean_of(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def niqe_cells(pairs, keys):
    """Table cells: input and restored NIQE per backend (means over ``pairs``), restored coloured."""
    cells = ''
    for k in keys:
        before, after = mean_of(p[k][0] for p in pairs), mean_of(p[k][1] for p in pairs)
        cls = '' if None in (before, after) else (' class="better"' if after <= before else ' class="worse"')
        cells += f'<td>{fmt(before)}</td><td{cls}>{fmt(after)}</td>'
    return cells


def region_table(metrics):
    rows = region_rows(metrics)
    if not rows:
        return '<p><i>(not evaluated)</i></p>'
    keys = niqe_keys(metrics)
    head = '<tr><th>photo</th>' + ''.join(f'<th>input ({NIQE_LABELS[k]})</th><th>restored ({NIQE_LABELS[k]})</th>'
                                          for k in keys) + '<th>restored better</th></tr>'
    groups = {}
    for photo, values in rows:
        groups.setdefault(photo.rsplit('_', 1)[0], []).append(values)

    def better(pairs):
        scored = [v[keys[0]] for v in pairs if None not in v[keys[0]]]
        return f'{sum(after <= before for before, after in scored)} of {len(scored)}'
    summary = ''.join(f'<tr><td>{html.escape(src)} ({len(v)} variants)</td>{niqe_cells(v, keys)}<td>{better(v)}</td>'
                      f'</tr>' for src, v in groups.items())
    every = [v for _, v in rows]
    summary += f'<tr><td><b>mean, all {len(rows)} photos</b></td>{niqe_cells(every, keys)}<td><b>{better(every)}</b>' \
               '</td></tr>'
    detail = ''.join(f'<tr><td>{html.escape(photo)}</td>{niqe_cells([v], keys)}<td>{better([v])}</td></tr>'
                     for photo, v in rows)
    return ('<p>NIQE of the face region (a square twice the detector box: what the restorer pastes), input photo '
            'vs restored photo; lower is better, green where the restored face scores better. '
            f'{verdict(every, keys[0], better(every))}</p>'
            f'<table>{head}{summary}</table><details><summary>every photo</summary><table>{head}{detail}</table>'
            '</details>')


def verdict(pairs, key, better_count, tie=0.1):
    """One plain sentence: does the tiny restorer beat its input (mean NIQE, ``tie`` = about equal)?"""
    before, after = mean_of(p[key][0] for p in pairs), mean_of(p[key][1] for p in pairs)
    if before is None or after is None:
        return ''
    if after < before - tie:
        outcome = 'the restored faces score better than the input'
    elif after <= before + tie:
        outcome = 'the tiny restorer ties with its input: not blurrier, not better'
    else:
        outcome = 'the tiny restorer loses: its faces score worse than the input'
    return (f'<b>On average {outcome}</b> ({NIQE_LABELS[key]} NIQE {after:.2f} restored vs {before:.2f} input; '
            f'better in {better_count} photos).')


def aligned_table(metrics):
    keys = niqe_keys(metrics)
    if not keys:
        return '<p><i>(not evaluated)</i></p>'
    labels = {'niqe': 'NIQE (BasicSR)', 'niqe_pyiqa': 'NIQE (pyiqa)'}
    rows = ''
    for name in (m['name'] for m in metrics['methods']):
        vals = [method_values(metrics, name, k) for k in keys]
        count = next((v['num_images'] for v in vals if v), 0)
        rows += f'<tr><td>{html.escape(name)}</td>' + ''.join(f'<td>{fmt(v and v["value"])}</td>' for v in vals) + \
            f'<td>{count}</td></tr>'
    return (f'<table><tr><th>images</th>{"".join(f"<th>{labels[k]}</th>" for k in keys)}<th>count</th></tr>{rows}'
            '</table><p>Lower is better. Images under 192 px are upscaled (bicubic) before NIQE, the same rule for '
            'every row. Backends, parameters and per-image values: <a href="evaluation/report.html">'
            'evaluation/report.html</a>, <code>evaluation/metrics.json</code>.</p>')


def closeups(out, size=192):
    """Per photo: input face region | restored face region, enlarged with visible pixels."""
    cells = []
    for path in sorted((out / 'evaluation_regions' / 'input').glob('*.png'))[::3][:6]:
        after = cv2.imread(str(out / 'evaluation_regions' / 'restored' / path.name))
        if after is None:
            continue
        pair = [cv2.resize(im, (size, size), interpolation=cv2.INTER_NEAREST) for im in (cv2.imread(str(path)), after)]
        cell = np.concatenate([pair[0], np.full((size, 4, 3), 255, np.uint8), pair[1]], 1)
        cells.append(cv2.copyMakeBorder(cell, 0, 24, 8, 8, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
        cv2.putText(cells[-1], path.stem, (8, size + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if not cells:
        return None
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % 3)
    return np.concatenate([np.concatenate(cells[i:i + 3], 1) for i in range(0, len(cells), 3)], 0)


def side_by_side(images, height=192, per_row=4):
    """Images at one height, aspect kept (pixels visible), ``per_row`` to a row, rows padded to one width."""
    if not images:
        return None
    cells = [cv2.copyMakeBorder(cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height),
                                           interpolation=cv2.INTER_NEAREST), 2, 2, 2, 2, cv2.BORDER_CONSTANT,
                                value=(255, 255, 255)) for im in images]
    rows = [np.concatenate(cells[i:i + per_row], 1) for i in range(0, len(cells), per_row)]
    return stacked(rows, height + 4)


def stacked(images, height=240):
    """Images at one height (pixels visible), one under the other, padded to one width."""
    if not images:
        return None
    rows = [cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height), interpolation=cv2.INTER_NEAREST)
            for im in images]
    width = max(r.shape[1] for r in rows)
    return np.concatenate([cv2.copyMakeBorder(r, 0, 6, 0, width - r.shape[1], cv2.BORDER_CONSTANT,
                                              value=(255, 255, 255)) for r in rows], 0)


def restore_section(out, metrics):
    body = (picture(stacked(folder_images(out / 'restored' / 'cmp', 3)), 'input | restored photos') +
            '<p>Face regions, input | restored (enlarged, pixels visible):</p>' + picture(closeups(out), 'faces') +
            region_table(metrics))
    return section('8. Restored photos (dlst-restore)', 'the faces pasted back at about their own size (the '
                   'photos\' faces are 20-30 px wide, as real LQ faces in crowd photos; the restorer works at '
                   '64 px, so its faces are never enlarged); whether they are sharper than the input, by eye and by '
                   'the NIQE of the face regions, input vs restored; the seams of the pasted square and colour '
                   'on the gray photo, the tiny model\'s faults.', body)


# --- the page ----------------------------------------------------------------------------------------

def timings(out):
    rows, total = '', 0.0
    for stage in (s for s in STAGES if s != 'report'):
        marker = out / 'stages' / f'{stage}.done'
        if marker.is_file():
            lines = marker.read_text().splitlines()
            seconds = float(lines[0].split()[0])
            total += seconds
            rows += f'<tr><td>{stage}</td><td>{seconds:.1f}</td><td>{html.escape(" ".join(lines[1:2]))}</td></tr>'
    return section('10. Timings', 'where the minutes go (a stage done by an earlier run keeps its time).',
                   f'<table><tr><th>stage</th><th>seconds</th><th>machine</th></tr>{rows}'
                   f'<tr><td><b>total</b></td><td><b>{total:.0f}</b></td><td></td></tr></table>')


def build_report(out):
    out = Path(out)
    metrics = read_json(out / 'evaluation' / 'metrics.json')
    clean, degraded = lmdb_images(out / 'pairs' / 'clean.lmdb'), lmdb_images(out / 'pairs' / 'degraded.lmdb')
    sections = [
        section('1. In-the-wild photos', 'small faces (20-30 px) blurred, noisy and JPEG-blocky: a process the '
                'models never see, only its results (shown enlarged, pixels visible).',
                picture(side_by_side(folder_images(out / 'wild_photos', 8)), 'photos')),
        section('2. Real LQ faces (dlst-collect-lq-faces)', 'detected, cropped and aligned faces (eyes level, '
                'same place in every crop): the unpaired training data of the degrader (paper 3.2.1).',
                picture(tile(folder_images(out / 'real_lq')), 'real LQ faces')),
        section('3. HQ faces (the FFHQ stand-in)', 'the same people, clean and aligned: what the prior learns '
                'and the restorer\'s targets.', picture(tile(lmdb_images(out / 'hq.lmdb', 16)), 'HQ faces')),
        prior_section(out),
        section('5. Degrader training', 'in the grid (pairs of columns: clean | degraded), the clean faces are '
                'the prior\'s and stay fixed; the degraded ones start as copies and drift towards the look of '
                'the real LQ faces (blur, noise, colour); the L2 term rises from 0 as they drift.',
                picture(enlarged(newest_png(experiment(out, 'demo_dl') / 'visualization')), 'degrader grid')
                + curves_figure(training_curves(experiment(out, 'demo_dl')),
                                'degrader (DegradationLearningModel)')),
        section('6. Generated pairs (dlst-generate-pairs)', 'top row clean, bottom row degraded, same keys: the '
                'same face twice, the bottom one degraded.', picture(tile(clean + degraded, max(len(clean), 1)),
                                                                   'pairs')),
        section('7. Skip-Transformer training', 'the pixel loss falling over the first hundred iterations; the '
                'adversarial terms staying balanced (neither D output running away).',
                curves_figure(training_curves(experiment(out, 'demo_st')), 'restorer (SkipTransformerModel)')),
        restore_section(out, metrics),
        section('9. Evaluation (dlst-evaluate)', 'the two NIQE backends agreeing to a few percent; the restored '
                'rows against the input rows.', aligned_table(metrics)),
        timings(out),
    ]
    return ('<!doctype html><html><head><meta charset="utf-8"><title>dlst-demo report</title>'
            f'<style>{CSS}</style></head><body><h1>dlst-demo: the DL-ST pipeline on the sample photos</h1>'
            '<p><b>Tiny demo models</b> trained for minutes on a CPU on three photos: the pictures show every stage '
            'working, not the paper\'s quality. README.md has the full-scale commands.</p>'
            + ''.join(sections) + '</body></html>')
