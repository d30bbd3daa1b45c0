"""Training curves of the demo's report (BasicSR's logs parsed by :mod:`dlst_plugin.experiments.runs`), drawn with
matplotlib as PNG.

Each training run gets one figure with one panel per kind of value (generator terms, discriminator
terms, discriminator outputs), iteration on the x axis, a log y axis where the values are positive and
span more than a decade, the raw values faint and a moving average on top, and the legend under the
panel, clear of the lines.
"""
import io
import json
from pathlib import Path

import numpy as np

# panels: (title, y label, keys in plotting order); a key goes to the first panel that lists it
PANELS = (
    ('generator', 'loss (unitless)', ('l_g_pix', 'l_g_percep', 'l_g_gan', 'l_g', 'l_g_path', 'path_length')),
    ('discriminator', 'loss (unitless)', ('l_d_real', 'l_d_fake', 'l_d_r1', 'l_d')),
    ('discriminator outputs', 'mean D output (logit)', ('out_d_real', 'out_d_fake', 'real_score', 'fake_score')),
    ('generator fit', 'mean abs. error (pixels in [-1, 1])', ('fit L1', )),
)
LABELS = {
    'l_g_pix': 'G pixel (L2)', 'l_g_percep': 'G perceptual (VGG)', 'l_g_gan': 'G adversarial', 'l_g': 'G adversarial',
    'l_g_path': 'G path-length reg.', 'path_length': 'path length', 'l_d_real': 'D on real', 'l_d_fake': 'D on fake',
    'l_d_r1': 'D R1 penalty', 'l_d': 'D real + fake', 'out_d_real': 'D(real)', 'out_d_fake': 'D(fake)',
    'real_score': 'D(real)', 'fake_score': 'D(fake)', 'fit L1': 'L1 to the blended faces',
}


def fit_curve(curve_file):
    """{'fit L1': [(step, L1)]} from the curve the prior's fit wrote (JSON; {} when there is none)."""
    path = Path(curve_file)
    points = [(int(step), float(value)) for step, value in json.loads(path.read_text())] if path.is_file() else []
    return {'fit L1': points} if points else {}


def smooth(values, window):
    """Centred moving average (edges use the points there are)."""
    if window <= 1 or len(values) < 3:
        return np.asarray(values, float)
    kernel = np.ones(window)
    padded = np.convolve(values, kernel, mode='same')
    counts = np.convolve(np.ones(len(values)), kernel, mode='same')
    return padded / counts


def wants_log_scale(series):
    values = np.concatenate([np.asarray([v for _, v in pts], float) for pts in series.values()])
    values = values[np.isfinite(values)]
    return values.size > 0 and values.min() > 0 and values.max() / values.min() > 10


def group_panels(curves):
    """[(title, y label, {key: points})] for the panels that have data."""
    taken, panels = set(), []
    for title, ylabel, keys in PANELS:
        series = {k: curves[k] for k in keys if k in curves and k not in taken}
        taken.update(series)
        if series:
            panels.append((title, ylabel, series))
    rest = {k: v for k, v in curves.items() if k not in taken and len({val for _, val in v}) > 1}
    if rest:
        panels.append(('other', 'value', rest))
    return panels


def draw_panel(ax, title, ylabel, series):
    import matplotlib.pyplot as plt
    colors = plt.get_cmap('tab10').colors
    log = wants_log_scale(series)
    for k, (name, pts) in enumerate(series.items()):
        its = np.array([i for i, _ in pts])
        vals = np.array([v for _, v in pts], float)
        color = colors[k % len(colors)]
        label = LABELS.get(name, name)
        if len(vals) < 6:  # a lazily applied term (R1, path length) is logged at few iterations
            ax.plot(its, vals, color=color, linestyle=':', marker='o', markersize=4, label=label + ' (sparse)')
            continue
        ax.plot(its, vals, color=color, alpha=0.25, linewidth=1)
        ax.plot(its, smooth(vals, max(1, min(9, len(vals) // 8))), color=color, linewidth=1.8, label=label)
    if log:
        ax.set_yscale('log')
    ax.set_title(title + (' (log scale)' if log else ''), fontsize=10)
    ax.set_xlabel('fit step' if 'fit L1' in series else 'iteration')
    ax.set_ylabel(ylabel)
    ax.grid(True, which='both', alpha=0.3)
    ncol = min(3, len(series))
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.22), ncol=ncol, fontsize=8, frameon=False)


def plot_png(curves, title):
    """PNG bytes of one figure (a panel per kind of value), or None without data."""
    panels = group_panels({k: v for k, v in curves.items() if v})
    if not panels:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (panel_title, ylabel, series) in zip(axes[0], panels):
        draw_panel(ax, panel_title, ylabel, series)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90, bbox_inches='tight')  # 'tight' keeps the legends under the panels
    plt.close(fig)
    return buf.getvalue()
