"""Image-quality metrics: PSNR, MS-SSIM, LPIPS (Alex/VGG, v0.1) and DISTS.

Functions (``psnr``, ``ms_ssim``, ``lpips_distance``, ``dists``) are evaluation metrics on
8-bit RGB: they take (H, W, 3) uint8 arrays or (3, H, W) / (B, 3, H, W) tensors (uint8, or
float in [0, 1] rounded to 8 bit), return a float per image or a (B,) tensor per batch, and
compute no gradients. The modules ``LPIPS`` and ``DISTS`` take (B, 3, H, W) float tensors in
[0, 1] as they are and are differentiable, for use as training losses. See docs/metrics.md.
"""

from .classical import ms_ssim, psnr
from .dists import DISTS, dists
from .lpips import LPIPS, lpips_distance

__all__ = ["psnr", "ms_ssim", "LPIPS", "lpips_distance", "DISTS", "dists"]
