"""SVD-RRM: SVD-inspired redundancy reduction of a latent (encoder only).

Per sample, X = y reshaped to C x HW has X = U diag(s) V^T. The module shrinks the
singular values with a learnable soft threshold, s_hat = max(s - tau, 0), and mixes the
low-rank X_hat = U diag(s_hat) V^T back into X with a learnable per-channel weight.

Computed through the C x C Gram matrix G = X X^T = U diag(s^2) U^T, which is cheaper than
an SVD of C x HW and never forms V:   X_hat = U diag(s_hat / s) U^T X = f(G) X.
f is a symmetric matrix function, so its backward pass uses Daleckii-Krein divided
differences; where two eigenvalues (nearly) coincide the divided difference becomes the
derivative f', so the gradient stays finite for repeated or zero singular values (the
plain eigh backward divides by their difference).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class SpectrumIntermediates(NamedTuple):
    """Singular values of the latent before/after the soft threshold (descending)."""

    singular_values: torch.Tensor  # (B, C)
    thresholded: torch.Tensor  # (B, C)
    threshold: torch.Tensor  # (B,) absolute threshold tau per sample


def _shrink(eigvals: torch.Tensor, tau: torch.Tensor, eps: float):
    """f(lambda) = max(1 - tau / sqrt(lambda), 0) and df/dlambda, df/dtau; lambda = s^2."""
    s = eigvals.clamp_min(eps).sqrt()
    keep = (s > tau[:, None]).to(eigvals.dtype)
    f = keep * (1 - tau[:, None] / s)
    df_dlam = keep * tau[:, None] / (2 * s ** 3)
    df_dtau = -keep / s
    return f, df_dlam, df_dtau


class _GramShrink(torch.autograd.Function):
    """F = U diag(f(lambda)) U^T for a batch of symmetric PSD Gram matrices G (B, C, C)."""

    @staticmethod
    def forward(ctx, gram, tau, eigvals, eigvecs, eps):
        """eigvals/eigvecs: the (detached) eigendecomposition of gram, computed by the caller."""
        f, df_dlam, df_dtau = _shrink(eigvals, tau, eps)
        ctx.save_for_backward(eigvals, eigvecs, f, df_dlam, df_dtau)
        ctx.eps = eps
        return eigvecs @ torch.diag_embed(f) @ eigvecs.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad_out):
        eigvals, eigvecs, f, df_dlam, df_dtau = ctx.saved_tensors
        g = eigvecs.transpose(-1, -2) @ grad_out @ eigvecs
        g = 0.5 * (g + g.transpose(-1, -2))
        diff = eigvals[:, :, None] - eigvals[:, None, :]
        close = diff.abs() <= 1e-6 * eigvals.abs().amax(-1, keepdim=True)[..., None].clamp_min(ctx.eps)
        divided = (f[:, :, None] - f[:, None, :]) / torch.where(close, torch.ones_like(diff), diff)
        mean_deriv = 0.5 * (df_dlam[:, :, None] + df_dlam[:, None, :])
        kernel = torch.where(close, mean_deriv, divided)
        grad_gram = eigvecs @ (g * kernel) @ eigvecs.transpose(-1, -2)
        grad_tau = (torch.diagonal(g, dim1=-2, dim2=-1) * df_dtau).sum(-1)
        return grad_gram, grad_tau, None, None, None


def symmetric_eigh(gram: torch.Tensor):
    """eigh of small (B, C, C) matrices on one thread: multi-threaded LAPACK is slower here
    and can stall for seconds when the cores are busy. Eigenvalues clamped at 0 (PSD)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eigvals, eigvecs = torch.linalg.eigh(gram.detach())
    finally:
        torch.set_num_threads(threads)
    return eigvals.clamp_min(0), eigvecs


class SVDRRM(nn.Module):
    """Soft-thresholded low-rank approximation of (B, C, H, W) latents, mixed residually.

    tau = softplus(threshold_param) * s_max (s_max detached): the threshold is learned
    relative to the largest singular value, so it is scale-free across images and rates.
    """

    def __init__(self, channels: int, init_threshold: float = 0.02, init_mix: float = 0.5, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.threshold_param = nn.Parameter(torch.tensor(float(torch.log(torch.expm1(torch.tensor(init_threshold))))))
        self.mix_logit = nn.Parameter(torch.full((channels,), float(torch.logit(torch.tensor(init_mix)))))

    def relative_threshold(self) -> torch.Tensor:
        return F.softplus(self.threshold_param)

    def forward(self, y: torch.Tensor, return_intermediates: bool = False):
        """y (B, C, H, W) -> (B, C, H, W) and SpectrumIntermediates when asked (else None)."""
        batch, channels, height, width = y.shape
        x = y.reshape(batch, channels, height * width).double()  # eigh is far stabler in float64
        gram = x @ x.transpose(1, 2) / (height * width)
        eigvals, eigvecs = symmetric_eigh(gram)
        tau = self.relative_threshold().double() * eigvals[:, -1].sqrt()  # relative to s_max
        shrink = _GramShrink.apply(gram, tau, eigvals, eigvecs, self.eps)
        low_rank = (shrink @ x).to(y.dtype).reshape_as(y)
        mix = torch.sigmoid(self.mix_logit)[None, :, None, None]
        out = y + mix * (low_rank - y)
        if not return_intermediates:
            return out, None
        s = eigvals.sqrt().flip(-1)
        spectrum = SpectrumIntermediates(singular_values=s.float().detach(),
                                         thresholded=(s - tau[:, None]).clamp_min(0).float().detach(),
                                         threshold=tau.float().detach())
        return out, spectrum
