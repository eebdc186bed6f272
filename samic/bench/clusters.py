"""Are SAMB's clusters about the picture or about the position? Statistics of the cluster maps.

Every SAMB of a model assigns each token of its grid to one of K clusters
(``model(x, return_intermediates=True).intermediates.samb[name].assignment``, (B, H, W)).
This module measures, per block, over the photos of a folder:

- **cross-image kappa**: Cohen's kappa of two photos' maps at equal grid positions, over every
  pair of photos of the same size. Maps fixed by position agree across photos (kappa near 1);
  maps that follow content agree only as much as the photos' layouts do.
- **one-token shift test**: the photo shifted by one token of the block (its first ``stride``
  pixel rows or columns cropped off, so the content moves up or left by exactly one token and
  the size stays a whole number of tokens where it was). Kappa between the original map and the
  shifted photo's map *realigned* (original token i+1 against shifted token i, the same content)
  and *grid-locked* (the same grid position, different content). Content-following clusters
  have realigned > grid-locked, positional ones the reverse.
- **NMI with a colour segmentation**: K-means (K = 16, seeded) on each token's mean CIELAB colour
  (the Lab image mean-pooled over the token's pixel footprint); beside it SLIC superpixels from
  scikit-image (each token takes its footprint's majority superpixel) and the chance level of
  NMI (the map against a random permutation of the colour labels: NMI is biased upwards on
  small grids, e.g. ~0.1 on a 24 x 16 grid with 16 labels each).
- **4-neighbour coherence as kappa**: agreement of horizontally and vertically adjacent tokens,
  chance-corrected with the map's own cluster frequencies.
- **effective clusters**: exp of the entropy of one map's cluster usage (K when all K clusters
  are used equally, 1 for a single cluster).

Only tokens whose pixel footprint lies wholly inside the photo count (the model pads images
to a multiple of 64; tokens over the padding are dropped). The pure functions
(:func:`cohen_kappa`, :func:`nmi`, :func:`neighbour_kappa`, :func:`effective_clusters`,
:func:`shift_test`, :func:`colour_segmentation`) take maps as integer arrays and are meant for
notebooks and the app too; :func:`cluster_statistics` runs the whole table for a model and a
list of photos. Undefined kappas (both maps one and the same single cluster: the chance
agreement is 1) count as perfect agreement, 1.0.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, reduce

from samic.layers.samb import DEFAULT_SCAN, ScanSettings

SHIFT_AXES = ("rows", "cols")
COLOUR_CLUSTERS = 16
NMI_CHANCE_DRAWS = 5


# ----------------------------------------------------------------------------- pure statistics
def _labels(a) -> np.ndarray:
    """Any integer map (array or tensor, any shape) -> flat int64 array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a).astype(np.int64, copy=False).ravel()


def _contingency(a, b) -> np.ndarray:
    """Joint counts (n_a_labels, n_b_labels) of two equally sized label maps."""
    a, b = _labels(a), _labels(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in size: {a.size} and {b.size} tokens")
    if a.size == 0:
        raise ValueError("empty label maps")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    na, nb = ia.max() + 1, ib.max() + 1
    return np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb).astype(np.float64)


def _kappa(observed: float, chance: float) -> float:
    if chance >= 1.0 - 1e-12:  # one and the same single label everywhere: agreement is total
        return 1.0
    return float((observed - chance) / (1.0 - chance))


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two label maps of equal shape, position by position.

    (p_o - p_e) / (1 - p_e): p_o the fraction of positions with equal labels, p_e the agreement
    expected from each map's own label frequencies. 1 = identical, ~0 = chance, < 0 = worse.
    Labels are compared as values (cluster 3 in ``a`` agrees with cluster 3 in ``b``).
    """
    a, b = _labels(a), _labels(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in size: {a.size} and {b.size} tokens")
    if a.size == 0:
        raise ValueError("empty label maps")
    values, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inverse[:a.size], inverse[a.size:]
    pa = np.bincount(ia, minlength=len(values)) / a.size
    pb = np.bincount(ib, minlength=len(values)) / b.size
    return _kappa(float(np.mean(ia == ib)), float(pa @ pb))


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def nmi(a, b) -> float:
    """Normalized mutual information of two label maps of equal shape, in [0, 1].

    I(a; b) / ((H(a) + H(b)) / 2) (the arithmetic normalization, scikit-learn's default).
    Label values do not matter, only the partitions. Two single-label maps give 1.0, one
    single-label map against a varied one 0.0.
    """
    joint = _contingency(a, b)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    ha, hb = _entropy(pa), _entropy(pb)
    if ha == 0.0 and hb == 0.0:
        return 1.0
    mask = joint > 0
    mi = float((joint[mask] * np.log(joint[mask] / np.outer(pa, pb)[mask])).sum())
    return float(np.clip(mi / ((ha + hb) / 2), 0.0, 1.0))


def nmi_chance(a, b, draws: int = NMI_CHANCE_DRAWS, seed: int = 0) -> float:
    """NMI of ``a`` against random permutations of ``b`` (mean of ``draws``): the level NMI
    reaches by chance with these label frequencies and this many tokens."""
    rng = np.random.default_rng(seed)
    flat_a, flat_b = _labels(a), _labels(b)
    return float(np.mean([nmi(flat_a, rng.permutation(flat_b)) for _ in range(draws)]))


def neighbour_kappa(labels) -> float:
    """4-neighbour coherence of a 2-D label map (H, W) as a kappa.

    p_o: the fraction of horizontally and vertically adjacent token pairs with equal labels;
    p_e: sum_k p_k^2 with p_k the map's own label frequencies (what the same labels scattered
    at random would give). 1 = every neighbour agrees, ~0 = salt and pepper.
    """
    m = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if m.ndim != 2 or (m.shape[0] < 2 and m.shape[1] < 2):
        raise ValueError(f"neighbour_kappa needs a 2-D map with at least two tokens in a row or column, got {m.shape}")
    equal = np.concatenate([(m[:, 1:] == m[:, :-1]).ravel(), (m[1:, :] == m[:-1, :]).ravel()])
    _, counts = np.unique(m, return_counts=True)
    p = counts / m.size
    return _kappa(float(equal.mean()), float(p @ p))


def effective_clusters(labels) -> float:
    """exp(entropy) of a map's label usage: K for K labels used equally, 1 for a single label."""
    _, counts = np.unique(_labels(labels), return_counts=True)
    return float(np.exp(_entropy(counts / counts.sum())))


@dataclass(frozen=True)
class ShiftTest:
    """Kappas between a map and the map of the same photo shifted by one token."""

    realigned: float  # the same content compared: original token i + 1 against shifted token i
    grid_locked: float  # the same grid position compared: original token i against shifted token i


def shift_test(original, shifted, axis: str = "cols") -> ShiftTest:
    """Compare the map of a photo (h, w) with the map of the photo shifted by one token.

    ``shifted`` is the map of the photo with its first ``stride`` pixel rows (``axis='rows'``)
    or columns (``'cols'``) cropped off, so its token i shows what the original's token i + 1
    shows. Both kappas are taken on the overlap: realigned compares original[1:] with
    shifted[:n], grid-locked original[:n] with shifted[:n] along ``axis``.
    """
    if axis not in SHIFT_AXES:
        raise ValueError(f"axis must be one of {SHIFT_AXES}, got {axis!r}")
    a = original.detach().cpu().numpy() if isinstance(original, torch.Tensor) else np.asarray(original)
    b = shifted.detach().cpu().numpy() if isinstance(shifted, torch.Tensor) else np.asarray(shifted)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError("shift_test expects 2-D maps")
    if axis == "rows":  # work along columns: transpose rows into columns
        a, b = a.T, b.T
    rows = min(a.shape[0], b.shape[0])
    n = min(a.shape[1] - 1, b.shape[1])
    if n < 1 or rows < 1:
        raise ValueError(f"maps {a.shape} and {b.shape} do not overlap after a one-token shift")
    a, b = a[:rows], b[:rows]
    return ShiftTest(realigned=cohen_kappa(a[:, 1:n + 1], b[:, :n]),
                     grid_locked=cohen_kappa(a[:, :n], b[:, :n]))


def shift_image(x: torch.Tensor, pixels: int, axis: str) -> torch.Tensor:
    """(B, C, H, W) -> the image with its first ``pixels`` rows or columns cropped off."""
    if axis not in SHIFT_AXES:
        raise ValueError(f"axis must be one of {SHIFT_AXES}, got {axis!r}")
    return x[..., pixels:, :] if axis == "rows" else x[..., :, pixels:]


# ----------------------------------------------------------------------------- colour references
def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = 100) -> np.ndarray:
    """Seeded K-means (k-means++ start, Lloyd iterations) of points (n, d) -> labels (n,).

    With fewer than ``k`` distinct points, there are as many clusters as distinct points.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    k = min(k, len(np.unique(points, axis=0)))
    rng = np.random.default_rng(seed)
    centres = [points[rng.integers(n)]]
    d2 = ((points - centres[0]) ** 2).sum(1)
    while len(centres) < k:
        centres.append(points[rng.choice(n, p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((points - centres[-1]) ** 2).sum(1))
    centres = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=points[:, j], minlength=k) for j in range(points.shape[1])], 1)
        updated = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        if np.allclose(updated, centres):
            break
        centres = updated
    return labels


def _footprints(rgb: np.ndarray, stride: int, grid: tuple[int, int]) -> np.ndarray:
    """The pixels under a token grid: rgb (H, W, 3) uint8 -> float (h*stride, w*stride, 3) in [0, 1]."""
    h, w = grid
    if rgb.shape[0] < h * stride or rgb.shape[1] < w * stride:
        raise ValueError(f"a {h}x{w} grid of {stride}-pixel tokens does not fit a {rgb.shape[1]}x{rgb.shape[0]} image")
    return rgb[:h * stride, :w * stride].astype(np.float64) / 255.0


def token_lab(rgb: np.ndarray, stride: int, grid: tuple[int, int]) -> np.ndarray:
    """Mean CIELAB colour of each token: rgb (H, W, 3) uint8 -> (h, w, 3), the Lab image
    mean-pooled over each token's stride x stride footprint (tokens from the top-left)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(_footprints(rgb, stride, grid))
    return reduce(lab, "(h s1) (w s2) c -> h w c", "mean", s1=stride, s2=stride)


def colour_segmentation(rgb: np.ndarray, stride: int, grid: tuple[int, int], k: int = COLOUR_CLUSTERS,
                        seed: int = 0) -> np.ndarray:
    """K-means of the tokens' mean Lab colours: rgb (H, W, 3) uint8 -> labels (h, w) int64."""
    lab = token_lab(rgb, stride, grid)
    return kmeans(rearrange(lab, "h w c -> (h w) c"), k, seed).reshape(grid)


def slic_segmentation(rgb: np.ndarray, stride: int, grid: tuple[int, int], n_segments: int = COLOUR_CLUSTERS,
                      compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels (scikit-image, about ``n_segments``) at the token grid: each token takes
    the superpixel covering most of its footprint. rgb (H, W, 3) uint8 -> labels (h, w) int64."""
    from skimage.segmentation import slic

    pixels = slic(_footprints(rgb, stride, grid), n_segments=n_segments, compactness=compactness, start_label=0)
    per_token = rearrange(pixels, "(h s1) (w s2) -> (h w) (s1 s2)", s1=stride, s2=stride)
    n_labels = int(pixels.max()) + 1
    counts = np.zeros((per_token.shape[0], n_labels), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(per_token.shape[0]), per_token.shape[1]), per_token.ravel()), 1)
    return counts.argmax(1).reshape(grid)


# ----------------------------------------------------------------------------- maps from a model
@dataclass(frozen=True)
class BlockMap:
    """One SAMB's cluster map of one photo."""

    labels: np.ndarray  # (h, w) int64 cluster id of each token wholly inside the photo
    stride: int  # pixels per token side (image size / token-grid size)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.require(rgb, requirements=("C", "W"))).permute(2, 0, 1)[None].float() / 255.0


def cluster_maps(model, x: torch.Tensor, quality: float = 0.5,
                 scan: ScanSettings = DEFAULT_SCAN) -> dict[str, BlockMap]:
    """Every SAMB's cluster map of one photo x (1, 3, H, W) in [0, 1], block name -> BlockMap.

    One forward pass (no gradients); the model should be in eval mode (the noise-free argmax
    assignment). Tokens over the padding to a multiple of 64 are dropped.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"cluster_maps takes one photo (1, 3, H, W), got {tuple(x.shape)}")
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(x.to(device), quality=quality, return_intermediates=True, scan=scan)
    height, width = out.original_size
    padded_h, padded_w = out.padded_size
    maps = {}
    for name, inter in out.intermediates.samb.items():
        grid_h, grid_w = inter.assignment.shape[-2:]
        stride = padded_h // grid_h
        if stride * grid_h != padded_h or stride * grid_w != padded_w:
            raise ValueError(f"{name}: token grid {grid_h}x{grid_w} does not tile "
                             f"the padded image {padded_h}x{padded_w}")
        labels = inter.assignment[0, :height // stride, :width // stride].cpu().numpy().astype(np.int64)
        maps[name] = BlockMap(labels=labels, stride=stride)
    return maps


def shifted_maps(model, x: torch.Tensor, strides: Sequence[int], quality: float = 0.5,
                 scan: ScanSettings = DEFAULT_SCAN, axes: Sequence[str] = SHIFT_AXES
                 ) -> dict[tuple[int, str], dict[str, BlockMap]]:
    """The maps of x shifted by each stride along each axis: (stride, axis) -> cluster_maps.
    Shifts that would leave fewer than two tokens along the axis are left out."""
    result = {}
    for stride in sorted(set(strides)):
        for axis in axes:
            size = x.shape[-2] if axis == "rows" else x.shape[-1]
            if size - stride >= 2 * stride:
                result[(stride, axis)] = cluster_maps(model, shift_image(x, stride, axis), quality, scan)
    return result


# ----------------------------------------------------------------------------- per photo, per folder
@dataclass(frozen=True)
class ImageBlockStats:
    """The per-photo statistics of one SAMB."""

    image: str
    block: str
    stride: int
    grid: tuple[int, int]  # (h, w) tokens wholly inside the photo
    shift: dict[str, ShiftTest]  # axis ('rows', 'cols') -> shift test; axes too short are absent
    nmi_colour: float  # NMI with K-means on mean token Lab colour
    nmi_colour_chance: float  # NMI of the map with permuted colour labels
    nmi_slic: float | None  # NMI with SLIC superpixels (None when not computed)
    neighbour_kappa: float
    effective_clusters: float


def image_statistics(model, rgb: np.ndarray, quality: float = 0.5, scan: ScanSettings = DEFAULT_SCAN,
                     name: str = "", axes: Sequence[str] = SHIFT_AXES, colour_clusters: int = COLOUR_CLUSTERS,
                     seed: int = 0, slic: bool = True) -> tuple[dict[str, BlockMap], list[ImageBlockStats]]:
    """Every per-photo statistic of every SAMB for one photo rgb (H, W, 3) uint8.

    1 + len(axes) x (number of distinct block strides) forward passes. Returns the photo's
    maps (for cross-image kappas) and one ImageBlockStats per block.
    """
    x = to_tensor(rgb)
    maps = cluster_maps(model, x, quality, scan)
    shifted = shifted_maps(model, x, [m.stride for m in maps.values()], quality, scan, axes)
    stats = []
    for block, bmap in maps.items():
        grid = bmap.labels.shape
        shift = {axis: shift_test(bmap.labels, shifted[(bmap.stride, axis)][block].labels, axis)
                 for axis in axes if (bmap.stride, axis) in shifted}
        colour = colour_segmentation(rgb, bmap.stride, grid, colour_clusters, seed)
        stats.append(ImageBlockStats(
            image=name, block=block, stride=bmap.stride, grid=tuple(grid), shift=shift,
            nmi_colour=nmi(bmap.labels, colour), nmi_colour_chance=nmi_chance(bmap.labels, colour, seed=seed),
            nmi_slic=nmi(bmap.labels, slic_segmentation(rgb, bmap.stride, grid, colour_clusters)) if slic else None,
            neighbour_kappa=neighbour_kappa(bmap.labels), effective_clusters=effective_clusters(bmap.labels)))
    return maps, stats


@dataclass(frozen=True)
class PairKappa:
    """Cross-image kappa of one block's maps of two photos of the same size."""

    block: str
    image_a: str
    image_b: str
    kappa: float


def cross_image_kappas(maps: dict[str, dict[str, BlockMap]], sizes: dict[str, tuple[int, int]]) -> list[PairKappa]:
    """Kappa at equal grid positions for every block and every pair of equally sized photos.
    maps: image -> block -> BlockMap; sizes: image -> (H, W) in pixels."""
    pairs = []
    for a, b in itertools.combinations(maps, 2):
        if sizes[a] != sizes[b]:
            continue
        for block in maps[a]:
            pairs.append(PairKappa(block, a, b, cohen_kappa(maps[a][block].labels, maps[b][block].labels)))
    return pairs


@dataclass(frozen=True)
class BlockStats:
    """One SAMB's statistics averaged over the photos (pairs, for the cross-image kappa).
    NaN where nothing could be measured (no pair of equally sized photos, photos too small)."""

    block: str
    stride: int
    n_images: int
    n_pairs: int
    cross_image_kappa: float
    shift_realigned: float  # mean over photos and shift axes
    shift_grid_locked: float
    nmi_colour: float
    nmi_colour_chance: float
    nmi_slic: float | None
    neighbour_kappa: float
    effective_clusters: float


@dataclass(frozen=True)
class ClusterReport:
    quality: float
    scan: dict
    images: list[str]
    n_clusters: int | None
    axes: list[str]
    blocks: list[BlockStats]
    per_image: list[ImageBlockStats] = field(repr=False)
    pairs: list[PairKappa] = field(repr=False)

    @classmethod
    def from_dict(cls, data: dict) -> "ClusterReport":
        """A report read back from its JSON (``samic bench clusters --json``); the per-photo
        and per-pair rows stay plain dicts."""
        return cls(**{**data, "blocks": [BlockStats(**b) for b in data["blocks"]]})


def _mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def summarize(per_image: Sequence[ImageBlockStats], pairs: Sequence[PairKappa]) -> list[BlockStats]:
    """Per-photo and per-pair statistics -> one BlockStats per block (in first-seen order)."""
    blocks = list(dict.fromkeys(s.block for s in per_image))
    rows = []
    for block in blocks:
        own = [s for s in per_image if s.block == block]
        shifts = [t for s in own for t in s.shift.values()]
        rows.append(BlockStats(
            block=block, stride=own[0].stride, n_images=len(own),
            n_pairs=sum(p.block == block for p in pairs),
            cross_image_kappa=_mean(p.kappa for p in pairs if p.block == block),
            shift_realigned=_mean(t.realigned for t in shifts), shift_grid_locked=_mean(t.grid_locked for t in shifts),
            nmi_colour=_mean(s.nmi_colour for s in own), nmi_colour_chance=_mean(s.nmi_colour_chance for s in own),
            nmi_slic=_mean(s.nmi_slic for s in own) if own[0].nmi_slic is not None else None,
            neighbour_kappa=_mean(s.neighbour_kappa for s in own),
            effective_clusters=_mean(s.effective_clusters for s in own)))
    return rows


def cluster_statistics(model, images: Sequence[str | Path], quality: float = 0.5, scan: ScanSettings = DEFAULT_SCAN,
                       axes: Sequence[str] = SHIFT_AXES, colour_clusters: int = COLOUR_CLUSTERS, seed: int = 0,
                       slic: bool = True, progress: Callable[[str], None] | None = None) -> ClusterReport:
    """The whole cluster-statistics table of a model over a list of photo files.

    The model is put in eval mode for the measurement (and back to training mode after, if it
    was). Per photo: 1 + len(axes) x (distinct strides) forward passes; see image_statistics.
    """
    from samic.codec.image_io import load_image as load_rgb

    if not images:
        raise ValueError("no images")
    was_training = model.training
    model.eval()
    try:
        maps, sizes, per_image = {}, {}, []
        for path in images:
            name = Path(path).name
            if progress:
                progress(name)
            rgb = load_rgb(path)
            maps[name], stats = image_statistics(model, rgb, quality, scan, name, axes, colour_clusters, seed, slic)
            sizes[name] = rgb.shape[:2]
            per_image.extend(stats)
    finally:
        model.train(was_training)
    pairs = cross_image_kappas(maps, sizes)
    config = getattr(model, "config", None)
    return ClusterReport(quality=float(quality), scan=scan._asdict(), images=list(maps),
                         n_clusters=getattr(config, "n_clusters", None), axes=list(axes),
                         blocks=summarize(per_image, pairs), per_image=per_image, pairs=pairs)


# ----------------------------------------------------------------------------- output
def format_table(report: ClusterReport) -> str:
    """The report as a Markdown table, one row per block."""
    k = report.n_clusters or "K"
    slic = any(b.nmi_slic is not None for b in report.blocks)
    head = (["block", "stride", "cross-image kappa (pairs)", "shift kappa realigned / grid-locked",
             "NMI colour K-means (chance)"] + (["NMI SLIC"] if slic else [])
            + ["4-neighbour kappa", f"clusters used (of {k})"])
    lines = [f"cluster statistics of {len(report.images)} photos at q = {report.quality:g}, scan order "
             f"{report.scan['order']}, shift along {' and '.join(report.axes)} (mean)", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for b in report.blocks:
        cells = [b.block, f"{b.stride}", f"{b.cross_image_kappa:.2f} ({b.n_pairs})",
                 f"{b.shift_realigned:.2f} / {b.shift_grid_locked:.2f}",
                 f"{b.nmi_colour:.2f} ({b.nmi_colour_chance:.2f})"]
        if slic:
            cells.append(f"{b.nmi_slic:.2f}")
        cells += [f"{b.neighbour_kappa:.2f}", f"{b.effective_clusters:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
