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
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from samic.codec.api import choose_decoder
from samic.codec.files import write_atomic
from samic.layers.samb import SCAN_ORDERS
from samic.viz import (cached_inspect_image, cached_rd_curves, compare_scan_orders, pick_cluster,
                       position_only_clusters, prepare_image, render, router_gates, scan_order_summary)
from samic.viz.inspect import DEFAULT_MAX_PIXELS, Inspection, image_digest
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

    def analyse(file: str | None, quality: float, decoder: str, scan_order: str, block: str, cluster,
                opacity: float, position_only: bool, shown_block: str | None = None, progress=gr.Progress()):
        """Compress/decompress the image at ``quality`` with every SAMB scanning in ``scan_order``
        and fill every panel of the page."""
        if file is None:
            return [gr.skip()] * 20
        name = Path(file).name
        try:
            if scan_order not in SCAN_ORDERS:
                raise ValueError(f"unknown scan order {scan_order!r}; choose one of {', '.join(SCAN_ORDERS)}")
            rgb, notice = prepare_image(file, max_pixels)
            inspection = cached_inspect_image(rgb, quality, decoder, model, progress, scan_order=scan_order)
        except (ValueError, TypeError, OSError) as exc:  # ImageError and FormatError are ValueErrors
            raise _user_error(exc, file, name) from None
        except Exception as exc:  # noqa: BLE001 - show a message, keep the traceback in the log
            log.exception("analysis of %s failed", name)
            raise gr.Error(f"Processing {name} failed: {type(exc).__name__}: {exc}") from None

        height, width = inspection.size
        info = f"**{name}**: {width} x {height} px, {inspection.model_name}, {inspection.decoder} decoder"
        info += f", quality {inspection.quality:.2f}, {inspection.scan_order} scan order"
        info += f"\n\n⚠️ {notice}" if notice else ""
        table = [[label, round(value, 4), unit] for label, (value, unit) in inspection.metrics().items()]
        folder = downloads / image_digest(rgb)[:16]
        folder.mkdir(exist_ok=True)
        stem = f"{Path(name).stem}-q{inspection.quality:.3f}-{inspection.decoder}-{inspection.scan_order}"
        original, reconstruction = _png(pictures, inspection.original), _png(pictures, inspection.reconstruction)
        samic_file = _publish(folder, f"{stem}.samic", inspection.data)
        png_file = _publish(folder, f"{stem}.png", Path(reconstruction).read_bytes())
        spectrum = inspection.spectrum
        return (info, (original, reconstruction), table,
                gr.DownloadButton(value=samic_file, label=f"Download {Path(samic_file).name}"),
                gr.DownloadButton(value=png_file, label=f"Download {Path(png_file).name}"),
                _png(pictures, render.error_heatmap(inspection.original, inspection.reconstruction)),
                _png(pictures, render.bit_allocation_map(inspection.original, inspection.bits_y, inspection.bits_z,
                                                         inspection.bpp)),
                render.spectrum_figure(*(spectrum if spectrum else (None, None, None))),
                *views(inspection, block, cluster, opacity, position_only, shown_block),
                gr.Dataframe(value=None), ORDER_PROMPT, inspection)

    def orders(inspection: Inspection | None, progress=gr.Progress()):
        """This image at this quality under each scan order: real files, side by side."""
        if inspection is None:
            raise gr.Error("Pick an example or upload an image first.")
        try:
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

    def rd(inspection: Inspection | None, metric: str, progress=gr.Progress()):
        """This image's RD curves (SAMIC and JPEG/WebP/AVIF) with the current point."""
        if inspection is None:
            return gr.skip()
        curves = cached_rd_curves(inspection.original, inspection.decoder, model, progress)
        return render.rd_figure(curves, METRICS[metric], inspection)

    def pick_example(evt: gr.SelectData) -> str:
        return str(examples[evt.index])

    with gr.Blocks(title="SAMIC explorer") as demo:
        gr.Markdown(
            "# SAMIC explorer\n"
            f"Semantic-aware Mamba image codec, **{model.config.name}** weights on CPU "
            f"({Path(getattr(model, 'weights_path', model.config.name)).name}). Upload a photo or pick an example, "
            "then move the quality slider: each release runs the real codec (a `.samic` file and its decoding). "
            f"Uploads above {max_pixels / 1e6:g} MP are downscaled.")
        inspection_state = gr.State(None)
        shown_block = gr.State(None)  # the block the cluster panels show (its cluster ids)
        with gr.Row(elem_id="section-top"):
            with gr.Column(scale=3, min_width=300):
                file = gr.File(label="Image (JPEG, PNG, WebP, ...)", file_types=["image"], type="filepath",
                               height=100)
                gallery = gr.Gallery(value=[(str(p), p.stem) for p in examples], label="Examples", columns=5,
                                     height=110, allow_preview=False, interactive=False, object_fit="cover",
                                     elem_id="examples")
                quality = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Quality (rate knob, runs on release)",
                                    elem_id="quality")
                decoder = gr.Radio(decoders, value=choose_decoder(model, None), label="Decoder",
                                   visible=len(decoders) > 1)
                scan_order = gr.Radio(list(SCAN_ORDERS), value="semantic", elem_id="scan-order",
                                      label="Scan order of every SAMB (stored in the file)")
                info = gr.Markdown("Pick an example or upload an image.", elem_id="info")
                download_samic = gr.DownloadButton("Download .samic", value=None, size="sm")
                download_png = gr.DownloadButton("Download decoded PNG", value=None, size="sm")
            with gr.Column(scale=5):
                compare = gr.ImageSlider(label="Original | reconstruction", format="png", max_height=600,
                                         interactive=False, elem_id="compare")
            with gr.Column(scale=3, min_width=330):
                metrics = gr.Dataframe(headers=["metric", "value", "unit"], datatype=["str", "number", "str"],
                                       label="Metrics", interactive=False, elem_id="metrics", wrap=True,
                                       column_widths=["46%", "27%", "27%"])
        with gr.Column(elem_id="section-distortion"):
            gr.Markdown("## Distortion and rate")
            with gr.Row():
                diff = gr.Image(label="Error heatmap", format="png", interactive=False)
                bits = gr.Image(label="Bit allocation (entropy model)", format="png", interactive=False)
        with gr.Column(elem_id="section-clusters"):
            gr.Markdown("## Semantic clusters of the SAMB blocks")
            with gr.Row():
                block = gr.Dropdown([], label="SAMB block", scale=1)
                cluster = gr.Dropdown([], label="Cluster (for the scan path)", scale=1, allow_custom_value=True)
                opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Cluster overlay opacity", scale=1)
                position_only = gr.Checkbox(False, label="Position only (the router's spatial prior)", scale=1,
                                            elem_id="position-only")
            with gr.Row():
                overlay = gr.Image(label="Cluster assignment (learned, on this photo)", format="png",
                                   interactive=False)
                position_overlay = gr.Image(label="Position only: the same router on all-zero features",
                                            format="png", interactive=False, visible=False,
                                            elem_id="position-overlay")
                entropy = gr.Image(label="Soft-assignment entropy", format="png", interactive=False)
            router_text = gr.Markdown(elem_id="router-text")
            with gr.Accordion("What the cluster panels show", open=False):
                gr.Markdown(CLUSTER_NOTES)
            with gr.Row():
                scan_path = gr.Plot(label="Scan path of the cluster", elem_id="scan-path")
                scan_map = gr.Plot(label="Scan orders of the block", elem_id="scan-map")
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
                spectrum = gr.Plot(label="Singular values of y", elem_id="spectrum")
                with gr.Column():
                    rd_metric = gr.Radio(list(METRICS), value="PSNR", label="RD metric")
                    rd_plot = gr.Plot(label="Rate-distortion (this image)", elem_id="rd-plot")

        view_outputs = [block, cluster, overlay, position_overlay, router_text, entropy, scan_path, scan_map,
                        shown_block]
        order_event = order_button.click(orders, inputs=inspection_state, outputs=[order_table, order_text],
                                         api_name="scan_orders")
        gr.on([file.change, quality.release, decoder.input, scan_order.input], analyse,
              inputs=[file, quality, decoder, scan_order, block, cluster, opacity, position_only, shown_block],
              outputs=[info, compare, metrics, download_samic, download_png, diff, bits, spectrum,
                       *view_outputs, order_table, order_text, inspection_state], api_name="inspect",
              cancels=[order_event]
              ).success(rd, inputs=[inspection_state, rd_metric], outputs=rd_plot, api_name="rd_curve")
        gr.on([block.input, cluster.input, opacity.release, position_only.input], views,
              inputs=[inspection_state, block, cluster, opacity, position_only, shown_block], outputs=view_outputs,
              api_name="views")
        rd_metric.input(rd, inputs=[inspection_state, rd_metric], outputs=rd_plot, api_name="rd_metric")
        gallery.select(pick_example, outputs=file, api_name="pick_example")
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
                allowed_paths=[str(args.examples)], show_error=False)


if __name__ == "__main__":
    main()
