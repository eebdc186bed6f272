"""Entropy models: factorized prior (for z), Gaussian conditional (for y) and the
channel-wise autoregressive model (ChARM, Minnen & Singh 2020) that predicts y's
Gaussian parameters slice by slice.

Conventions (as in CompressAI): likelihoods are probabilities of the integer bins
[v - 0.5, v + 0.5]; the rate is -sum(log2(likelihoods)). In training the rate uses
additive uniform noise; the decoder sees straight-through rounding ("mixed" quantization).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from samic.codec.coder import SCALE_MIN  # the scale floor: the coder's first table, so training's rate is the coder's

LIKELIHOOD_BOUND = 1e-9


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still pushes up values stuck below the bound."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) with the identity gradient."""
    return x + (torch.round(x) - x).detach()


def add_uniform_noise(x: torch.Tensor) -> torch.Tensor:
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


class EntropyBottleneck(nn.Module):
    """Learned non-parametric factorized density per channel (Ballé et al. 2018, App. 6.1).

    The cumulative c(v) = sigmoid(f(v)) is a monotone MLP of v per channel. ``quantiles``
    track the tails (tail mass 1e-9) and the median through an auxiliary loss; the median
    centers quantization and the tails bound the coder's symbol range.
    """

    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0, tail_mass: float = 1e-9):
        super().__init__()
        self.channels = channels
        self.tail_mass = tail_mass
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        target = math.log(2 / tail_mass - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]), persistent=False)

    def _logits_cumulative(self, v: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        """v (C, 1, K) -> logits of the cumulative (C, 1, K)."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            v = torch.matmul(F.softplus(matrix), v) + bias
            if i < len(self.factors):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                v = v + torch.tanh(factor) * torch.tanh(v)
        return v

    def aux_loss(self) -> torch.Tensor:
        """Pulls ``quantiles`` to the tail/median points of the learned distribution."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return (logits - self.target).abs().sum()

    @property
    def medians(self) -> torch.Tensor:
        return self.quantiles[:, 0, 1].detach()

    def likelihood(self, z_hat: torch.Tensor) -> torch.Tensor:
        """z_hat (B, C, H, W) -> bin probabilities (B, C, H, W)."""
        batch, channels, height, width = z_hat.shape
        v = z_hat.permute(1, 0, 2, 3).reshape(channels, 1, -1)
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        # Subtract in the tail that is away from 0.5 to avoid cancellation.
        sign = -torch.sign(lower + upper).detach()
        lik = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        lik = lower_bound(lik, LIKELIHOOD_BOUND)
        return lik.reshape(channels, batch, height, width).permute(1, 0, 2, 3)

    def forward(self, z: torch.Tensor):
        """z (B, C, H, W) -> (z_hat, likelihoods). Noise in training, median-centered rounding otherwise."""
        medians = self.medians[None, :, None, None]
        z_hat = add_uniform_noise(z) if self.training else torch.round(z - medians) + medians
        return z_hat, self.likelihood(z_hat)

    @torch.no_grad()
    def pmf_table(self):
        """Per-channel integer support and pmf for entropy coding, computed in float64.

        Returns (offsets (C,) int64, pmfs list of float64 arrays, medians (C,) float64):
        symbol s of channel c stands for z_hat = medians[c] + offsets[c] + s.
        """
        quantiles = self.quantiles.detach().double().cpu()
        medians = quantiles[:, 0, 1]
        lo = torch.floor(quantiles[:, 0, 0] - medians).clamp(max=0).long()
        hi = torch.ceil(quantiles[:, 0, 2] - medians).clamp(min=0).long()
        pmfs = []
        for c in range(self.channels):
            support = torch.arange(int(lo[c]), int(hi[c]) + 1, dtype=torch.float64) + medians[c]
            v = support.view(1, 1, -1)
            lower = _channel_logits(self, c, v - 0.5)
            upper = _channel_logits(self, c, v + 0.5)
            pmf = (torch.sigmoid(upper) - torch.sigmoid(lower)).clamp_min(0).view(-1)
            pmfs.append(pmf.numpy())
        return lo.numpy(), pmfs, medians.numpy()


def _channel_logits(module: EntropyBottleneck, c: int, v: torch.Tensor) -> torch.Tensor:
    for i, (matrix, bias) in enumerate(zip(module.matrices, module.biases)):
        v = torch.matmul(F.softplus(matrix[c:c + 1].detach().double().cpu()), v) + bias[c:c + 1].detach().double().cpu()
        if i < len(module.factors):
            v = v + torch.tanh(module.factors[i][c:c + 1].detach().double().cpu()) * torch.tanh(v)
    return v


class GaussianConditional(nn.Module):
    """Discretized Gaussian likelihood of y given predicted means and scales."""

    def __init__(self, scale_bound: float = SCALE_MIN):
        super().__init__()
        self.scale_bound = scale_bound

    def likelihood(self, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        scales = lower_bound(scales, self.scale_bound)
        v = (y_hat - means).abs()
        # Evaluate in the lower tail for accuracy: P = Phi((0.5 - v)/s) - Phi((-0.5 - v)/s).
        upper = _std_normal_cdf((0.5 - v) / scales)
        lower = _std_normal_cdf((-0.5 - v) / scales)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2 ** -0.5))


def _conv_stack(in_ch: int, hidden: tuple[int, int], out_ch: int) -> nn.Sequential:
    h1, h2 = hidden
    return nn.Sequential(nn.Conv2d(in_ch, h1, 3, padding=1), nn.GELU(),
                         nn.Conv2d(h1, h2, 3, padding=1), nn.GELU(),
                         nn.Conv2d(h2, out_ch, 3, padding=1))


class ChannelARM(nn.Module):
    """Channel-wise autoregressive entropy parameters with latent residual prediction.

    y is split into ``num_slices`` slices along channels. Slice i's mean and scale are
    predicted from the hyper-decoder's (means, scales) and the already decoded slices
    y_hat[<i]; after quantization a latent residual prediction 0.5*tanh(LRP) is added.

        hyper means ─┬─ cat(y_hat[<i]) ─► mean_i ─► q = round(y_i - mean_i) ─► y_hat_i = q + mean_i + lrp_i
        hyper scales ┴─ cat(y_hat[<i]) ─► scale_i ─► rate of y_i
    """

    def __init__(self, latent_channels: int, num_slices: int, hidden: tuple[int, int]):
        super().__init__()
        if latent_channels % num_slices:
            raise ValueError(f"ChannelARM: latent channels {latent_channels} not divisible by {num_slices} slices")
        self.num_slices = num_slices
        self.slice_channels = latent_channels // num_slices
        s, m = self.slice_channels, latent_channels
        self.mean_transforms = nn.ModuleList(_conv_stack(m + i * s, hidden, s) for i in range(num_slices))
        self.scale_transforms = nn.ModuleList(_conv_stack(m + i * s, hidden, s) for i in range(num_slices))
        self.lrp_transforms = nn.ModuleList(_conv_stack(m + (i + 1) * s, hidden, s) for i in range(num_slices))

    def slice_params(self, i: int, hyper_means, hyper_scales, decoded: list[torch.Tensor]):
        """Mean and raw scale of slice i from the hyper outputs and decoded slices y_hat[<i]."""
        mean = self.mean_transforms[i](torch.cat([hyper_means, *decoded], 1))
        scale = self.scale_transforms[i](torch.cat([hyper_scales, *decoded], 1))
        return mean, scale

    def residual(self, i: int, hyper_means, decoded: list[torch.Tensor], y_hat_slice) -> torch.Tensor:
        return 0.5 * torch.tanh(self.lrp_transforms[i](torch.cat([hyper_means, *decoded, y_hat_slice], 1)))

    def run(self, hyper_means: torch.Tensor, hyper_scales: torch.Tensor, code_slice, snap=None, timer=None):
        """The slice loop, shared by training, estimation and real coding -> y_hat (B, M, h, w).

        code_slice(i, mean, scale) -> slice i of y_hat before the LRP: it quantizes (forward) or
        writes/reads the slice's symbols (samic.entropy.latent_codec). snap: None, or the
        float64 coding mode with ``params(mean, scale)`` and ``residual(lrp)`` that put the
        network outputs on the coder's grids. timer: a PhaseTimer or None.
        """
        phase = timer.phase if timer is not None else (lambda name: contextlib.nullcontext())
        decoded: list[torch.Tensor] = []
        for i in range(self.num_slices):
            with phase("entropy_parameters"):
                mean, scale = self.slice_params(i, hyper_means, hyper_scales, decoded)
                if snap is not None:
                    mean, scale = snap.params(mean, scale)
            with phase("entropy_coding"):
                y_hat_slice = code_slice(i, mean, scale)
            with phase("entropy_parameters"):
                lrp = self.residual(i, hyper_means, decoded, y_hat_slice)
                decoded.append(y_hat_slice + (lrp if snap is None else snap.residual(lrp)))
        return torch.cat(decoded, 1)

    def forward(self, y: torch.Tensor, hyper_means: torch.Tensor, hyper_scales: torch.Tensor,
                gaussian: GaussianConditional):
        """Training/estimation pass: returns (y_hat, likelihoods, means, scales), all (B, M, h, w)."""
        y_slices = y.chunk(self.num_slices, 1)
        likelihoods, means, scales = [], [], []

        def quantize(i, mean, scale):
            noisy = add_uniform_noise(y_slices[i]) if self.training else torch.round(y_slices[i] - mean) + mean
            likelihoods.append(gaussian.likelihood(noisy, scale, mean))
            means.append(mean)
            scales.append(scale)
            return ste_round(y_slices[i] - mean) + mean

        y_hat = self.run(hyper_means, hyper_scales, quantize)
        return y_hat, torch.cat(likelihoods, 1), torch.cat(means, 1), torch.cat(scales, 1)
