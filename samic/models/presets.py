"""Model presets: the single source of truth for every architecture hyper-parameter."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a SAMIC model (see samic.models.samic.SAMIC for the dataflow)."""

    name: str
    N: int  # channels of the analysis/synthesis transforms
    M: int  # latent (y) channels
    Nz: int  # hyper-latent (z) channels
    # SAMB
    samb_stages: tuple[int, ...]  # g_a stages (1-3, at H/2, H/4, H/8) followed by a SAMB; g_s mirrors
    hyper_samb: bool  # SAMB inside h_a and h_s
    n_clusters: int  # K
    d_state: int
    expand: float
    directions: int  # 1: forward scan; 2: forward + backward over the cluster-sorted sequence
    mlp_ratio: float
    # entropy model
    num_slices: int
    charm_hidden: tuple[int, int]
    separate_hyper_decoders: bool  # ICISP: distinct h_s for means and scales
    svd_rrm: bool
    # SAMB scan and router design (issue 13)
    scan_normalize_bc: bool = False  # RMS-normalized B and C in the selective scan
    router_smooth: int = 1  # box size of the analysis-side routers' feature smoothing (synthesis side: one latent cell)
    # continuous rate: quality in [0, 1] <-> lambda log-linearly in lambda_range; gain units
    # are learned at n_gain_anchors evenly spaced qualities and interpolated geometrically.
    lambda_range: tuple[float, float] = (0.00025, 0.2)  # Kodak ~0.06 to ~0.6 bpp with samic-lite (widened from 0.07, issue 15)
    n_gain_anchors: int = 6

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    # Faithful to the reference: ICISP's skeleton (N=64, M=320, 5-slice ChARM with 224/128
    # hidden channels, two hyper-decoders) with a SAMB after every encoder/decoder stage and in
    # the hyper transforms, K=16, and SVD-RRM on y.
    "samic-paper": ModelConfig(
        name="samic-paper", N=64, M=320, Nz=192,
        samb_stages=(1, 2, 3), hyper_samb=True, n_clusters=16, d_state=16, expand=1.5, directions=2,
        mlp_ratio=2.0, num_slices=5, charm_hidden=(224, 128), separate_hyper_decoders=True, svd_rrm=True,
    ),
    # Same modules, sized for CPU training and sub-second CPU inference: no SAMB at H/2
    # (the most expensive resolution), one scan direction, a smaller state and ChARM.
    "samic-lite": ModelConfig(
        name="samic-lite", N=64, M=160, Nz=96,
        samb_stages=(2, 3), hyper_samb=True, n_clusters=16, d_state=8, expand=1.0, directions=1,
        mlp_ratio=2.0, num_slices=4, charm_hidden=(96, 64), separate_hyper_decoders=False, svd_rrm=True,
    ),
    # A few-thousand-parameter model for tests and the live-training notebook.
    "samic-tiny": ModelConfig(
        name="samic-tiny", N=16, M=32, Nz=16,
        samb_stages=(3,), hyper_samb=True, n_clusters=4, d_state=4, expand=1.0, directions=1,
        mlp_ratio=1.0, num_slices=2, charm_hidden=(16, 16), separate_hyper_decoders=False, svd_rrm=True,
    ),
}

DEFAULT_MODEL = "samic-lite"


def get_config(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(PRESETS)}") from None
