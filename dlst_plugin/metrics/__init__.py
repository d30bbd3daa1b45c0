"""Image-quality metrics (paper section 4: FID and NIQE; PSNR/SSIM/LPIPS with ground truth): the metrics
(``fid``, ``niqe``, ``paired``), how images are listed and read for them (``images``), the JSON and HTML
report (``report``), and the evaluation of folders of restored faces that ``dlst-evaluate``, the demo and
``dlst-table1`` run (``evaluation``).

Imported on demand only (``import dlst_plugin`` does not import it): FID needs torchvision's
Inception graph and NIQE scipy, which restoring or training never use.
"""
