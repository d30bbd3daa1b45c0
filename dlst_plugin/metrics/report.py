"""Evaluation results as a Table-2-like text table, a JSON record and a self-contained HTML page.

Every metric value is stored with the backend, image format and resize rule that produced it
(``metric_entry``), so a number in the report can be reproduced on its own. metrics.json is strict JSON:
an infinite value (the PSNR of an image equal to its ground truth, and then its method's mean) is written as
the string ``"inf"``, a NaN as null; the table and the HTML page show ``inf``.
"""
import base64
import html
import json
import math

import cv2

from dlst_plugin.fileio.atomic import atomic_write_text

# metric key -> (column label, lower is better); the order of the table's columns
METRIC_COLUMNS = {
    'fid': ('FID', True),
    'niqe': ('NIQE', True),
    'niqe_pyiqa': ('NIQE (pyiqa)', True),
    'psnr': ('PSNR', False),
    'ssim': ('SSIM', False),
    'lpips': ('LPIPS', True),
}
THUMBNAIL_HEIGHT = 128


def metric_entry(key, value, backend, image_format, resize, num_images, per_image=None, **extra):
    """One metric value with how it was computed (the JSON layout of every number)."""
    entry = {'value': value, 'lower_is_better': METRIC_COLUMNS[key][1], 'backend': backend,
             'image_format': image_format, 'resize': resize, 'num_images': num_images}
    entry.update(extra)
    if per_image is not None:
        entry['per_image'] = per_image
    return entry


def table_columns(methods):
    present = {key for method in methods for key in method['metrics']}
    return [key for key in METRIC_COLUMNS if key in present]


def _format_value(entry):
    value = entry.get('value') if entry else None
    return '-' if value is None else f'{value:.4f}' if abs(value) < 10 else f'{value:.2f}'


def format_table(methods):
    """Plain-text table, one row per method (like the paper's Table 2 for one test set)."""
    columns = table_columns(methods)
    header = ['method'] + [f'{METRIC_COLUMNS[k][0]} {"v" if METRIC_COLUMNS[k][1] else "^"}' for k in columns]
    rows = [[m['name']] + [_format_value(m['metrics'].get(k)) for k in columns] for m in methods]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines.append('(v: lower is better, ^: higher is better; n images per method in metrics.json)')
    return '\n'.join(lines)


def identical_notes(methods):
    """A line per method whose mean PSNR is infinite: how many images equal their ground truth, and the mean
    of the others."""
    lines = []
    for method in methods:
        entry = method['metrics'].get('psnr')
        if entry and entry.get('identical_images'):
            rest, finite_mean = entry['num_images'] - entry['identical_images'], entry['finite_mean']
            finite = '' if finite_mean is None else f'; mean of the other {rest}: {finite_mean:.2f} dB'
            lines.append(f'note: {method["name"]}: {entry["identical_images"]} of {entry["num_images"]} image(s) equal '
                         f'their ground truth (PSNR inf), so the mean PSNR is inf, as BasicSR averages it{finite}')
    return lines


def json_safe(value):
    """``value`` with every float JSON cannot hold replaced: +-inf by the strings ``"inf"`` / ``"-inf"``
    (``float()`` reads them back), NaN by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ('inf' if value > 0 else '-inf')
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path, payload):
    """metrics.json as strict JSON (no ``Infinity`` / ``NaN`` tokens, which JSON lacks): see :func:`json_safe`."""
    atomic_write_text(path, json.dumps(json_safe(payload), indent=2, sort_keys=False, allow_nan=False) + '\n')


def thumbnail_data_uri(img_bgr, height=THUMBNAIL_HEIGHT, quality=85):
    """``data:image/jpeg;base64,...`` of ``img_bgr`` scaled to ``height`` px (the HTML holds its images)."""
    h, w = img_bgr.shape[:2]
    width = max(1, round(w * height / h))
    interpolation = cv2.INTER_AREA if height < h else cv2.INTER_CUBIC
    thumb = cv2.resize(img_bgr, (width, height), interpolation=interpolation)
    ok, buf = cv2.imencode('.jpg', thumb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('JPEG encoding of a thumbnail failed')
    return 'data:image/jpeg;base64,' + base64.b64encode(buf.tobytes()).decode('ascii')


_STYLE = ('body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}'
          'td,th{border:1px solid #bbb;padding:4px 8px;text-align:center}td.l,th.l{text-align:left}'
          'img{display:block;margin:auto}.small{font-size:85%;color:#444}')


def _html_metric_table(methods):
    esc = html.escape
    columns = table_columns(methods)
    head = ''.join(f'<th>{esc(METRIC_COLUMNS[k][0])} {"&darr;" if METRIC_COLUMNS[k][1] else "&uarr;"}</th>'
                   for k in columns)
    rows = []
    for m in methods:
        cells = ''.join(f'<td>{esc(_format_value(m["metrics"].get(k)))}</td>' for k in columns)
        rows.append(f'<tr><td class="l">{esc(m["name"])}</td>{cells}<td>{m["num_images"]}</td></tr>')
    return (f'<table class="metrics"><tr><th class="l">method</th>{head}<th>images</th></tr>'
            + ''.join(rows) + '</table>')


def _html_provenance(methods):
    esc = html.escape
    rows = []
    for m in methods:
        for key, entry in m['metrics'].items():
            cells = [esc(m['name']), esc(METRIC_COLUMNS[key][0]), esc(str(entry['backend'])),
                     esc(entry['image_format']), esc(entry['resize']), entry['num_images']]
            rows.append('<tr>' + ''.join(f'<td class="l">{cell}</td>' for cell in cells) + '</tr>')
    return ('<table class="small"><tr><th>method</th><th>metric</th><th>backend</th><th>image format</th>'
            '<th>resize rule</th><th>images</th></tr>' + ''.join(rows) + '</table>')


def _html_thumbnails(columns, rows):
    """``columns``: header names; ``rows``: (stem, [data URI or None per column])."""
    esc = html.escape
    head = ''.join(f'<th>{esc(c)}</th>' for c in columns)
    body = []
    for stem, uris in rows:
        cells = ''.join(f'<td><img src="{uri}" alt="{esc(col)} {esc(stem)}"></td>' if uri else '<td>missing</td>'
                        for col, uri in zip(columns, uris))
        body.append(f'<tr><td class="l">{esc(stem)}</td>{cells}</tr>')
    return f'<table class="thumbs"><tr><th class="l">image</th>{head}</tr>' + ''.join(body) + '</table>'


def write_html(path, payload, thumbnail_columns, thumbnail_rows):
    """Self-contained report: metric table, how each number was computed, side-by-side thumbnails."""
    esc = html.escape
    methods = payload['methods']
    notes = ''.join(f'<li>{esc(k)}: {esc(v)}</li>' for k, v in payload.get('unavailable', {}).items())
    notes += ''.join(f'<li>{esc(n)}</li>' for n in payload.get('notes', []))
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>dlst-evaluate report</title>'
        f'<style>{_STYLE}</style></head><body><h1>dlst-evaluate report</h1>'
        f'<p class="small">{esc(payload["created_utc"])} &middot; dlst-plugin {esc(payload["dlst_plugin_version"])}'
        f' &middot; <code>{esc(" ".join(payload["command"]))}</code></p>'
        f'<h2>Metrics</h2>{_html_metric_table(methods)}'
        + (f'<ul class="small">{notes}</ul>' if notes else '')
        + f'<h2>How each number was computed</h2>{_html_provenance(methods)}'
        f'<h2>Side by side</h2>{_html_thumbnails(thumbnail_columns, thumbnail_rows)}</body></html>\n')
    atomic_write_text(path, page)
