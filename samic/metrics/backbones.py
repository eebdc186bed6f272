"""ImageNet feature extractors for LPIPS and DISTS (torchvision layouts, no torchvision).

Both return the ReLU activations LPIPS taps, as a list of five (B, C_k, H_k, W_k) tensors:
AlexNet relu1..relu5 (C = 64, 192, 384, 256, 256) and VGG16 relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 (C = 64, 128, 256, 512, 512). Parameter names are ``convs.{i}.weight``
and ``convs.{i}.bias``, numbered in network order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AlexNetFeatures(nn.Module):
    """The convolutional part of torchvision's AlexNet up to relu5."""

    channels = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1),
        ])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):  # AlexNet max-pools (3x3, stride 2) only after conv1 and conv2
                x = F.max_pool2d(x, 3, stride=2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats


class L2Pool(nn.Module):
    """DISTS' anti-aliased replacement for 2x2 max-pooling: sqrt(blur(x^2)) at stride 2.

    The blur is the separable 3-tap Hann window [0.5, 1, 0.5] (normalized), zero padding 1,
    so an (H, W) map becomes (floor((H-1)/2)+1, floor((W-1)/2)+1).
    """

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([0.5, 1.0, 0.5])
        kernel = torch.outer(taps, taps)
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 3, 3)
        out = F.conv2d(x * x, weight, stride=2, padding=1, groups=channels)
        return torch.sqrt(out + 1e-12)  # the epsilon keeps the gradient finite at zero


class VGG16Features(nn.Module):
    """torchvision's VGG16 ``features`` up to relu5_3.

    Args:
        pool: "max" for the standard 2x2 max-pooling (LPIPS), "l2" for :class:`L2Pool` (DISTS).
    """

    channels = (64, 128, 256, 512, 512)
    _blocks = (2, 2, 3, 3, 3)  # 3x3 convolutions per block, each followed by a ReLU

    def __init__(self, pool: str = "max") -> None:
        super().__init__()
        if pool not in ("max", "l2"):
            raise ValueError(f"pool must be 'max' or 'l2', got {pool!r}")
        convs, c_in = [], 3
        for c_out, n in zip(self.channels, self._blocks):
            for _ in range(n):
                convs.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.pool = L2Pool() if pool == "l2" else nn.MaxPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, convs = [], iter(self.convs)
        for block, n in enumerate(self._blocks):
            if block > 0:
                x = self.pool(x)
            for _ in range(n):
                x = F.relu(next(convs)(x))
            feats.append(x)  # the last ReLU of each block
        return feats
