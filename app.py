"""SAMIC explorer: a Gradio app that shows what the codec does to one image.

    python app.py [--host 127.0.0.1] [--port 7860] [--share off] [--weights samic-lite]
                  [--max-pixels 2000000] [--examples assets/examples] [--threads N]

A thin client: every number and picture comes from samic.viz (inspect_image and its cache,
the render functions); this file only lays out the page and wires the events. See docs/app.md.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import logging
import tempfile
import threading
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from samic.codec.api import choose_decoder
from samic.codec.files import write_atomic
from samic.layers.samb import SCAN_ORDERS
from samic.quality import VALIDATION_QUALITIES
from samic.viz import (compare_scan_orders, pick_cluster, position_only_clusters, prepare_image, render,
                       router_gates, scan_order_summary)
from samic.viz.crops import render_crop_comparison
from samic.viz.inspect import (DEFAULT_MAX_PIXELS, Decoded, Inspection, LRUCache, cached_iter_inspect_image,
                               image_digest, iter_rd_curves)
from samic.viz.samesize import SameSizeComparison, same_size_comparison, zoom_crops
from samic.viz.scan import router_note
from samic.weights import load_model

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
DEFAULT_BLOCK = "g_a.stage2"
METRICS = {"PSNR": "psnr", "MS-SSIM": "ms_ssim", "LPIPS": "lpips"}
ORDER_HEADERS = ["scan order", "bytes", "bpp", "PSNR (dB)", "MS-SSIM", "LPIPS (Alex)"]
ORDER_PROMPT = ("Press the button to code this image at this quality under each scan order "
                "(three real files; the current one is already done).")
CLUSTER_NOTES = (
    "**Cluster assignment**: each SAMB block's router sorts its tokens (one token covers stride x stride "
    "pixels) into up to K clusters by comparing each token's features, whitened per image, plus a "
    "positional term with cluster centres; the colours are the clusters, the legend their shares. "
    "**Soft-assignment entropy**: how sure the router is (0 bits: certain; log2 K: no preference).\n\n"
    "**Position only**: the positional term is `pos_gate · pos_proj(PE)`, a learned projection of a "
    "two-octave sine/cosine code of each token's (row, column), scaled by the learned gate `pos_gate`. "
    "Fed all-zero features, the router sees only that term: the picture it draws is its spatial prior, "
    "the clustering it would give any photo.")
SCAN_NOTES = (
    "**Scan path**: the chosen cluster's tokens in the order the block's Mamba scan visits them, from the "
    "green start to the red end, with arrows for the direction and colour for the scan step. In the semantic "
    "order (the paper's) a cluster is one contiguous run, raster inside it; in raster or random order its "
    "tokens are spread over the whole scan.\n\n"
    "**Scan orders**: the step at which every token is visited under each order. The scan-order control "
    "above codes the image with that order (stored in the file, followed by the decoder); the comparison "
    "below measures what it changes.")
SAME_HEADERS = ["codec", "bytes", "vs .samic", "quality setting", "PSNR (dB)", "LPIPS (Alex)", "note"]
SAME_PROMPT = ("Press the button to encode this image with JPEG, WebP and AVIF at the .samic file's size "
               "(their quality searched for the same bytes), then compare them with the slider and the zoomed crops.")
DISTORTION_NOTES = (
    "**Error heatmap**: how far each decoded pixel is from the original (mean absolute error over R, G, B, in "
    "8-bit levels). Bright areas are where the codec spent too few bits or could not model the detail.\n\n"
    "**Bit allocation**: where the file's bits go, as the entropy model estimates them: each latent position's "
    "bits spread over the pixels it covers. Textured areas cost more than flat ones.")
SPECTRUM_NOTES = (
    "**SVD-RRM spectrum**: the singular values of the analysis transform's output y, before and after the learned "
    "soft threshold tau that keeps its dominant directions (a low-rank prior). The quality knob only scales the "
    "latents *after* this step (the gain units), so the spectrum changes with the image but hardly with the "
    "quality: it shows what the encoder finds in the picture, not how many bits it spends.\n\n"
    "**Rate-distortion**: this image coded by SAMIC at five qualities and by JPEG, WebP and AVIF at four each, "
    "every point a real file; the star is the file on display. Points appear as they are computed.")
PHONE_CSS = """
@media (max-width: 700px) {
  h1 { font-size: 1.4em; } h2 { font-size: 1.15em; }
  .gradio-container { padding: 4px !important; }
  .js-plotly-plot .gtitle { font-size: 10px !important; }
}
"""
log = logging.getLogger("samic.app")


def _user_error(exc: Exception, path: str | None = None, name: str | None = None) -> gr.Error:
    """A one-line message for the page, with the upload's temporary path replaced by its name."""
    message = str(exc) or type(exc).__name__
    if path and name:
        message = message.replace(path, name)
    return gr.Error(message)


def _publish(folder: Path, name: str, data: bytes) -> str:
    """``data`` as ``folder/name``, written once and atomically; the path for Gradio.

    Concurrent sessions often produce the same file (the same upload's original, say). Gradio
    rewrites an array's cache file in place on every call, so a client still downloading the
    first copy could read a truncated file; a complete file that is never rewritten cannot.
    """
    path = folder / name
    if not path.exists():
        try:
            write_atomic(path, lambda file: file.write(data))
        except FileExistsError:  # another session wrote the same bytes meanwhile
            pass
    return str(path)


def _png(folder: Path, image) -> str:
    """An RGB array or PIL image as a content-addressed PNG under ``folder``."""
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return _publish(folder, f"{hashlib.sha256(data).hexdigest()[:24]}.png", data)


def _block_choices(inspection: Inspection, block: str | None) -> tuple[list[str], str]:
    names = list(inspection.blocks)
    if block not in names:
        block = DEFAULT_BLOCK if DEFAULT_BLOCK in names else names[0]
    return names, block


def build_demo(model, examples_dir: Path = EXAMPLES_DIR, max_pixels: int = DEFAULT_MAX_PIXELS) -> gr.Blocks:
    """The page for ``model``; example photos are the images in ``examples_dir``."""
    examples = sorted(p for p in Path(examples_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    downloads = Path(tempfile.mkdtemp(prefix="samic-app-"))
    pictures = downloads / "pictures"
    pictures.mkdir()
    decoders = list(model.decoders)

    def views_api(state, block: str, cluster: int | None, opacity: float, position_only: bool,
                  shown_block: str | None = None):
        """Redraw the cluster, entropy and scan panels of ``block`` (a SAMB name such as
        "g_a.stage2"; see the block dropdown) with ``cluster`` (an int id, or None for the default)."""
        return views(None if state is None else state[2], block, cluster, opacity, position_only, shown_block)

    def views(inspection: Inspection | None, block: str, cluster, opacity: float, position_only: bool,
              shown_block: str | None = None):
        """Cluster overlay (and the position-only one), the router's gates, the entropy map, the
        scan path and the scan orders of one block. The cluster selection resets when the block
        changes (``shown_block`` is the block on display before this call)."""
        if inspection is None:
            return [gr.skip()] * 9
        block_names, block = _block_choices(inspection, block)
        clusters = inspection.blocks[block]
        cluster = pick_cluster(clusters.assignment, cluster, block, shown_block)
        choices = [(f"{k} ({100 * s:.1f}% of tokens)", k) for k, s in render.cluster_shares(clusters.assignment)]
        image = inspection.original
        gates = router_gates(model, block_names, inspection.decoder)
        prior, prior_image = None, gr.Image(value=None, visible=False)
        if position_only:
            prior = position_only_clusters(model, block, clusters.assignment.shape, clusters.stride,
                                           inspection.decoder)
            prior_image = gr.Image(value=_png(pictures, render.cluster_overlay(
                image, prior.clusters.assignment, prior.clusters.stride, opacity)), visible=True)
        return (gr.Dropdown(choices=block_names, value=block),
                gr.Dropdown(choices=choices, value=cluster),
                _png(pictures, render.cluster_overlay(image, clusters.assignment, clusters.stride, opacity)),
                prior_image, router_note(block, gates, prior),
                _png(pictures, render.entropy_map(image, clusters.probs, clusters.stride, block)),
                render.scan_path_figure(image, clusters.assignment, clusters.order, clusters.stride, cluster, block,
                                        inspection.scan_order),
                render.order_comparison_figure(clusters.assignment, clusters.order, block, inspection.scan_order),
                block)

    compute = threading.Lock()  # one model run at a time; superseded requests stop between steps
    prepared = LRUCache(maxsize=16)  # upload path -> (rgb, notice, digest): a revisit skips decoding

    def load(file: str):
        stat = Path(file).stat()
        key = (file, stat.st_size, stat.st_mtime_ns, max_pixels)
        entry = prepared.get(key)
        if entry is None:
            rgb, notice = prepare_image(file, max_pixels)
            entry = (rgb, notice, image_digest(rgb))
            prepared.put(key, entry)
        return entry

    def step(iterator):
        """The next stage of ``iterator``, computed under the model lock (None when done)."""
        with compute:
            return next(iterator, None)

    def key_text(name: str, quality: float, decoder: str, scan_order: str) -> str:
        return f"{name}, quality {quality:.2f}, {decoder} decoder, {scan_order} order"

    def failure(message: str) -> dict:
        """Every output that could show the previous image, cleared, and one line saying what to do."""
        return {info: f"**Error:** {message}", compare: None, metrics: None,
                download_samic: gr.DownloadButton(value=None, label="Download .samic"),
                download_png: gr.DownloadButton(value=None, label="Download decoded PNG"),
                diff: None, bits: None, spectrum: None, overlay: None, entropy: None, scan_path: None,
                scan_map: None, position_overlay: gr.Image(value=None, visible=False), router_text: "",
                order_table: gr.Dataframe(value=None), order_text: ORDER_PROMPT, rd_plot: None,
                same_table: gr.Dataframe(value=None), same_text: SAME_PROMPT, same_slider: None, zoom: None,
                inspection_state: None, same_state: None}

    def panels(file: str | None, quality: float, decoder: str, scan_order: str, block: str, cluster,
               opacity: float, position_only: bool, shown_block: str | None, progress):
        """The stages of one analysis, as dicts of output updates: the decoded file first, then every
        panel. Raises gr.Error (after a clearing update) for a user mistake."""
        name = Path(file).name
        try:
            if scan_order not in SCAN_ORDERS:
                raise ValueError(f"unknown scan order {scan_order!r}; choose one of {', '.join(SCAN_ORDERS)}")
            rgb, notice, digest = load(file)
            stages = cached_iter_inspect_image(rgb, quality, decoder, model, progress, scan_order=scan_order)
            stage = step(stages)
        except (ValueError, TypeError, OSError) as exc:  # ImageError and FormatError are ValueErrors
            message = str(_user_error(exc, file, name).message)
            yield failure(f"{message} Pick an example or upload another image.")
            raise gr.Error(message, print_exception=False) from None
        height, width = rgb.shape[:2]
        folder = downloads / digest[:16]
        folder.mkdir(exist_ok=True)
        while stage is not None:
            key = key_text(name, stage.quality, stage.decoder, stage.scan_order)
            head = f"**{name}**: {width} x {height} px, {model.config.name}, {stage.decoder} decoder"
            head += f", quality {stage.quality:.2f}, {stage.scan_order} scan order"
            head += f"\n\n⚠️ {notice}" if notice else ""
            stem = f"{Path(name).stem}-q{stage.quality:.3f}-{stage.decoder}-{stage.scan_order}"
            original, reconstruction = _png(pictures, stage.original), _png(pictures, stage.reconstruction)
            samic_file = _publish(folder, f"{stem}.samic", stage.data)
            png_file = _publish(folder, f"{stem}.png", Path(reconstruction).read_bytes())
            files = {compare: gr.ImageSlider(value=(original, reconstruction),
                                             label=f"Original | reconstruction: {key}"),
                     download_samic: gr.DownloadButton(value=samic_file, label=f"Download {Path(samic_file).name}"),
                     download_png: gr.DownloadButton(value=png_file, label=f"Download {Path(png_file).name}")}
            if isinstance(stage, Decoded):
                bpp = 8 * len(stage.data) / (height * width)
                yield {info: head + "\n\n⏳ measuring and drawing the panels...", **files,
                       metrics: [["rate", round(bpp, 4), "bpp"], ["file size", len(stage.data), "bytes"],
                                 ["encode time", round(stage.encode_seconds, 4), "s"],
                                 ["decode time", round(stage.decode_seconds, 4), "s"]]}
                stage = step(stages)
                continue
            inspection = stage
            spectrum_data = inspection.spectrum
            figure = render.spectrum_figure(*(spectrum_data if spectrum_data else (None, None, None)))
            figure.update_layout(title=dict(text=f"{figure.layout.title.text}<br><sub>{key}</sub>"))
            view = views(inspection, block, cluster, opacity, position_only, shown_block)
            yield {info: head, **files,
                   metrics: [[label, round(value, 4), unit] for label, (value, unit) in inspection.metrics().items()],
                   diff: _png(pictures, render.error_heatmap(inspection.original, inspection.reconstruction)),
                   bits: _png(pictures, render.bit_allocation_map(inspection.original, inspection.bits_y,
                                                                  inspection.bits_z, inspection.bpp)),
                   spectrum: figure, **dict(zip(view_outputs, view)),
                   order_table: gr.Dataframe(value=None), order_text: ORDER_PROMPT,
                   same_table: gr.Dataframe(value=None), same_text: SAME_PROMPT, same_slider: None, zoom: None,
                   same_state: None, inspection_state: (digest, name, inspection)}
            return

    def analyse(file: str | None, quality: float, decoder: str, scan_order: str, block: str, cluster,
                opacity: float, position_only: bool, shown_block: str | None = None, progress=gr.Progress()):
        """Compress/decompress the image at ``quality`` with every SAMB scanning in ``scan_order``
        and fill every panel of the page (streamed: the decoded file first)."""
        if file is None:
            return
        last = None
        for update in panels(file, quality, decoder, scan_order, block, cluster, opacity, position_only,
                             shown_block, progress):
            update = {k: v for k, v in update.items() if k is not rd_plot}  # not an output of /inspect
            last = {**(last or {}), **update}
            yield update
        yield last  # every output at once: what an API client's predict() returns

    def rd_updates(state, metric: str, progress):
        """The RD chart point by point, each figure titled with the image, quality and decoder."""
        if state is None:
            return
        digest, name, inspection = state
        title = (f"{name}: rate-distortion (real files), current point quality {inspection.quality:.2f}, "
                 f"{inspection.decoder} decoder")
        curves_iter = iter_rd_curves(inspection.original, inspection.decoder, model, progress)
        while (curves := step(curves_iter)) is not None:
            done = len(curves.get("samic", [])) == len(render_qualities)
            yield render.rd_figure(curves, METRICS[metric], inspection,
                                   title=title + ("" if done else " (computing...)"))

    newest: dict[str, int] = {}  # session -> number of its newest page request
    counter = iter(range(1, 1 << 62))

    def page(file, quality, decoder, scan_order, block, cluster, opacity, position_only, shown_block,
             metric, request: gr.Request, progress=gr.Progress()):
        """What the page runs on a new image or setting: the panels, then the RD chart. A newer
        request of the same session supersedes this one: it stops before its next output."""
        session = getattr(request, "session_hash", None) or "api"
        newest[session] = token = next(counter)
        if file is None:
            return
        state = None
        for update in panels(file, quality, decoder, scan_order, block, cluster, opacity, position_only,
                             shown_block, progress):
            if newest.get(session) != token:
                return
            state = update.get(inspection_state, state)
            if state is None:
                update = {**update, rd_plot: None}  # the chart of another setting is never left up
            yield update
        for figure in rd_updates(state, metric, progress):
            if newest.get(session) != token:
                return
            yield {rd_plot: figure}

    def orders(state, progress=gr.Progress()):
        """This image at this quality under each scan order: real files, side by side."""
        if state is None:
            raise gr.Error("Pick an example or upload an image first.", print_exception=False)
        inspection = state[2]
        try:
            with compute:
                points = compare_scan_orders(inspection.original, inspection.quality, inspection.decoder, model,
                                             progress=progress)
        except Exception as exc:  # noqa: BLE001 - show a message, keep the traceback in the log
            log.exception("scan order comparison failed")
            raise gr.Error(f"The scan order comparison failed: {type(exc).__name__}: {exc}") from None
        rows = [[p.scan_order + (" (shown)" if p.scan_order == inspection.scan_order else ""), p.num_bytes,
                 round(p.bpp, 4), round(p.psnr, 3), round(p.ms_ssim, 4), round(p.lpips, 4)] for p in points]
        height, width = inspection.size
        text = (f"{width} x {height} px, quality {inspection.quality:.2f}, {inspection.decoder} decoder: "
                + scan_order_summary(points))
        return rows, text

    def rd(state, metric: str, progress=gr.Progress()):
        """This image's RD curves (SAMIC and JPEG/WebP/AVIF) with the current point, drawn as the
        points arrive; the title names the image, quality and decoder."""
        yield from rd_updates(state, metric, progress)

    def same_size(state, left: str, right: str, progress=gr.Progress()):
        """JPEG, WebP and AVIF searched to the .samic file's size, measured beside it."""
        if state is None:
            raise gr.Error("Pick an example or upload an image first.", print_exception=False)
        digest, name, inspection = state
        progress(0, "searching JPEG, WebP and AVIF qualities for the same size")
        with compute:
            result = same_size_comparison(inspection, digest=digest)
        return (*same_size_views(result, name, left, right, None), result)

    def same_size_views(result: SameSizeComparison | None, name: str, left: str, right: str, center):
        if result is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        labels = {e.label: e for e in result.entries}
        a, b = labels.get(left, result.entries[0]), labels.get(right, result.entries[-1])
        unable = [e.label for e in result.entries if not e.matched]
        text = (f"**{name}**, SAMIC quality {result.key[1]:.2f}: **{result.target_bytes} bytes**. Each other codec's "
                f"quality was searched for the file closest to that size (within {100 * result.tolerance:g} % "
                "counts as the same size)."
                + (f" Not the same size: {', '.join(unable)} (see the note)." if unable else ""))
        sheet = render_crop_comparison(zoom_crops(result, center, 96, name), scale=3, thumbnail=True, columns=3,
                                       title=f"{name}: the same crop of every codec's file, all about "
                                             f"{result.target_bytes} bytes")
        slider = gr.ImageSlider(value=(_png(pictures, a.reconstruction), _png(pictures, b.reconstruction)),
                                label=f"{a.label} ({a.num_bytes} bytes) | {b.label} ({b.num_bytes} bytes)")
        return result.rows(), text, slider, _png(pictures, sheet)

    def place_zoom(result, state, left: str, right: str, evt: gr.SelectData):
        if result is None or state is None:
            return gr.skip()
        return same_size_views(result, state[1], left, right, tuple(evt.index))[3]

    def swap_sides(result, state, left: str, right: str):
        if result is None or state is None:
            return gr.skip()
        return same_size_views(result, state[1], left, right, None)[2]

    def pick_example(evt: gr.SelectData) -> str:
        return str(examples[evt.index])

    def pick_example_by_name(name: str) -> str:
        """The path of the example photo ``name`` (its file name, with or without extension)."""
        for path in examples:
            if name in (path.name, path.stem):
                return str(path)
        raise gr.Error(f"No example called {name!r}; the examples are "
                       f"{', '.join(p.stem for p in examples)}.", print_exception=False)

    render_qualities = VALIDATION_QUALITIES
    with gr.Blocks(title="SAMIC explorer") as demo:
        gr.Markdown(
            "# SAMIC explorer\n"
            f"Semantic-aware Mamba image codec, **{model.config.name}** weights on CPU "
            f"({Path(getattr(model, 'weights_path', model.config.name)).name}). Upload a photo or pick an example, "
            "then move the quality slider (drag or arrow keys): every change runs the real codec (a `.samic` file "
            f"and its decoding). Uploads above {max_pixels / 1e6:g} MP are downscaled.")
        inspection_state = gr.State(None)  # (image digest, file name, Inspection): the key of every panel
        same_state = gr.State(None)  # the SameSizeComparison on display
        shown_block = gr.State(None)  # the block the cluster panels show (its cluster ids)
        with gr.Row(elem_id="section-top"):
            with gr.Column(scale=3, min_width=300):
                file = gr.File(label="Image (JPEG, PNG, WebP, ...)", file_types=["image"], type="filepath",
                               height=100)
                gallery = gr.Gallery(value=[(str(p), p.stem) for p in examples], label="Examples", columns=5,
                                     height=110, allow_preview=False, interactive=False, object_fit="cover",
                                     elem_id="examples")
                quality = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Quality (rate knob)",
                                    elem_id="quality")
                decoder = gr.Radio(decoders, value=choose_decoder(model, None), label="Decoder",
                                   visible=len(decoders) > 1)
                scan_order = gr.Radio(list(SCAN_ORDERS), value="semantic", elem_id="scan-order",
                                      label="Scan order of every SAMB (stored in the file)")
                info = gr.Markdown("Pick an example or upload an image.", elem_id="info", label="Image and settings")
                download_samic = gr.DownloadButton("Download .samic", value=None, size="sm")
                download_png = gr.DownloadButton("Download decoded PNG", value=None, size="sm")
            with gr.Column(scale=5, min_width=300):
                compare = gr.ImageSlider(label="Original | reconstruction", format="png", max_height=600,
                                         interactive=False, elem_id="compare")
            with gr.Column(scale=3, min_width=300):
                metrics = gr.Dataframe(headers=["metric", "value", "unit"], datatype=["str", "number", "str"],
                                       label="Metrics", interactive=False, elem_id="metrics", wrap=True,
                                       column_widths=["46%", "27%", "27%"])
        with gr.Column(elem_id="section-distortion"):
            gr.Markdown("## Distortion and rate")
            with gr.Row():
                diff = gr.Image(label="Error heatmap", format="png", interactive=False, min_width=280)
                bits = gr.Image(label="Bit allocation (entropy model)", format="png", interactive=False,
                                min_width=280)
            with gr.Accordion("What these panels show", open=False):
                gr.Markdown(DISTORTION_NOTES)
        with gr.Column(elem_id="section-same-size"):
            gr.Markdown("## Same size: JPEG, WebP and AVIF at the .samic file's bytes")
            with gr.Row():
                same_button = gr.Button("Compare at the same size", size="sm", scale=1, elem_id="same-button")
                same_left = gr.Dropdown(["SAMIC", "JPEG", "WebP", "AVIF"], value="SAMIC", label="Slider left",
                                        scale=1)
                same_right = gr.Dropdown(["SAMIC", "JPEG", "WebP", "AVIF"], value="JPEG", label="Slider right",
                                         scale=1)
            same_text = gr.Markdown(SAME_PROMPT, elem_id="same-text")
            same_table = gr.Dataframe(headers=SAME_HEADERS, datatype=["str", "number", "str", "number", "number",
                                                                      "number", "str"],
                                      interactive=False, label="Every codec at the same size", elem_id="same-table",
                                      wrap=True)
            with gr.Row():
                same_slider = gr.ImageSlider(label="Codec | codec at the same size", format="png", max_height=600,
                                             interactive=False, elem_id="same-slider", min_width=300)
                zoom = gr.Image(label="Zoomed crops (click here to move the box)", format="png", interactive=False,
                                elem_id="zoom", min_width=300)
        with gr.Column(elem_id="section-clusters"):
            gr.Markdown("## Semantic clusters of the SAMB blocks")
            with gr.Row():
                block = gr.Dropdown([], label="SAMB block", scale=1, min_width=160)
                cluster = gr.Dropdown([], label="Cluster (for the scan path)", scale=1, allow_custom_value=True,
                                      min_width=160)
                opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Cluster overlay opacity", scale=1,
                                    min_width=160)
                position_only = gr.Checkbox(False, label="Position only (the router's spatial prior)", scale=1,
                                            elem_id="position-only", min_width=160)
            with gr.Row():
                overlay = gr.Image(label="Cluster assignment (learned, on this photo)", format="png",
                                   interactive=False, min_width=280)
                position_overlay = gr.Image(label="Position only: the same router on all-zero features",
                                            format="png", interactive=False, visible=False,
                                            elem_id="position-overlay", min_width=280)
                entropy = gr.Image(label="Soft-assignment entropy", format="png", interactive=False, min_width=280)
            router_text = gr.Markdown(elem_id="router-text")
            with gr.Accordion("What the cluster panels show", open=False):
                gr.Markdown(CLUSTER_NOTES)
            with gr.Row():
                scan_path = gr.Plot(label="Scan path of the cluster", elem_id="scan-path", min_width=300)
                scan_map = gr.Plot(label="Scan orders of the block", elem_id="scan-map", min_width=300)
            with gr.Accordion("What the scan panels show", open=False):
                gr.Markdown(SCAN_NOTES)
            with gr.Row():
                order_button = gr.Button("Compare the three scan orders (real files)", size="sm", scale=1,
                                         elem_id="order-button")
                order_text = gr.Markdown(ORDER_PROMPT, elem_id="order-text")
            order_table = gr.Dataframe(headers=ORDER_HEADERS, datatype=["str"] + ["number"] * 5, interactive=False,
                                       label="Same image, same quality, each scan order", elem_id="order-table")
        with gr.Column(elem_id="section-spectrum-rd"):
            gr.Markdown("## SVD-RRM spectrum and rate-distortion")
            with gr.Row():
                spectrum = gr.Plot(label="Singular values of y", elem_id="spectrum", min_width=300)
                with gr.Column(min_width=300):
                    rd_metric = gr.Radio(list(METRICS), value="PSNR", label="RD metric")
                    rd_plot = gr.Plot(label="Rate-distortion (this image)", elem_id="rd-plot")
            with gr.Accordion("What these panels show", open=False):
                gr.Markdown(SPECTRUM_NOTES)
        example_name = gr.Textbox(visible=False, label="Example name")
        api_inspect = gr.Button(visible=False)
        api_rd = gr.Button(visible=False)
        api_example = gr.Button(visible=False)

        view_outputs = [block, cluster, overlay, position_overlay, router_text, entropy, scan_path, scan_map,
                        shown_block]
        inspect_inputs = [file, quality, decoder, scan_order, block, cluster, opacity, position_only, shown_block]
        inspect_outputs = [info, compare, metrics, download_samic, download_png, diff, bits, spectrum,
                           *view_outputs, order_table, order_text, same_table, same_text, same_slider, zoom,
                           inspection_state, same_state]
        order_event = order_button.click(orders, inputs=inspection_state, outputs=[order_table, order_text],
                                         api_name="scan_orders")
        same_event = same_button.click(same_size, inputs=[inspection_state, same_left, same_right],
                                       outputs=[same_table, same_text, same_slider, zoom, same_state],
                                       api_name="same_size")
        # The page: each new image or setting starts at once (trigger_mode "multiple") and takes the
        # session's newest-request token; the run it supersedes (panels or RD chart) sees that between
        # steps and stops without yielding, so a late result of an earlier setting never lands.
        # Keyboard changes of the slider fire .change, not .release.
        page_event = gr.on([file.change, quality.change, decoder.input, scan_order.input], page,
                           inputs=[*inspect_inputs, rd_metric], outputs=[*inspect_outputs, rd_plot],
                           trigger_mode="multiple", concurrency_limit=4, concurrency_id="page",
                           cancels=[order_event, same_event], api_visibility="private")
        api_inspect.click(analyse, inputs=inspect_inputs, outputs=inspect_outputs, api_name="inspect",
                          concurrency_limit=4, concurrency_id="page")
        rd_event = rd_metric.input(rd, inputs=[inspection_state, rd_metric], outputs=rd_plot, api_name="rd_metric",
                                   trigger_mode="multiple", concurrency_limit=4, concurrency_id="page")
        api_rd.click(rd, inputs=[inspection_state, rd_metric], outputs=rd_plot, api_name="rd_curve",
                     concurrency_limit=4, concurrency_id="page")
        gr.on([block.input, cluster.input, opacity.release, position_only.input], views_api,
              inputs=[inspection_state, block, cluster, opacity, position_only, shown_block], outputs=view_outputs,
              api_name="views")
        zoom.select(place_zoom, inputs=[same_state, inspection_state, same_left, same_right], outputs=zoom,
                    api_visibility="private")
        gr.on([same_left.input, same_right.input], swap_sides,
              inputs=[same_state, inspection_state, same_left, same_right], outputs=same_slider,
              api_visibility="private")
        gallery.select(pick_example, outputs=file, api_name="gallery_select", api_visibility="private")
        api_example.click(pick_example_by_name, inputs=example_name, outputs=file, api_name="pick_example")
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SAMIC explorer (Gradio)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", choices=["on", "off"], default="off", help="public Gradio share link")
    parser.add_argument("--weights", default=None, help="preset name or .safetensors path (default: shipped)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="uploads above this many pixels are downscaled")
    parser.add_argument("--examples", type=Path, default=EXAMPLES_DIR, help="folder of example photos")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.weights, device="cpu")
    demo = build_demo(model, args.examples, args.max_pixels)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share == "on",
                allowed_paths=[str(args.examples)], show_error=False, css=PHONE_CSS)


if __name__ == "__main__":
    main()
