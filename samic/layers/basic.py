"""Convolutional building blocks of the analysis/synthesis transforms (Ballé/Cheng style)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def inplace_ok() -> bool:
    """Whether a block may overwrite the temporaries it made itself: at inference (autograd
    off, so no graph keeps them). Elementwise ops in place compute the very same values (products
    and sums are commutative in IEEE arithmetic), so outputs are bit-identical; what changes
    is that a 4K image needs fewer multi-hundred-MB buffers, each of which the allocator
    would otherwise map and the kernel zero-fill afresh (see docs/results.md, scaling)."""
    return not torch.is_grad_enabled()


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride)


def subpel_conv3x3(in_ch: int, out_ch: int, r: int = 2) -> nn.Sequential:
    """3x3 conv to out_ch * r^2 channels followed by pixel shuffle: x r upsampling."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch * r * r, 3, padding=1), nn.PixelShuffle(r))


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), simplified form
    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); ``inverse`` multiplies instead.

    beta and gamma are kept non-negative by a squared reparametrization with a floor.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self._pedestal = 2.0 ** -36
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.clamp_min((self.beta_min + self._pedestal) ** 0.5) ** 2 - self._pedestal
        gamma = self.gamma.clamp_min(self._pedestal ** 0.5) ** 2 - self._pedestal
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        if inplace_ok():  # inference: the same products, without two more full-size temporaries
            return (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(x)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class ResidualBlockWithStride(nn.Module):
    """conv3x3/s2 -> LeakyReLU -> conv3x3 -> GDN, plus a strided 1x1 skip: H, W -> H/2, W/2."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.gdn = GDN(out_ch)
        self.skip = conv1x1(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = inplace_ok()
        out = self.gdn(self.conv2(F.leaky_relu(self.conv1(x), 0.01, inplace=inplace)))
        return out.add_(self.skip(x)) if inplace else out + self.skip(x)


class ResidualBlockUpsample(nn.Module):
    """subpixel conv x2 -> LeakyReLU -> conv3x3 -> inverse GDN, plus a 1x1 subpixel skip: x2 upsampling.

    The skip is a 1x1 (not 3x3) subpixel conv: it only has to carry the signal, and at the
    decoder's high resolutions a 3x3 skip would cost as much as the main branch.
    """

    def __init__(self, in_ch: int, out_ch: int, r: int = 2):
        super().__init__()
        self.subpel = subpel_conv3x3(in_ch, out_ch, r)
        self.conv = conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.skip = nn.Sequential(conv1x1(in_ch, out_ch * r * r), nn.PixelShuffle(r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = inplace_ok()
        out = self.igdn(self.conv(F.leaky_relu(self.subpel(x), 0.01, inplace=inplace)))
        return out.add_(self.skip(x)) if inplace else out + self.skip(x)


class ChannelsLastLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
