"""LPIPS v0.1 (Zhang et al. 2018) in pure PyTorch, as a metric and as a training loss."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ._inputs import pair_to_8bit, unbatch
from .backbones import AlexNetFeatures, VGG16Features
from .weights import lpips_state_dict

_BACKBONES = {"alex": AlexNetFeatures, "vgg": VGG16Features}


def check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ValueError unless x and y are both (B, 3, H, W) tensors of the same shape."""
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: x is {tuple(x.shape)}, y is {tuple(y.shape)}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB batches, got {tuple(x.shape)}")


def _unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # LPIPS divides by (norm + eps), not max(norm, eps); kept so the values match exactly.
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, v0.1 linear heads, lower is more similar.

    Differentiable with respect to both inputs, so it can serve as a training loss; the
    network weights are frozen (``requires_grad`` False). Works for any size that survives
    the backbone's downsampling (>= 32 px is safe for both nets).

    Args:
        net: "alex" (the usual evaluation metric) or "vgg" (the usual training loss).

    Forward:
        x, y: (B, 3, H, W) float tensors, RGB in [0, 1].
        Returns a (B,) tensor of distances.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in _BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; expected 'alex' or 'vgg'")
        self.net_name = net
        self.net = _BACKBONES[net]()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.net.channels)
        # LPIPS' ScalingLayer, applied after mapping [0, 1] to [-1, 1]: ImageNet statistics
        # expressed on the [-1, 1] scale.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.load_state_dict(lpips_state_dict(net))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_pair(x, y)
        both = (torch.cat([x, y]) * 2 - 1 - self.shift) / self.scale
        total = 0
        for lin, f in zip(self.lins, self.net(both)):
            fx, fy = _unit_normalize(f).chunk(2)
            total = total + lin((fx - fy) ** 2).mean((1, 2, 3))
        return total


@lru_cache(maxsize=None)
def _cached_lpips(net: str, device: str) -> LPIPS:
    return LPIPS(net).to(device)


@torch.no_grad()
def lpips_distance(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, net: str = "alex"
) -> torch.Tensor | float:
    """LPIPS between two 8-bit RGB images, with a per-(net, device) cached model.

    Args:
        x, y: (H, W, 3) uint8 arrays, or (3, H, W) / (B, 3, H, W) tensors (uint8, or float
            in [0, 1], rounded to 8 bit first like :func:`samic.metrics.psnr`).
        net: "alex" or "vgg".
    Returns:
        float for one image, (B,) tensor for a batch. Use :class:`LPIPS` for gradients.
    """
    tx, ty, batched = pair_to_8bit(x, y)
    model = _cached_lpips(net, str(tx.device))
    return unbatch(model(tx.float() / 255, ty.float() / 255), batched)
