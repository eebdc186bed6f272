"""PSNR and MS-SSIM on 8-bit RGB images (evaluation metrics, no gradients).

Both accept the inputs described in :func:`samic.metrics._inputs.to_8bit` (uint8 arrays,
or float tensors in [0, 1] that are rounded to 8 bit first) and compute in float64 on the
0..255 scale. A single image gives a Python float, a batch a (B,) float64 tensor.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._inputs import pair_to_8bit, unbatch

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN, _SIGMA = 11, 1.5
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_TAPS = [math.exp(-((k - _WIN // 2) ** 2) / (2 * _SIGMA**2)) for k in range(_WIN)]
_GAUSS = [w / math.fsum(_TAPS) for w in _TAPS]  # float64 weights of the normalized window


def psnr(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> torch.Tensor | float:
    """Peak signal-to-noise ratio in dB, 10 log10(255^2 / MSE), MSE over all pixels and channels.

    Args:
        x, y: (H, W, 3) uint8 arrays, or (3, H, W) / (B, 3, H, W) tensors (uint8, or float
            in [0, 1], which is rounded to 8 bit).
    Returns:
        float for one image, (B,) tensor of per-image PSNR for a batch; ``inf`` when equal.
    """
    tx, ty, batched = pair_to_8bit(x, y)
    mse = (tx - ty).pow(2).flatten(1).mean(1)
    return unbatch(10.0 * torch.log10(255.0**2 / mse), batched)


def _gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 11-tap Gaussian (sigma 1.5), 'valid' borders: (N, C, H, W) -> (N, C, H-10, W-10)."""
    # Shifted multiply-adds: several times faster on CPU than grouped float64 convolutions.
    for dim in (2, 3):
        n = x.shape[dim] - _WIN + 1
        out = x.narrow(dim, 0, n) * _GAUSS[0]
        for k in range(1, _WIN):
            out.add_(x.narrow(dim, k, n), alpha=_GAUSS[k])
        x = out
    return x


def _ssim_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per channel, each (B, C)."""
    # One blur call for the five local moments.
    mu_x, mu_y, xx, yy, xy = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], 1)).chunk(5, 1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs = (2 * cov + _C2) / (var_x + var_y + _C2)
    luminance = (2 * mu_x * mu_y + _C1) / (mu_x**2 + mu_y**2 + _C1)
    return (luminance * cs).mean((2, 3)), cs.mean((2, 3))


def _downsample(x: torch.Tensor) -> torch.Tensor:
    # 2x2 mean, stride 2. Odd sizes get a zero row/column of padding that counts in the mean,
    # as in pytorch-msssim (the implementation CompressAI-based papers report with).
    return F.avg_pool2d(x, 2, stride=2, padding=(x.shape[2] % 2, x.shape[3] % 2))


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for an image of this size (5 unless it is small).

    A scale is usable while its smaller side is at least the 11-pixel window. Images with a
    smaller side of at least 161 px (161 -> 81 -> 41 -> 21 -> 11) get all 5 scales, as in
    Wang et al.; smaller images use the first M usable scales with the first M weights
    rescaled to sum to 1. Below 11 px MS-SSIM is undefined.
    """
    side, scales = min(height, width), 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= _WIN:
        scales += 1
        side = math.ceil(side / 2)
    return scales


def ms_ssim(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> torch.Tensor | float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) on 8-bit RGB, in [0, 1] (1 when equal).

    Standard settings: Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255,
    weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Computed per RGB channel and averaged
    over channels; negative per-scale terms are clipped to 0 before the weighted product.
    Images whose smaller side is below 161 px use fewer scales (see :func:`ms_ssim_scales`).

    Args:
        x, y: as for :func:`psnr`; both sides at least 11 px.
    Returns:
        float for one image, (B,) tensor for a batch.
    """
    tx, ty, batched = pair_to_8bit(x, y)
    scales = ms_ssim_scales(*tx.shape[-2:])
    if scales == 0:
        raise ValueError(f"ms_ssim needs images of at least {_WIN}x{_WIN} px, got {tuple(tx.shape[-2:])}")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=tx.dtype, device=tx.device)
    if scales < len(MS_SSIM_WEIGHTS):  # the published 5 weights (sum 1.0001) are used as is
        weights = weights / weights.sum()

    terms = []
    for scale in range(scales):
        ssim, cs = _ssim_terms(tx, ty)
        if scale == scales - 1:
            terms.append(ssim.clamp_min(0))  # full SSIM (with luminance) at the coarsest scale
        else:
            terms.append(cs.clamp_min(0))
            tx, ty = _downsample(tx), _downsample(ty)
    per_channel = torch.prod(torch.stack(terms, -1) ** weights, -1)  # (B, C)
    return unbatch(per_channel.mean(1), batched)
