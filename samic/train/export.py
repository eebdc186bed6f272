"""Turn a training checkpoint into shippable weights (safetensors + sidecar JSON)."""
from __future__ import annotations

from pathlib import Path

import torch

from samic.models import SAMIC
from samic.weights import save_weights


def export_checkpoint(checkpoint: str | Path, out: str | Path, dtype: str = "float16", extra: dict | None = None) -> dict:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = SAMIC(ckpt["preset"])
    if any(k.startswith("g_s_perceptual.") for k in ckpt["model"]):
        model.add_perceptual_decoder()
    model.load_state_dict(ckpt["model"])
    cfg = ckpt.get("config", {})
    info = {"stages": [1, 2] if model.g_s_perceptual is not None else [1], "steps": ckpt["step"],
            "train_dir": cfg.get("train_dir"), "lambda_range": list(model.config.lambda_range),
            "crop": cfg.get("crop"), "batch_size": cfg.get("batch_size"), **(extra or {})}
    return save_weights(model, out, info, dtype=getattr(torch, dtype))
