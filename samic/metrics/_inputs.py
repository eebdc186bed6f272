"""Input handling shared by the functional metrics (psnr, ms_ssim, lpips_distance, dists)."""

from __future__ import annotations

import numpy as np
import torch

def to_8bit(x: np.ndarray | torch.Tensor, name: str = "x") -> tuple[torch.Tensor, bool]:
    """Convert an image or batch to float64 8-bit values, laid out (B, 3, H, W).

    Accepted inputs:
      * numpy uint8, (H, W, 3) or (B, H, W, 3);
      * torch uint8, (3, H, W) or (B, 3, H, W);
      * torch floating point in [0, 1], (3, H, W) or (B, 3, H, W): clamped to [0, 1] and
        rounded to the nearest of the 256 levels, i.e. ``round(255 * x)``, so a float
        reconstruction is scored exactly as the PNG it would be saved as.

    Returns the (B, 3, H, W) float64 tensor with integer values in [0, 255] and whether the
    input had a batch dimension.
    """
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise ValueError(f"{name}: numpy input must be uint8 (H, W, 3), got {x.dtype}")
        if x.ndim not in (3, 4):
            raise ValueError(f"{name}: expected (H, W, 3) or (B, H, W, 3), got shape {x.shape}")
        # (a writable copy only when needed: decoded images may be read-only views)
        t = torch.from_numpy(np.require(x, requirements=("C", "W"))).movedim(-1, -3)
    elif isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        raise ValueError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")

    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        layout = "(H, W, 3)" if isinstance(x, np.ndarray) else "(3, H, W) or (B, 3, H, W)"
        raise ValueError(f"{name}: expected an RGB image {layout}, got shape {tuple(x.shape)}")
    batched = t.ndim == 4
    t = t if batched else t[None]
    if t.dtype == torch.uint8:
        return t.double(), batched
    if not t.is_floating_point():
        raise ValueError(f"{name}: tensor must be uint8 or floating point in [0, 1], got {t.dtype}")
    return torch.round(t.double().clamp(0.0, 1.0) * 255.0), batched


def pair_to_8bit(x, y) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """:func:`to_8bit` for both images, checking that their shapes agree."""
    tx, batched_x = to_8bit(x, "x")
    ty, batched_y = to_8bit(y, "y")
    if tx.shape != ty.shape or batched_x != batched_y:
        raise ValueError(f"shape mismatch: x is {tuple(x.shape)}, y is {tuple(y.shape)}")
    return tx, ty.to(tx.device), batched_x


def unbatch(values: torch.Tensor, batched: bool) -> torch.Tensor | float:
    """(B,) per-image values, or a Python float when the input was a single image."""
    return values if batched else values.item()
