"""Image-quality metrics for ``dlst-evaluate`` (paper section 4: FID and NIQE; PSNR/SSIM with ground truth).

Imported on demand only (``import dlst_plugin`` does not import it): FID needs torchvision's
Inception graph and NIQE scipy, which restoring or training never use.
"""
