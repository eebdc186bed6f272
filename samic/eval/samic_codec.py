"""SAMIC as an :class:`~samic.eval.classical.ImageCodec`: real .samic files in the RD sweeps.

``encode`` runs :func:`samic.codec.compress_image` and returns the bytes of the .samic
file (header included), so bpp is measured exactly like the classical codecs' files.
``decode`` runs :func:`samic.codec.decompress_image` with a fixed decoder (``mse`` or
``perceptual``). Both record their phases (network vs entropy coding) so that benchmarks
and ``samic eval`` can report them separately from the wall-clock time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from samic.quality import RD_QUALITIES

__all__ = ["ENTROPY_CODING", "PROVENANCE", "SAMICCodec", "perceptual_digest", "results_identity", "weights_identity"]

# The PhaseTimer phase that is range coding proper; every other phase is network time
# (g_a/h_a, h_s + ChARM in float64, g_s).
ENTROPY_CODING = "entropy_coding"


# Descriptions read "<what decides the results> | <provenance>": two results whose parts before
# the separator agree came from the same computation (e.g. the same encoder, entropy model and
# decoder shipped in two weights files that differ only in another decoder).
PROVENANCE = " | "


def results_identity(description: str) -> str:
    """The part of a result description that decides its numbers (all of it for classical codecs)."""
    return description.split(PROVENANCE)[0]


def perceptual_digest(model) -> str:
    """16 hex digits of a sha256 over the perceptual decoder's tensors (as float32), which the
    bitstream's model digest leaves out because the decoder is chosen at decode time."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.g_s_perceptual.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


def weights_identity(model) -> dict:
    """Where a loaded model's weights came from: file, preset, sha256 (from the sidecar
    JSON, which :func:`samic.weights.load_model` has checked against the file)."""
    path = getattr(model, "weights_path", None)
    info = {"preset": model.config.name, "file": path, "sha256": None}
    if path is not None:
        sidecar = Path(path).with_suffix(".json")
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            info.update(sha256=meta.get("sha256"), steps=meta.get("steps"), stages=meta.get("stages"))
    return info


class SAMICCodec:
    """One SAMIC model with one decoder, behind the evaluation's codec protocol.

    Args:
        model: a loaded :class:`samic.models.SAMIC` (e.g. from :func:`samic.weights.load_model`).
        decoder: ``"mse"`` or ``"perceptual"`` (the model must have it).
        name: result name; default ``"<preset>-<decoder>"``, e.g. ``samic-lite-mse``.
    """

    quality_range = (0.0, 1.0)
    integer_quality = False
    # Six points spanning the model's whole rate range (the gain units interpolate between
    # anchors trained at evenly spaced qualities).
    default_qualities = RD_QUALITIES

    def __init__(self, model, decoder: str = "mse", name: str | None = None):
        from samic.codec.api import choose_decoder
        from samic.entropy.latent_codec import model_digest

        self.model = model.eval()
        self.decoder = choose_decoder(model, decoder)  # ValueError if the weights lack it
        self.name = name or f"{model.config.name}-{decoder}"
        self.weights = weights_identity(model)
        sha = self.weights["sha256"]
        source = Path(self.weights["file"]).name if self.weights["file"] else "in-memory weights"
        # What decides the results (see results_identity), then where the weights came from.
        digest = model_digest(model).hex()
        if self.decoder == "perceptual":
            digest += f" + perceptual decoder {perceptual_digest(model)}"
        self.description = (f"SAMIC {model.config.name}, {self.decoder} decoder, weights digest {digest}"
                            f"{PROVENANCE}{source}" + (f" sha256 {sha}" if sha else ""))
        # One {phase: seconds} dict per encode / decode call, in call order.
        self.encode_phases: list[dict[str, float]] = []
        self.decode_phases: list[dict[str, float]] = []

    def __repr__(self) -> str:
        return f"SAMICCodec({self.description})"

    def encode(self, rgb: np.ndarray, quality: float) -> bytes:
        from samic.codec.api import compress_image
        from samic.entropy.latent_codec import PhaseTimer

        lo, hi = self.quality_range
        if not lo <= quality <= hi:
            raise ValueError(f"{self.name}: quality {quality} outside [{lo}, {hi}]")
        timer = PhaseTimer()
        data = compress_image(rgb, float(quality), self.model, timer=timer)
        self.encode_phases.append(timer.seconds)
        return data

    def decode(self, data: bytes) -> np.ndarray:
        from samic.codec.api import decompress_image
        from samic.entropy.latent_codec import PhaseTimer

        timer = PhaseTimer()
        rgb = decompress_image(data, self.model, self.decoder, timer=timer)
        self.decode_phases.append(timer.seconds)
        return rgb

    def clear_phases(self) -> None:
        self.encode_phases.clear()
        self.decode_phases.clear()

    def phase_summary(self) -> dict[str, float]:
        """Mean seconds per call since the last :meth:`clear_phases`, as result keys:
        ``{encoding,decoding}_{network,entropy_coding}_time``."""
        out = {}
        for side, calls in (("encoding", self.encode_phases), ("decoding", self.decode_phases)):
            out[f"{side}_network_time"] = _mean(sum(v for k, v in c.items() if k != ENTROPY_CODING) for c in calls)
            out[f"{side}_entropy_coding_time"] = _mean(c.get(ENTROPY_CODING, 0.0) for c in calls)
        return out


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
