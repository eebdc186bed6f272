"""Fit the SAMB routers' cluster centres on data, leaving every other weight as it is.

The routers' centres are spherical k-means running means (samic.layers.samb.SemanticRouter).
Training moves them as it goes; this fits them in a few forward passes, for weights trained
before the centres existed or to re-fit them on other data:

    python scripts/fit_router_centres.py --weights samic/assets/weights/samic-lite.safetensors
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from samic.models import SAMIC


@torch.no_grad()
def fit_router_centres(model: SAMIC, batches: Iterable[torch.Tensor], momentum: float = 0.9,
                       seed: int = 0) -> int:
    """Re-seed every SAMB router's centres by k-means++ on the first batch (B, 3, H, W) in
    [0, 1], then move them as running means (``momentum``) over the others; a random quality
    per crop, both decoders when the model has two. Only the routers are put in training
    mode (Gumbel noise never reaches the centres: they follow the noise-free argmax).
    Returns the number of batches used."""
    routers = [block.router for block in model.samb_blocks()]
    was_training = model.training
    saved_momentum = [r.momentum for r in routers]
    generator = torch.Generator().manual_seed(seed)
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)  # k-means++ draws: the same data gives the same centres
    model.eval()
    count = 0
    try:
        for router in routers:
            router.train()
            router.momentum = momentum
            router.centres_ready.fill_(False)
        device = next(model.parameters()).device
        for x in batches:
            x = x.to(device)
            quality = torch.rand(x.shape[0], generator=generator).to(device)
            for decoder in model.decoders:
                model(x, quality=quality, decoder=decoder)
            count += 1
    finally:
        for router, m in zip(routers, saved_momentum):
            router.momentum = m
        torch.set_rng_state(rng_state)
        model.train(was_training)
    return count
