"""SAMB's router and scan orders, as the app and the notebooks show them.

- ``compare_scan_orders``: one image at one quality coded under each scan order (semantic,
  raster, random), real files (``cached_inspect_image``), and ``scan_order_summary``, a plain
  sentence on what the semantic order buys over the others on this image.
- ``position_only_clusters``: a trained router fed all-zero features. Per-image whitening maps
  zero features to zero, so only the gated position term ``pos_gate * pos_proj(PE)`` is left:
  the router's spatial prior, to set beside what it does on the photo.
- ``router_gates``: every block's learned ``pos_gate``.
- ``pick_cluster``: which cluster a cluster panel shows (reset when the block changes).

Nothing here changes the model: the router runs in eval mode and its mode is restored.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, NamedTuple

import numpy as np
import torch

from samic.codec.api import choose_decoder, default_model, read_header
from samic.codec.image_io import load_image
from samic.layers.samb import SAMB, SCAN_ORDERS, ScanSettings, positional_encoding_2d, scan_permutation
from samic.models.samic import SAMIC
from samic.viz import render
from samic.viz.inspect import BlockClusters, Progress, _read_only, cached_inspect_image

# Below these differences between two scan orders, the summary calls them "no measurable change".
PSNR_TOLERANCE_DB = 0.05
SIZE_TOLERANCE = 0.01  # relative file size


class ScanOrderPoint(NamedTuple):
    """One real file of the image coded with every SAMB scanning in ``scan_order``."""

    scan_order: str  # "semantic", "raster" or "random", as read back from the file's header
    num_bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    lpips: float


class PositionPrior(NamedTuple):
    """A block's router on all-zero features: what its position term alone decides."""

    clusters: BlockClusters  # assignment, probs, order (semantic: clusters contiguous), stride
    pos_gate: float  # the learned gate g of the position term
    position_norm: float  # mean over tokens of |g * pos_proj(PE)|, before the query's normalization
    flat: bool  # True when the position term is zero: every cluster ties, argmax picks cluster 0


# ------------------------------------------------------------------------------ the blocks
def samb_block(model: SAMIC, block: str, decoder: str = "mse") -> SAMB:
    """The SAMB module behind a trace name such as "g_a.stage2", "h_s.samb", "h_s.means.samb"
    or "g_s.stage3" (g_s: the ``decoder``'s synthesis transform)."""
    prefix, _, name = block.rpartition(".")
    head, _, part = prefix.partition(".")
    if head == "g_s":
        stages = model.decoder(choose_decoder(model, decoder))
    elif head in ("g_a", "h_a", "h_s"):
        stages = getattr(model, head)
        if part:
            stages = stages[part] if isinstance(stages, torch.nn.ModuleDict) and part in stages else None
    else:
        stages = None
    names = getattr(stages, "names", [])
    if name not in names or not isinstance(stages.layers[names.index(name)], SAMB):
        raise ValueError(f"{block!r} is not a SAMB block of {model.config.name}")
    return stages.layers[names.index(name)]


def router_gates(model: SAMIC, blocks: Iterable[str], decoder: str = "mse") -> dict[str, float]:
    """Each block's learned position gate ``pos_gate``, by trace name."""
    return {block: float(samb_block(model, block, decoder).router.pos_gate.detach()) for block in blocks}


@contextlib.contextmanager
def _eval(module: torch.nn.Module):
    """Eval mode for the duration (training mode would add Gumbel noise and move the centres)."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def position_only_clusters(model: SAMIC, block: str, grid: tuple[int, int], stride: int,
                           decoder: str = "mse") -> PositionPrior:
    """The block's trained router fed all-zero features on an ``grid`` = (h, w) token grid.

    Whitening centres the features per image, so zero features stay zero and the query is
    normalize(pos_gate * pos_proj(PE)): the clusters the position term alone would draw. When
    that term is zero (weights whose router had no position term), all logits tie, every token
    gets the uniform distribution and the argmax is cluster 0; ``flat`` says so.
    """
    router = samb_block(model, block, decoder).router
    height, width = grid
    parameter = next(router.parameters())
    zeros = torch.zeros(1, height * width, router.pos_proj.out_features, device=parameter.device,
                        dtype=parameter.dtype)
    with _eval(router):
        _, ids, probs = router(zeros, height, width)
    position = router.pos_gate * router.pos_proj(
        positional_encoding_2d(height, width, router.n_freqs, parameter.device, parameter.dtype))
    norm = float(position.norm(dim=-1).mean())
    order = scan_permutation(ids, ScanSettings(order="semantic"))
    clusters = BlockClusters(assignment=_read_only(ids.reshape(height, width).cpu().numpy()),
                             probs=_read_only(probs[0].t().reshape(-1, height, width).float().cpu().numpy()),
                             order=_read_only(order[0].cpu().numpy()), stride=stride)
    flat = bool(position.abs().max() == 0)
    return PositionPrior(clusters=clusters, pos_gate=float(router.pos_gate), position_norm=norm, flat=flat)


def pick_cluster(assignment: np.ndarray, requested=None, block: str | None = None,
                 shown_block: str | None = None) -> int:
    """The cluster a panel shows: ``requested`` when it is present in ``assignment`` and the
    block has not changed (``block`` == ``shown_block``), else render.default_cluster. A cluster
    id means nothing in another block, so a selection never carries over."""
    present = {k for k, _ in render.cluster_shares(assignment)}
    if requested is None or block != shown_block:
        return render.default_cluster(assignment)
    try:
        requested = int(requested)
    except (TypeError, ValueError):
        return render.default_cluster(assignment)
    return requested if requested in present else render.default_cluster(assignment)


# -------------------------------------------------------------------------- scan orders
def compare_scan_orders(image, quality: float, decoder: str | None = None, model: SAMIC | None = None,
                        orders: Iterable[str] = SCAN_ORDERS, progress: Progress | None = None
                        ) -> list[ScanOrderPoint]:
    """The image coded at ``quality`` once per scan order: real .samic files, decoded and
    measured (through ``cached_inspect_image``, so the app can show each order afterwards
    at no cost). The order of each point is read back from its file's header."""
    model = default_model() if model is None else model
    rgb = load_image(image)
    orders = list(orders)
    points = []
    for i, order in enumerate(orders):
        step = None if progress is None else (lambda f, d, i=i, o=order: progress((i + f) / len(orders), f"{o}: {d}"))
        ins = cached_inspect_image(rgb, quality, decoder, model, step, scan_order=order)
        points.append(ScanOrderPoint(scan_order=read_header(ins.data).scan_order, num_bytes=ins.num_bytes,
                                     bpp=ins.bpp, psnr=ins.psnr, ms_ssim=ins.ms_ssim, lpips=ins.lpips))
    return points


def scan_order_summary(points: list[ScanOrderPoint], reference: str = "semantic") -> str:
    """What the ``reference`` order buys over the others, in a sentence or two of Markdown,
    judged by the numbers: differences below 0.05 dB and 1 % of the file are called no
    measurable change."""
    by_order = {p.scan_order: p for p in points}
    if reference not in by_order or len(by_order) < 2:
        return "Compare at least two scan orders, the semantic one among them."
    ref = by_order[reference]
    parts, negligible = [], True
    for order, p in by_order.items():
        if order == reference:
            continue
        d_psnr = ref.psnr - p.psnr
        d_size = (ref.num_bytes - p.num_bytes) / p.num_bytes
        negligible &= abs(d_psnr) < PSNR_TOLERANCE_DB and abs(d_size) < SIZE_TOLERANCE
        parts.append(f"{d_psnr:+.3f} dB PSNR and {100 * d_size:+.1f} % bytes against {order}")
    text = f"The {reference} order gives " + "; ".join(parts) + ". "
    if negligible:
        text += ("That is no measurable change: with these weights, the order in which the SAMB blocks "
                 "scan the tokens barely affects the file or the picture.")
    else:
        behind = any(ref.psnr < p.psnr - PSNR_TOLERANCE_DB or ref.num_bytes > p.num_bytes * (1 + SIZE_TOLERANCE)
                     for o, p in by_order.items() if o != reference)
        text += (f"On this image the {reference} order is behind on rate or distortion against some order, "
                 "by more than 0.05 dB or 1 % of the file." if behind else
                 f"On this image the {reference} order comes out ahead by more than 0.05 dB or 1 % of the file "
                 "against some order, and behind by no more than that against any.")
        text += " One image is weak evidence: the RD curves of a set of photos decide."
    if ref.num_bytes < 2000:
        text += f" (This file is only {ref.num_bytes} bytes: a few bytes are a percent.)"
    return text


def router_note(block: str, gates: dict[str, float], prior: PositionPrior | None = None) -> str:
    """Markdown for the cluster panel: every block's ``pos_gate`` (``block`` in bold) and, with
    a position-only ``prior``, what it shows."""
    listed = " · ".join(f"**{name} {gate:.3f}**" if name == block else f"{name} {gate:.3f}"
                        for name, gate in gates.items())
    text = f"Position gate `pos_gate` per block: {listed}."
    if prior is None:
        return text
    shares = render.cluster_shares(prior.clusters.assignment)
    if prior.flat:
        text += (f"\n\nPosition only, {block}: the position term of these weights is zero (|g·pos_proj(PE)| = 0), "
                 "so the router has no spatial prior: every cluster ties and every token lands in cluster "
                 f"{shares[0][0]}. The clusters on the photo come from its content alone.")
    else:
        text += (f"\n\nPosition only, {block}: the same router on all-zero features uses {len(shares)} clusters; "
                 f"mean |g·pos_proj(PE)| = {prior.position_norm:.3f} per token. Where the learned map looks like "
                 "this one, position decided the clusters; where it differs, the photo's content did.")
    return text
