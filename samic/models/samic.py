"""The SAMIC model.

SAMIC: A Lightweight Semantic-Aware Mamba for Efficient Perceptual Image Compression
(arXiv 2605.04560, 2026). Open reconstruction: ICISP's hyperprior + ChARM skeleton with
semantic-aware Mamba blocks (SAMB) in the transforms, SVD-RRM on the encoder side, and gain
units for one model with a continuous rate knob (``quality`` in [0, 1]).

      x ─► g_a ─► SVD-RRM ─► × gain(q) ─► y ─► h_a ─► z ─► Q ─► z_hat ─► h_s ─► (means, scales)
                                          │                                        │
                                          └─────────► ChARM (slice by slice) ◄─────┘
                                                           │
      x_hat ◄─ g_s ◄─ × inverse_gain(q) ◄─────────────── y_hat

    g_a: [RB↓2 (3→N), SAMB?] [RB↓2, SAMB?] [RB↓2, SAMB?] conv3x3↓2 (N→M)      y at H/16
    g_s: [RB↑2 (M→N), SAMB?] [RB↑2, SAMB?] [RB↑2, SAMB?] subpel↑2 (N→3)       (mirror)
    h_a: RB↓2 (M→N), SAMB?, conv3x3↓2 (N→Nz)                                   z at H/64
    h_s: RB↑2 (Nz→N), SAMB?, subpel↑2 (N→2M, or two such decoders)
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from samic.entropy.latent_codec import LatentCodec
from samic.entropy.models import ChannelARM, EntropyBottleneck, GaussianConditional
from samic.layers.basic import ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3
from samic.layers.samb import DEFAULT_SCAN, SAMB, SAMBIntermediates, ScanSettings
from samic.layers.svd_rrm import SVDRRM, SpectrumIntermediates
from samic.models.presets import ModelConfig, get_config

PAD_MULTIPLE = 64  # z lives at H/64
DECODERS = ("mse", "perceptual")


class SAMICIntermediates(NamedTuple):
    """Everything the app and notebooks show, from one forward pass."""

    samb: dict[str, SAMBIntermediates]  # "g_a.stage2", "h_a", "h_s", "g_s.stage3", ...
    spectrum: SpectrumIntermediates | None  # SVD-RRM on y (None if the preset has none)
    bits_y: torch.Tensor  # (B, h, w) estimated bits per latent position of y (H/16 grid)
    bits_z: torch.Tensor  # (B, h', w') estimated bits per position of z (H/64 grid)
    quality: torch.Tensor  # (B,)


class SAMICOutput(NamedTuple):
    x_hat: torch.Tensor  # (B, 3, H, W), cropped to the input size
    likelihoods: dict[str, torch.Tensor]  # "y": (B, M, H_pad/16, W_pad/16), "z": (B, Nz, H_pad/64, W_pad/64)
    original_size: tuple[int, int]
    padded_size: tuple[int, int]
    intermediates: SAMICIntermediates | None


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the bottom/right to multiples of ``multiple``.

    Replicating the border (rather than zero padding) costs few bits: the padded area is
    flat continuation of the image, and it is cropped away after decoding.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


class _Stages(nn.Module):
    """A sequence of layers in which SAMBs record their intermediates under a name."""

    def __init__(self, layers: list[tuple[str, nn.Module]]):
        super().__init__()
        self.names = [name for name, _ in layers]
        self.layers = nn.ModuleList(layer for _, layer in layers)

    def forward(self, x: torch.Tensor, record: dict | None = None, prefix: str = "",
                scan: ScanSettings = DEFAULT_SCAN) -> torch.Tensor:
        for name, layer in zip(self.names, self.layers):
            if isinstance(layer, SAMB):
                x, inter = layer(x, return_intermediates=record is not None, scan=scan)
                if record is not None:
                    record[f"{prefix}{name}"] = inter
            else:
                x = layer(x)
        return x


def _samb(cfg: ModelConfig, latent_cell: int = 1) -> SAMB:
    """A SAMB as the preset says. ``latent_cell``: on the synthesis side, the tokens per side
    of one cell of the latent the block's features were upsampled from; its router smooths
    over that many, so the cell's sub-pixel pattern (the same in every picture) cannot decide
    the clusters. The analysis side smooths over ``cfg.router_smooth``."""
    return SAMB(cfg.N, d_state=cfg.d_state, expand=cfg.expand, n_clusters=cfg.n_clusters,
                directions=cfg.directions, mlp_ratio=cfg.mlp_ratio, normalize_bc=cfg.scan_normalize_bc,
                router_smooth=latent_cell if latent_cell > 1 else cfg.router_smooth)


def analysis_transform(cfg: ModelConfig) -> _Stages:
    layers = []
    for stage in (1, 2, 3):
        layers.append((f"down{stage}", ResidualBlockWithStride(3 if stage == 1 else cfg.N, cfg.N)))
        if stage in cfg.samb_stages:
            layers.append((f"stage{stage}", _samb(cfg)))
    layers.append(("to_latent", conv3x3(cfg.N, cfg.M, stride=2)))
    return _Stages(layers)


def synthesis_transform(cfg: ModelConfig) -> _Stages:
    layers = []
    for stage in (3, 2, 1):  # mirror of g_a: stage 3 is at H/8
        layers.append((f"up{stage}", ResidualBlockUpsample(cfg.M if stage == 3 else cfg.N, cfg.N)))
        if stage in cfg.samb_stages:  # y is at H/16: a latent cell is 2^(4 - stage) tokens here
            layers.append((f"stage{stage}", _samb(cfg, latent_cell=2 ** (4 - stage))))
    layers.append(("to_image", subpel_conv3x3(cfg.N, 3, 2)))
    return _Stages(layers)


def hyper_analysis(cfg: ModelConfig) -> _Stages:
    layers = [("down", ResidualBlockWithStride(cfg.M, cfg.N))]
    if cfg.hyper_samb:
        layers.append(("samb", _samb(cfg)))
    layers.append(("to_hyper", conv3x3(cfg.N, cfg.Nz, stride=2)))
    return _Stages(layers)


def hyper_synthesis(cfg: ModelConfig, out_channels: int) -> _Stages:
    layers = [("up", ResidualBlockUpsample(cfg.Nz, cfg.N))]
    if cfg.hyper_samb:  # z at H/64, this block at H/32
        layers.append(("samb", _samb(cfg, latent_cell=2)))
    layers.append(("to_params", subpel_conv3x3(cfg.N, out_channels, 2)))
    return _Stages(layers)


class GainUnits(nn.Module):
    """Per-channel gains on y for a continuous rate knob (Cui et al., CVPR 2021).

    Gains are learned at ``n`` anchor qualities evenly spaced in [0, 1] and interpolated
    geometrically in between; lambda(q) is log-linear in ``lambda_range``.
    """

    def __init__(self, channels: int, n_anchors: int, lambda_range: tuple[float, float]):
        super().__init__()
        self.lambda_range = lambda_range
        lo, hi = (math.log(v) for v in lambda_range)
        log_lambdas = torch.linspace(lo, hi, n_anchors)
        # Init: step size ~ 1/sqrt(lambda) (high-rate theory), centered on the middle anchor.
        init = 0.5 * (log_lambdas - log_lambdas.mean())
        self.log_gain = nn.Parameter(init[:, None].repeat(1, channels))
        self.log_inverse_gain = nn.Parameter(-init[:, None].repeat(1, channels))

    def lmbda(self, quality: torch.Tensor) -> torch.Tensor:
        lo, hi = (math.log(v) for v in self.lambda_range)
        return torch.exp(lo + quality * (hi - lo))

    @staticmethod
    def _interpolate(table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        pos = quality.clamp(0, 1) * (table.shape[0] - 1)
        idx = pos.floor().long().clamp(max=table.shape[0] - 2)
        frac = (pos - idx.to(pos.dtype))[:, None]
        return torch.exp(table[idx] * (1 - frac) + table[idx + 1] * frac)[:, :, None, None]

    def gain(self, quality: torch.Tensor) -> torch.Tensor:
        """quality (B,) -> (B, C, 1, 1)."""
        return self._interpolate(self.log_gain, quality)

    def inverse_gain(self, quality: torch.Tensor) -> torch.Tensor:
        return self._interpolate(self.log_inverse_gain, quality)


class SAMIC(nn.Module):
    """SAMIC codec network with a CompressAI-style API (see the module docstring)."""

    def __init__(self, config: ModelConfig | str = "samic-lite"):
        super().__init__()
        cfg = get_config(config) if isinstance(config, str) else config
        self.config = cfg
        self.g_a = analysis_transform(cfg)
        self.svd_rrm = SVDRRM(cfg.M) if cfg.svd_rrm else None
        self.gain_units = GainUnits(cfg.M, cfg.n_gain_anchors, cfg.lambda_range)
        self.h_a = hyper_analysis(cfg)
        if cfg.separate_hyper_decoders:
            self.h_s = nn.ModuleDict({"means": hyper_synthesis(cfg, cfg.M), "scales": hyper_synthesis(cfg, cfg.M)})
        else:
            self.h_s = hyper_synthesis(cfg, 2 * cfg.M)
        self.entropy_bottleneck = EntropyBottleneck(cfg.Nz)
        self.gaussian_conditional = GaussianConditional()
        self.charm = ChannelARM(cfg.M, cfg.num_slices, cfg.charm_hidden)
        self.g_s = synthesis_transform(cfg)
        self.g_s_perceptual: _Stages | None = None

    # ------------------------------------------------------------------ structure
    def add_perceptual_decoder(self) -> _Stages:
        """Create the perceptual decoder as a copy of the MSE decoder (stage 2 starts from it)."""
        if self.g_s_perceptual is None:
            self.g_s_perceptual = copy.deepcopy(self.g_s)
        return self.g_s_perceptual

    @property
    def decoders(self) -> tuple[str, ...]:
        return DECODERS if self.g_s_perceptual is not None else ("mse",)

    def decoder(self, name: str) -> _Stages:
        if name == "mse":
            return self.g_s
        if name == "perceptual":
            if self.g_s_perceptual is None:
                raise ValueError("this model has no perceptual decoder (only 'mse'); train stage 2 first")
            return self.g_s_perceptual
        raise ValueError(f"unknown decoder {name!r}; choose 'mse' or 'perceptual'")

    def parts(self) -> dict[str, list[nn.Module]]:
        """Modules grouped as in the paper's parameter accounting."""
        return {
            "g_a": [self.g_a] + ([self.svd_rrm] if self.svd_rrm is not None else []),
            "g_s": [self.g_s],
            "g_s_perceptual": [self.g_s_perceptual] if self.g_s_perceptual is not None else [],
            "h_a": [self.h_a],
            "h_s": [self.h_s],
            "entropy": [self.entropy_bottleneck, self.charm, self.gaussian_conditional],
            "gain_units": [self.gain_units],
        }

    def params_by_part(self) -> dict[str, int]:
        return {name: sum(p.numel() for m in mods for p in m.parameters()) for name, mods in self.parts().items()}

    def samb_blocks(self) -> list[SAMB]:
        return [m for m in self.modules() if isinstance(m, SAMB)]

    @property
    def latent_codec(self) -> LatentCodec:
        """Hyperprior + ChARM: y, z -> likelihoods (training), streams (coding) and back."""
        return LatentCodec(self)

    def set_gumbel_temperature(self, tau: float) -> None:
        for block in self.samb_blocks():
            block.router.tau.fill_(tau)

    # ------------------------------------------------------------------ pieces used by the codec
    def quality_tensor(self, quality, batch: int, device=None) -> torch.Tensor:
        device = device or next(self.parameters()).device
        if quality is None:
            quality = 0.5
        q = torch.as_tensor(quality, dtype=torch.float32, device=device)
        if q.dim() == 0:
            q = q.expand(batch)
        if q.shape != (batch,):
            raise ValueError(f"quality must be a float or a tensor of shape ({batch},), got {tuple(q.shape)}")
        if torch.any((q < 0) | (q > 1)):
            raise ValueError("quality must be in [0, 1]")
        return q

    def analysis(self, x_padded: torch.Tensor, quality: torch.Tensor, record: dict | None = None,
                 scan: ScanSettings = DEFAULT_SCAN):
        """Padded image (B, 3, H, W) in [0, 1] -> (y, z, spectrum); y carries the gain."""
        y = self.g_a(x_padded, record, "g_a.", scan)
        spectrum = None
        if self.svd_rrm is not None:
            y, spectrum = self.svd_rrm(y, return_intermediates=record is not None)
        y = y * self.gain_units.gain(quality)
        z = self.h_a(y, record, "h_a.", scan)
        return y, z, spectrum

    def hyper_synthesis(self, z_hat: torch.Tensor, record: dict | None = None,
                        scan: ScanSettings = DEFAULT_SCAN):
        """z_hat -> (hyper means, hyper scales), each (B, M, H/16, W/16)."""
        if isinstance(self.h_s, nn.ModuleDict):
            return (self.h_s["means"](z_hat, record, "h_s.means.", scan),
                    self.h_s["scales"](z_hat, record, "h_s.scales.", scan))
        return self.h_s(z_hat, record, "h_s.", scan).chunk(2, dim=1)

    def synthesis(self, y_hat: torch.Tensor, quality: torch.Tensor, decoder: str = "mse",
                  record: dict | None = None, scan: ScanSettings = DEFAULT_SCAN) -> torch.Tensor:
        """y_hat (B, M, h, w) -> x_hat (B, 3, 16h, 16w), not clamped."""
        return self.decoder(decoder)(y_hat * self.gain_units.inverse_gain(quality), record, "g_s.", scan)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, quality=None, decoder: str = "mse",
                return_intermediates: bool = False, scan: ScanSettings = DEFAULT_SCAN) -> SAMICOutput:
        """x (B, 3, H, W) in [0, 1], any H and W; quality float or (B,) in [0, 1] (default 0.5).
        ``scan`` sets every SAMB's scan order (and the ablations; see ScanSettings)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"SAMIC expects x of shape (B, 3, H, W), got {tuple(x.shape)}")
        scan = scan.validated()
        batch, _, height, width = x.shape
        q = self.quality_tensor(quality, batch, x.device)
        record = {} if return_intermediates else None
        x_padded = pad_to_multiple(x)
        y, z, spectrum = self.analysis(x_padded, q, record, scan)

        latents = self.latent_codec.forward(y, z, record, scan)
        x_hat = self.synthesis(latents.y_hat, q, decoder, record, scan)[:, :, :height, :width]

        intermediates = None
        if return_intermediates:
            intermediates = SAMICIntermediates(
                samb=record, spectrum=spectrum,
                bits_y=-torch.log2(latents.likelihoods["y"]).sum(1).detach(),
                bits_z=-torch.log2(latents.likelihoods["z"]).sum(1).detach(), quality=q)
        return SAMICOutput(x_hat=x_hat, likelihoods=latents.likelihoods,
                           original_size=(height, width), padded_size=tuple(x_padded.shape[-2:]),
                           intermediates=intermediates)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.aux_loss()
