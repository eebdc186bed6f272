"""Pure functions that turn an Inspection's arrays into pictures.

Images are uint8 (H, W, 3) numpy arrays (matplotlib, Agg canvas: no pyplot state, safe in
threads); interactive charts are plotly figures. Nothing here runs the model.

Token grids: a SAMB at stride s sees the padded image (H', W') as an (H'/s, W'/s) grid of
tokens; token (r, c) covers the pixels [r*s, (r+1)*s) x [c*s, (c+1)*s). Maps are drawn over
the image with that extent and cropped to the real H x W.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from plotly.subplots import make_subplots

# 20 well separated colours (Glasbey-like); cluster k uses PALETTE[k % 20].
PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128)], dtype=np.uint8)
CODEC_COLORS = {"samic": "#d62728", "jpeg": "#1f77b4", "webp": "#2ca02c", "avif": "#9467bd"}
METRIC_LABELS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS-Alex (lower is better)"}
MAX_PATH_POINTS = 4000  # longer scan paths are drawn with every k-th token
MAX_GRID_SIDE = 160  # order heatmaps are strided down to at most this many cells per side


def upsample_tokens(grid: np.ndarray, stride: int, size: tuple[int, int]) -> np.ndarray:
    """(h, w) token values -> (H, W) pixel values (nearest: each token covers stride^2 pixels),
    cropped to ``size`` = (H, W)."""
    return np.repeat(np.repeat(grid, stride, axis=0), stride, axis=1)[:size[0], :size[1]]


def cluster_overlay(image: np.ndarray, assignment: np.ndarray, stride: int, opacity: float = 0.5,
                    boundaries: bool = True, legend: bool = True) -> np.ndarray:
    """Colour each pixel by its token's cluster, blended over the image.

    image (H, W, 3) uint8; assignment (h, w) cluster ids; opacity in [0, 1] (0: the image only).
    Cluster boundaries are darkened; a legend strip (cluster id on its colour, share of tokens)
    is appended below. Returns uint8 (H [+ legend], W, 3).
    """
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    height, width = image.shape[:2]
    ids = upsample_tokens(assignment, stride, (height, width))
    # label2rgb colours the labels present in increasing order: give cluster k PALETTE[k]
    colors = [PALETTE[k % len(PALETTE)] / 255.0 for k in np.unique(ids)]
    out = 255 * label2rgb(ids, image / 255.0, colors=colors, alpha=opacity, bg_label=-1, image_alpha=1.0,
                          saturation=1.0)
    if boundaries and opacity > 0:
        out[find_boundaries(ids, mode="inner")] *= 1 - 0.6 * min(1.0, 2 * opacity)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if not legend:
        return out
    return np.concatenate([out, _legend_strip(assignment, width)], axis=0)


def cluster_shares(assignment: np.ndarray) -> list[tuple[int, float]]:
    """(cluster id, share of tokens in [0, 1]) of the clusters present, by id."""
    present, counts = np.unique(assignment, return_counts=True)
    return [(int(k), float(n) / assignment.size) for k, n in zip(present, counts)]


def default_cluster(assignment: np.ndarray, max_share: float = 0.25) -> int:
    """A cluster worth drawing the scan path of: the largest one with at most ``max_share``
    of the tokens (a dominant cluster's path covers the whole image), else the largest."""
    shares = cluster_shares(assignment)
    small = [ks for ks in shares if ks[1] <= max_share]
    return max(small or shares, key=lambda ks: ks[1])[0]


def _legend_strip(assignment: np.ndarray, width: int) -> np.ndarray:
    """Swatches of the clusters present, each labelled with its id and share of tokens."""
    shares = cluster_shares(assignment)
    unit = 1 if width < 480 else 2 if width < 960 else 3  # legend scale for larger images
    cell, row, box = 52 * unit, 14 * unit + 6, 12 * unit
    font = ImageFont.load_default(size=10 * unit)
    per_row = max(1, width // cell)
    strip = Image.new("RGB", (width, row * math.ceil(len(shares) / per_row) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, (k, share) in enumerate(shares):
        x, y = (i % per_row) * cell + 2, (i // per_row) * row + 3
        draw.rectangle([x, y, x + box, y + box], fill=tuple(int(v) for v in PALETTE[k % len(PALETTE)]),
                       outline=(0, 0, 0))
        label = f"{k}: {100 * share:.0f}%" if share >= 0.01 else f"{k}: <1%"
        draw.text((x + box + 3 * unit, y), label, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def assignment_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in bits of the soft assignment of each token: (K, h, w) -> (h, w), in [0, log2 K]."""
    p = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    return (-(p * np.log2(p)).sum(0)).astype(np.float32)


def _render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _map_figure(image: np.ndarray, values: np.ndarray, extent_size: tuple[int, int], title: str,
                colorbar_label: str, cmap: str, vmin: float, vmax: float, alpha: float,
                width_px: int = 720) -> np.ndarray:
    """A value map drawn over a grey version of the image with a colour bar.

    values cover the box (0, 0)-(extent W, extent H) in image pixels (nearest interpolation);
    the axes show the real image, so padding is cropped away.
    """
    height, width = image.shape[:2]
    dpi, title_in = 100, 0.7  # room above the axes for the title (and the app's label chip)
    fig_w = width_px / dpi
    axes_h = 0.8 * fig_w * height / width  # the axes are 80% of the width, aspect kept
    fig_h = axes_h + title_in + 0.1
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes((0.02, 0.1 / fig_h, 0.8, axes_h / fig_h))
    gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    ax.imshow(gray, cmap="gray", vmin=0, vmax=255, extent=(0, width, height, 0))
    shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation="nearest",
                      extent=(0, extent_size[1], extent_size[0], 0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    cax = fig.add_axes((0.85, 0.1 / fig_h + 0.1 * axes_h / fig_h, 0.03, 0.8 * axes_h / fig_h))
    fig.colorbar(shown, cax=cax).set_label(colorbar_label)
    return _render(fig)


def entropy_map(image: np.ndarray, probs: np.ndarray, stride: int, block: str = "") -> np.ndarray:
    """The soft-assignment entropy of one SAMB over the image, with a colour bar (bits)."""
    entropy = assignment_entropy(probs)
    h, w = entropy.shape
    k = probs.shape[0]
    return _map_figure(image, entropy, (h * stride, w * stride),
                       f"{block} assignment entropy (mean {entropy.mean():.2f} of {math.log2(k):.0f} bits)",
                       "entropy (bits)", "magma", 0.0, math.log2(k), alpha=0.75)


def error_heatmap(original: np.ndarray, reconstruction: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Per-pixel mean absolute error over RGB in 8-bit levels, with a colour bar; the scale
    tops out at ``vmax`` (default: the 99.5th percentile, at least 1)."""
    error = np.abs(original.astype(np.float32) - reconstruction.astype(np.float32)).mean(-1)
    if vmax is None:
        vmax = max(1.0, float(np.ceil(np.percentile(error, 99.5))))
    height, width = error.shape
    return _map_figure(original, error, (height, width),
                       f"|original - reconstruction| (mean {error.mean():.2f} levels)",
                       "mean absolute error (8-bit levels)", "inferno", 0.0, vmax, alpha=0.9)


def bits_per_pixel_map(bits_y: np.ndarray, bits_z: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Estimated bits per pixel: y bits spread over their 16x16 pixels plus z bits over their
    64x64, (h, w) and (h', w') -> (H, W) cropped to ``size``."""
    return upsample_tokens(bits_y / 256.0, 16, size) + upsample_tokens(bits_z / 4096.0, 64, size)


def bit_allocation_map(image: np.ndarray, bits_y: np.ndarray, bits_z: np.ndarray,
                       file_bpp: float | None = None) -> np.ndarray:
    """Where the bits go: the estimated bits per pixel of each 16x16 block over the image."""
    height, width = image.shape[:2]
    bpp = bits_per_pixel_map(bits_y, bits_z, (height, width))
    vmax = max(float(np.percentile(bpp, 99.5)), 1e-3)
    title = f"estimated bits per pixel (mean {bpp.mean():.3f}"
    title += f", file {file_bpp:.3f} bpp)" if file_bpp is not None else ")"
    return _map_figure(image, bpp, (height, width), title, "bits per pixel", "viridis", 0.0, vmax, alpha=0.8)


def _background(image: np.ndarray, max_side: int = 512) -> dict:
    """The image as a dimmed plotly layout image in pixel coordinates."""
    height, width = image.shape[:2]
    small = Image.fromarray(image)
    small.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    source = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    return dict(source=source, xref="x", yref="y", x=0, y=0, sizex=width, sizey=height,
                sizing="stretch", opacity=0.45, layer="below")


SCAN_ORDER_TITLES = {"semantic": "semantic<br>(cluster by cluster)", "raster": "raster<br>(row by row)",
                     "random": "random<br>(a fixed shuffle)"}
MAX_ARROWS = 12  # direction arrows drawn along a scan path


def scan_path_figure(image: np.ndarray, assignment: np.ndarray, order: np.ndarray, stride: int,
                     cluster: int, block: str = "", scan_order: str = "semantic") -> go.Figure:
    """The scan path of one cluster: its tokens in the order the SAMB scans them (``order``,
    the block's permutation under ``scan_order``), drawn over the image.

    Markers are coloured by scan step from the cluster's first (dark) to its last (bright)
    token (colour bar), a grey line
    joins consecutive tokens of the cluster, arrows along it give the direction, and the
    first and last tokens are marked "start" and "end" (legend). In the semantic order a
    cluster is one contiguous run of steps; in the raster and random orders its tokens are
    spread over the whole scan, and the title says in how many runs. The axes cover the whole
    token grid: the network pads the image, and tokens over the padding are scanned too."""
    height, width = image.shape[:2]
    w = assignment.shape[1]
    in_cluster = assignment.reshape(-1)[order] == cluster
    scanned = order[in_cluster]
    steps_all = np.flatnonzero(in_cluster)
    step = max(1, math.ceil(scanned.size / MAX_PATH_POINTS))
    shown, steps = scanned[::step], steps_all[::step]
    x = (shown % w + 0.5) * stride
    y = (shown // w + 0.5) * stride
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color="rgba(0,0,0,0.3)", width=1),
                             hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="markers", showlegend=False,
        marker=dict(size=8 if shown.size < 400 else 5 if shown.size < 2000 else 3,
                    color=steps, colorscale="Viridis", colorbar=dict(title="scan step<br>(dark: first)"),
                    line=dict(width=0)),
        hovertemplate="token (%{y:.0f}, %{x:.0f})<br>scan step %{marker.color}<extra></extra>"))
    annotations = []
    if scanned.size:
        for name, index, symbol, colour in (("start", 0, "triangle-right", "#2ca02c"),
                                            ("end", -1, "square", "#d62728")):
            fig.add_trace(go.Scatter(
                x=[x[index]], y=[y[index]], mode="markers", name=f"{name} (step {steps[index]})",
                marker=dict(symbol=symbol, size=15, color=colour, line=dict(color="white", width=2)),
                hovertemplate=f"{name}: scan step {steps[index]}<extra></extra>"))
        # arrows on evenly spaced segments of the path (consecutive tokens of the cluster)
        segments = [i for i in np.linspace(0, shown.size - 2, min(MAX_ARROWS, shown.size - 1)).round().astype(int)
                    if shown.size > 1 and (x[i], y[i]) != (x[i + 1], y[i + 1])]
        for i in dict.fromkeys(segments):
            annotations.append(dict(x=x[i + 1], y=y[i + 1], ax=x[i], ay=y[i], xref="x", yref="y", axref="x",
                                    ayref="y", showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=1.5,
                                    arrowcolor="rgba(0,0,0,0.75)", text=""))
    share = 100 * scanned.size / assignment.size
    title = f"{block} cluster {cluster}: {scanned.size} tokens ({share:.1f}%), {scan_order} order"
    if scanned.size:
        runs = 1 + int(np.count_nonzero(np.diff(steps_all) > 1))
        title += f", steps {steps_all[0]}-{steps_all[-1]} of {assignment.size}"
        title += "" if runs == 1 else f" in {runs} runs"
    if step > 1:
        title += f" (1 in {step} shown)"
    fig.update_layout(title=dict(text=title, font=dict(size=13)), images=[_background(image)],
                      annotations=annotations, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
                      height=460, legend=dict(orientation="h", x=0, y=-0.02, yanchor="top"))
    # the whole token grid: tokens over the padding (beyond the image) are scanned too
    fig.update_xaxes(range=[0, max(width, assignment.shape[1] * stride)], showgrid=False, visible=False,
                     constrain="domain")
    fig.update_yaxes(range=[max(height, assignment.shape[0] * stride), 0], showgrid=False, visible=False,
                     scaleanchor="x")
    return fig


def scan_positions(order: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Where each token is visited: (h*w,) scan order -> (h, w) scan step of every token."""
    steps = np.empty(order.size, np.int64)
    steps[order] = np.arange(order.size)
    return steps.reshape(grid)


def scan_orders(assignment: np.ndarray) -> dict[str, np.ndarray]:
    """The block's permutation under each scan order (samic.layers.samb.scan_permutation, the
    codec's own, default seed): "semantic" from these cluster ids, "raster", "random"."""
    import torch

    from samic.layers.samb import SCAN_ORDERS, ScanSettings, scan_permutation

    ids = torch.from_numpy(np.ascontiguousarray(assignment).reshape(1, -1).astype(np.int64))
    return {name: scan_permutation(ids, ScanSettings(order=name))[0].numpy() for name in SCAN_ORDERS}


def order_comparison_figure(assignment: np.ndarray, order: np.ndarray, block: str = "",
                            scan_order: str = "semantic") -> go.Figure:
    """The scan step of every token under the three scan orders (semantic: cluster by cluster,
    raster, random), side by side on the token grid with one shared colour scale. ``order`` is
    the block's permutation in the file (``scan_order``), marked "this file"; the other two are
    what the codec would do with the same cluster ids."""
    h, w = assignment.shape
    stride = max(1, math.ceil(max(h, w) / MAX_GRID_SIDE))
    orders = {**scan_orders(assignment), scan_order: order}
    titles = [SCAN_ORDER_TITLES[name].replace("<br>", " (this file)<br>" if name == scan_order else "<br>")
              for name in orders]
    fig = make_subplots(rows=1, cols=len(orders), horizontal_spacing=0.04, subplot_titles=titles)
    for col, name in enumerate(orders, start=1):
        steps = scan_positions(orders[name], (h, w))[::stride, ::stride]
        fig.add_trace(go.Heatmap(z=steps, x=np.arange(0, w, stride), y=np.arange(0, h, stride), name=name,
                                 coloraxis="coloraxis",
                                 hovertemplate="token (%{y}, %{x})<br>scan step %{z}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col,
                         showticklabels=False, constrain="domain")
        fig.update_xaxes(showticklabels=False, row=1, col=col, constrain="domain")
    note = f", 1 in {stride} tokens per side shown" if stride > 1 else ""
    fig.update_layout(title=dict(text=f"{block} scan orders on the {h} x {w} token grid{note}", font=dict(size=13)),
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=h * w - 1,
                                     colorbar=dict(title="scan step<br>(dark: first)")),
                      margin=dict(l=10, r=10, t=80, b=10), height=360)
    return fig


def effective_rank(values: np.ndarray) -> float:
    """Entropy effective rank exp(H(p)), p = s / sum(s) (Roy & Vetterli 2007); 0 for all zeros."""
    s = np.asarray(values, np.float64)
    s = s[s > 0]
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def spectrum_stats(singular_values: np.ndarray, thresholded: np.ndarray) -> dict[str, float]:
    """Retained energy sum(s_hat^2)/sum(s^2), effective ranks before/after, kept rank."""
    s = np.asarray(singular_values, np.float64)
    t = np.asarray(thresholded, np.float64)
    energy = float((t ** 2).sum() / (s ** 2).sum()) if (s ** 2).sum() > 0 else 0.0
    return {"retained_energy": energy, "effective_rank": effective_rank(s),
            "effective_rank_thresholded": effective_rank(t), "kept_rank": int((t > 0).sum()),
            "channels": int(s.size)}


def spectrum_figure(singular_values: np.ndarray | None, thresholded: np.ndarray | None,
                    threshold: float | None) -> go.Figure:
    """Singular values of y before and after SVD-RRM's soft threshold (log scale), the
    threshold, and the retained energy and effective ranks in the title."""
    fig = go.Figure()
    if singular_values is None:
        fig.update_layout(title="this model has no SVD-RRM", height=380)
        return fig
    stats = spectrum_stats(singular_values, thresholded)
    index = np.arange(1, len(singular_values) + 1)
    fig.add_trace(go.Scatter(x=index, y=singular_values, mode="lines+markers", name="singular values s",
                             marker=dict(size=4), line=dict(color="#1f77b4")))
    kept = thresholded > 0
    fig.add_trace(go.Scatter(x=index[kept], y=thresholded[kept], mode="lines+markers",
                             name="thresholded max(s - tau, 0)", marker=dict(size=4), line=dict(color="#d62728")))
    fig.add_hline(y=threshold, line=dict(color="black", dash="dash"),
                  annotation_text=f"tau = {threshold:.3g}", annotation_position="top right")
    fig.update_layout(
        title=dict(text=(f"SVD-RRM on y: kept rank {stats['kept_rank']}/{stats['channels']}, "
                         f"retained energy {100 * stats['retained_energy']:.1f}%, effective rank "
                         f"{stats['effective_rank']:.1f} -> {stats['effective_rank_thresholded']:.1f}"),
                   font=dict(size=13)),
        xaxis_title="index (descending)", yaxis_title="singular value", yaxis_type="log",
        legend=dict(x=0.02, y=0.02, xanchor="left", yanchor="bottom"), margin=dict(l=10, r=10, t=40, b=10), height=380)
    return fig


def rd_figure(curves: dict[str, Sequence], metric: str = "psnr", current=None, title: str | None = None) -> go.Figure:
    """Rate-distortion curves of one image (codec -> RDPoints, see samic.viz.inspect) for
    ``metric`` ("psnr", "ms_ssim" or "lpips") with the ``current`` point (anything with
    .bpp and the metric as attributes, e.g. an Inspection) marked by a star. ``title`` (say,
    the image, quality and decoder it was made for) replaces the generic one."""
    if metric not in METRIC_LABELS:
        raise ValueError(f"metric must be one of {', '.join(METRIC_LABELS)}, got {metric!r}")
    fig = go.Figure()
    for codec, points in curves.items():
        points = sorted(points, key=lambda p: p.bpp)
        fig.add_trace(go.Scatter(
            x=[p.bpp for p in points], y=[getattr(p, metric) for p in points], mode="lines+markers",
            name="SAMIC" if codec == "samic" else codec.upper(), line=dict(color=CODEC_COLORS.get(codec)),
            customdata=[p.quality for p in points],
            hovertemplate="%{x:.3f} bpp, %{y:.4g}<br>quality %{customdata}<extra></extra>"))
    if current is not None:
        fig.add_trace(go.Scatter(x=[current.bpp], y=[getattr(current, metric)], mode="markers",
                                 name="current", marker=dict(symbol="star", size=16, color="gold",
                                                             line=dict(color="black", width=1))))
    fig.update_layout(title=dict(text=title or "this image's rate-distortion curves (real files)", font=dict(size=13)),
                      xaxis_title="bits per pixel", yaxis_title=METRIC_LABELS[metric],
                      margin=dict(l=10, r=10, t=40, b=10), height=420)
    return fig
