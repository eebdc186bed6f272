"""Shipped weights: safetensors files with a JSON sidecar (preset, training, sha256).

Loading uses safetensors only (never pickle), verifies the file's sha256 against the
sidecar, and builds the model from the preset recorded in the file's metadata.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from samic.assets import locate
from samic.models import DEFAULT_MODEL, PRESETS, SAMIC

WEIGHTS_DIR = locate("weights")  # package data: samic/assets/weights


class WeightsError(ValueError):
    """Weights missing, corrupt, or not matching the model."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_weights_path(name: str = DEFAULT_MODEL) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_weights(model: SAMIC, path: str | Path, info: dict | None = None,
                 dtype: torch.dtype = torch.float16) -> dict:
    """Write ``model``'s state dict (floating tensors cast to ``dtype``) and its sidecar JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    meta = {"preset": model.config.name, "decoders": ",".join(model.decoders)}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    sidecar = {"file": path.name, "preset": model.config.name, "decoders": list(model.decoders),
               "dtype": str(dtype).replace("torch.", ""), "sha256": sha256_file(path),
               "bytes": path.stat().st_size, **(info or {})}
    sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def load_model(name_or_path: str | Path | None = None, device: str | torch.device = "cpu",
               verify: bool = True) -> SAMIC:
    """Load a SAMIC model in eval mode, float32.

    ``None`` loads the shipped default (samic-lite); a preset name loads
    samic/assets/weights/NAME.safetensors (package data); anything else is a path to a .safetensors file.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    path = default_weights_path(str(name_or_path)) if str(name_or_path) in PRESETS else Path(name_or_path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if verify:
        side = sidecar_path(path)
        if not side.is_file():
            raise WeightsError(f"weights sidecar not found: {side} (needed to verify {path.name})")
        try:
            expected = json.loads(side.read_text())["sha256"]
        except (ValueError, KeyError) as exc:
            raise WeightsError(f"weights sidecar {side} is unreadable: {exc}") from None
        if sha256_file(path) != expected:
            raise WeightsError(f"weights file {path} is corrupt: sha256 does not match {side.name}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise WeightsError(f"cannot read weights {path}: {exc}") from None
    preset = meta.get("preset")
    if preset not in PRESETS:
        raise WeightsError(f"weights {path} name an unknown preset {preset!r}")
    model = SAMIC(preset)
    if any(k.startswith("g_s_perceptual.") for k in state):
        model.add_perceptual_decoder()
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise WeightsError(f"weights {path} do not match preset {preset}: {str(exc).splitlines()[0]}") from None
    model.weights_path = str(path)
    return model.to(device).eval()
