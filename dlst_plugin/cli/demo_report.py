"""The demo's self-contained HTML report: pictures of every stage and the training loss curves."""
import base64
import html
import re
from pathlib import Path

import cv2
import numpy as np

from dlst_plugin.image_files import is_image_file

LOSS_LINE = re.compile(r'iter:\s*([\d,]+).*?\]\s*(?:\[eta:[^\]]*\])?\s*(.*)$')
LOSS_ITEM = re.compile(r'(l_[\w]+|loss[\w]*):\s*([-+\d.eE]+)')


def img_tag(img, width=None, alt=''):
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    style = f' style="width:{width}px"' if width else ''
    data = base64.b64encode(buf.tobytes()).decode() if ok else ''
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/jpeg;base64,{data}">'


def tile(images, cols=8, size=96):
    """Images (BGR uint8) -> one grid image, each resized to ``size``."""
    if not images:
        return None
    cells = [cv2.resize(im if im.ndim == 3 else cv2.cvtColor(im, cv2.COLOR_GRAY2BGR), (size, size),
                        interpolation=cv2.INTER_NEAREST if im.shape[0] < size else cv2.INTER_AREA) for im in images]
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % cols)
    rows = [np.concatenate(cells[i:i + cols], 1) for i in range(0, len(cells), cols)]
    return np.concatenate(rows, 0)


def folder_images(folder, limit=16):
    paths = sorted(p for p in Path(folder).rglob('*') if is_image_file(p))[:limit]
    return [im for im in (cv2.imread(str(p)) for p in paths) if im is not None]


def lmdb_images(path, limit=8):
    import lmdb
    if not (Path(path) / 'data.mdb').is_file():
        return []
    keys = [line.split(' ')[0].rsplit('.', 1)[0] for line in (Path(path) / 'meta_info.txt').read_text().splitlines()]
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        images = [cv2.imdecode(np.frombuffer(txn.get(k.encode()), np.uint8), cv2.IMREAD_COLOR) for k in keys[:limit]]
    env.close()
    return images


def loss_curves(log_dir):
    """{loss name: [(iter, value)]} from the newest BasicSR training log in ``log_dir``."""
    logs = sorted(Path(log_dir).glob('train_*.log'))
    curves = {}
    for line in logs[-1].read_text(errors='replace').splitlines() if logs else []:
        m = LOSS_LINE.search(line)
        if not m or 'l_' not in line:
            continue
        it = int(m.group(1).replace(',', ''))
        for name, value in LOSS_ITEM.findall(m.group(2)):
            curves.setdefault(name, []).append((it, float(value)))
    return curves


def svg_curves(curves, width=520, height=200):
    """Inline SVG line chart, one polyline per loss, each scaled to its own range."""
    if not curves:
        return '<p>(no loss lines in the log)</p>'
    colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf']
    max_it = max(it for pts in curves.values() for it, _ in pts) or 1
    parts = [f'<svg width="{width}" height="{height + 20 * ((len(curves) + 3) // 4)}" '
             f'style="background:#fff;border:1px solid #ccc">']
    for k, (name, pts) in enumerate(sorted(curves.items())):
        vals = [v for _, v in pts]
        lo, hi = min(vals), max(vals)
        span = (hi - lo) or 1.0
        poly = ' '.join(f'{5 + (width - 10) * it / max_it:.1f},{5 + (height - 10) * (1 - (v - lo) / span):.1f}'
                        for it, v in pts)
        c = colors[k % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{poly}"/>')
        parts.append(f'<text x="{5 + 130 * (k % 4)}" y="{height + 15 + 20 * (k // 4)}" font-size="11" fill="{c}">'
                     f'{html.escape(name)} {lo:.3g}..{hi:.3g}</text>')
    parts.append('</svg>')
    return ''.join(parts)


def metrics_table(path):
    """The demo's metric table from dlst-evaluate's metrics.json, with a link to its full report."""
    import json
    if not Path(path).is_file():
        return '<p><i>(not evaluated)</i></p>'
    methods = json.loads(Path(path).read_text())['methods']
    names = sorted({m for method in methods for m in method['metrics']})
    rows = ''.join('<tr><td>' + html.escape(method['name']) + '</td>' + ''.join(
        f'<td>{method["metrics"][m]["value"]:.2f}</td>' if m in method['metrics'] else '<td>-</td>' for m in names)
                   + f'<td>{method["num_images"]}</td></tr>' for method in methods)
    head = ''.join(f'<th>{html.escape(m.upper())}</th>' for m in names)
    return (f'<table border="1" cellpadding="4"><tr><th>faces</th>{head}<th>images</th></tr>{rows}</table>'
            '<p>Lower NIQE is better. Backends, resize rules and per-image values: '
            '<a href="evaluation/report.html">evaluation/report.html</a>, <code>evaluation/metrics.json</code>.</p>')


def newest_png(folder):
    pngs = sorted(Path(folder).rglob('*.png'), key=lambda p: p.stat().st_mtime) if Path(folder).is_dir() else []
    return cv2.imread(str(pngs[-1])) if pngs else None


def build_report(out):
    out = Path(out)
    sections = []

    def section(title, text, image=None, extra=''):
        pic = img_tag(image, alt=title) if image is not None else '<p><i>(nothing to show)</i></p>'
        sections.append(f'<h2>{html.escape(title)}</h2><p>{text}</p>{pic}{extra}')

    section('1. In-the-wild photos', 'Sample photos rescaled and degraded by a process the models never see '
            '(blur, noise, strong JPEG).', tile(folder_images(out / 'wild_photos', 8), cols=4, size=192))
    section('2. Real LQ faces (dlst-collect-lq-faces)', 'Detected, cropped, aligned: the unpaired training data '
            'of the degrader (paper 3.2.1).', tile(folder_images(out / 'real_lq')))
    section('3. HQ faces (the FFHQ stand-in)', 'Aligned faces from the clean photos, stored as an LMDB.',
            tile(lmdb_images(out / 'hq.lmdb', 16)))
    section('4. Degrader training', 'Validation grid of the coupled StyleGAN2: clean (red network) | degraded '
            '(green network). Random initialisation: the clean network draws textures, not faces.',
            newest_png(out / 'experiments' / 'demo_dl' / 'visualization'),
            svg_curves(loss_curves(out / 'experiments' / 'demo_dl')))
    clean, degraded = lmdb_images(out / 'pairs' / 'clean.lmdb'), lmdb_images(out / 'pairs' / 'degraded.lmdb')
    section('5. Generated pairs (dlst-generate-pairs)', 'Top: clean; bottom: degraded, same keys.',
            tile(clean + degraded, cols=max(len(clean), 1)))
    section('6. Skip-Transformer training', 'Loss curves of the restorer on the second-order set.', None,
            svg_curves(loss_curves(out / 'experiments' / 'demo_st')))
    sections[-1] = sections[-1].replace('<p><i>(nothing to show)</i></p>', '')
    section('7. Restored photos (dlst-restore)', 'In-the-wild photo | restored, faces pasted back.',
            tile(folder_images(out / 'restored' / 'cmp', 4), cols=1, size=512)
            if (out / 'restored' / 'cmp').is_dir() else tile(folder_images(out / 'restored' / 'restored_imgs', 4),
                                                               cols=2, size=384))
    sections.append('<h2>8. Evaluation (dlst-evaluate)</h2>' + metrics_table(out / 'evaluation' / 'metrics.json'))
    return ('<!doctype html><html><head><meta charset="utf-8"><title>dlst-demo report</title>'
            '<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}</style></head>'
            '<body><h1>dlst-demo: the DL-ST pipeline on the sample photos</h1>'
            '<p><b>Tiny, randomly initialised demo models</b> trained for minutes on a CPU: the pictures show '
            'every stage working, not the paper\'s quality. README.md has the full-scale commands.</p>'
            + ''.join(sections) + '</body></html>')
