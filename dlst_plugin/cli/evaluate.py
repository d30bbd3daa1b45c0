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
import sys
from pathlib import Path

from dlst_plugin.cli.common import (
    add_device_argument,
    add_weights_dir_argument,
    make_parser,
    run_command,
    settings_from_args,
)
from dlst_plugin.errors import EXIT_INPUT, ConfigError
from dlst_plugin.metrics.evaluation import METRICS, EvaluationSettings, evaluate

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
    add_weights_dir_argument(p, "FID's Inception weights are looked for")
    p.add_argument('--inception-random-init', type=int, metavar='SEED',
                   help='TESTS ONLY: a randomly initialised Inception; its FID means nothing')
    p.add_argument('--batch-size', type=int, default=16, help='images per Inception forward pass')
    add_device_argument(p, 'the Inception (FID) and LPIPS networks')
    p.add_argument('-o', '--output', '--out', dest='output', default='evaluation',
                   help='folder for metrics.json and report.html, which are replaced (--out: old spelling)')
    p.add_argument('--thumbnails', type=int, default=12, help='image rows shown side by side in the HTML report')
    return p


def parse_restored(entries):
    """[(name, Path)] from ``NAME=DIR`` / ``DIR`` entries (two of one name: the library's
    :func:`~dlst_plugin.metrics.evaluation.check_methods` refuses them)."""
    methods = []
    for entry in entries:
        name, sep, folder = entry.partition('=')
        if not sep:
            name, folder = Path(entry.rstrip('/\\')).name or entry, entry
        if not name or not folder:
            raise ConfigError(f'--restored {entry!r}: expected NAME=DIR or DIR')
        methods.append((name, Path(folder)))
    return methods


def evaluation_settings(args):
    """The :class:`~dlst_plugin.metrics.evaluation.EvaluationSettings` of parsed ``dlst-evaluate`` flags (also
    what ``dlst-table1 evaluate --evaluate-args`` passes on)."""
    metrics = [m for m in args.metrics.split(',') if m.strip()] if args.metrics else None
    return settings_from_args(EvaluationSettings, args, metrics=metrics)


def run(args, argv):
    result = evaluate(parse_restored(args.restored), args.output, evaluation_settings(args),
                      command=['dlst-evaluate'] + list(argv))
    if result.failed:
        print(f'{len(result.failed)} image(s) could not be scored and were left out: {", ".join(result.failed[:5])}'
              + (' ...' if len(result.failed) > 5 else ''), file=sys.stderr)
        return EXIT_INPUT
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(build_parser(), lambda args: run(args, argv), argv,
                       interrupted='nothing was written (metrics.json and report.html are written at the end)')


if __name__ == '__main__':
    sys.exit(main())
