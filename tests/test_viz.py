"""samic.viz: the typed inspection call on a real Kodak crop, its cache, the RD curves and
the render functions."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from samic.codec.api import decompress_image, read_header
from samic.codec.image_io import ImageError
from samic.layers.samb import positional_encoding_2d
from samic.models import SAMIC
from samic.viz import (Inspection, ScanOrderPoint, cached_inspect_image, classical_rd_curves, compare_scan_orders,
                       inspect_image, pick_cluster, position_only_clusters, prepare_image, rd_curve, render,
                       router_gates, scan_order_summary)
from samic.viz.scan import router_note, samb_block
from samic.weights import load_model

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"
HEIGHT, WIDTH = 96, 160  # not multiples of 64: the network pads to 128 x 192


@pytest.fixture(scope="module")
def model():
    # one thread: several times faster for these small images when the CPU is shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    if not KODAK.is_dir():
        pytest.skip(f"Kodak images not found at {KODAK}")
    with Image.open(KODAK / "kodim23.png") as image:
        return np.asarray(image.convert("RGB"))[150:150 + HEIGHT, 300:300 + WIDTH].copy()


@pytest.fixture(scope="module")
def inspection(model, crop) -> Inspection:
    return cached_inspect_image(crop, 0.5, decoder="mse", model=model)


def test_inspection_fields_and_shapes(inspection, crop, model):
    ins = inspection
    assert ins.original.shape == ins.reconstruction.shape == (HEIGHT, WIDTH, 3)
    assert ins.original.dtype == ins.reconstruction.dtype == np.uint8
    assert np.array_equal(ins.original, crop)
    assert ins.size == (HEIGHT, WIDTH) and ins.padded_size == (128, 192)
    assert ins.quality == 0.5 and ins.decoder == "mse" and ins.model_name == "samic-lite"
    assert ins.scan_order == read_header(ins.data).scan_order == "semantic"
    # the real codec: the reconstruction is what the .samic bytes decode to
    assert ins.data[:4] == b"\x89SMC" and ins.num_bytes == len(ins.data)
    assert np.array_equal(decompress_image(ins.data, model, "mse"), ins.reconstruction)
    assert ins.bpp == pytest.approx(8 * len(ins.data) / (HEIGHT * WIDTH))
    assert ins.compression_ratio == pytest.approx(3 * HEIGHT * WIDTH / len(ins.data))
    assert ins.encode_seconds > 0 and ins.decode_seconds > 0
    assert 15 < ins.psnr < 50 and 0 < ins.ms_ssim <= 1 and 0 <= ins.lpips < 1
    assert 0 < ins.estimated_bpp < 2 * ins.bpp
    assert set(ins.metrics()) >= {"rate", "file size", "compression ratio", "PSNR", "MS-SSIM", "LPIPS (Alex)",
                                  "encode time", "decode time"}

    # one entry per SAMB of the preset (samic-lite: stages 2 and 3 and the hyper transforms)
    assert set(ins.blocks) == {"g_a.stage2", "g_a.stage3", "h_a.samb", "h_s.samb", "g_s.stage3", "g_s.stage2"}
    strides = {"g_a.stage2": 4, "g_a.stage3": 8, "h_a.samb": 32, "h_s.samb": 32, "g_s.stage3": 8, "g_s.stage2": 4}
    k = model.config.n_clusters
    for name, block in ins.blocks.items():
        h, w = 128 // strides[name], 192 // strides[name]
        assert block.stride == strides[name]
        assert block.assignment.shape == (h, w) and block.assignment.dtype == np.int64
        assert block.probs.shape == (k, h, w)
        np.testing.assert_allclose(block.probs.sum(0), 1, atol=1e-4)
        assert np.array_equal(block.assignment, block.probs.argmax(0))  # deterministic argmax
        assert block.order.shape == (h * w,) and np.array_equal(np.sort(block.order), np.arange(h * w))
        scanned = block.assignment.reshape(-1)[block.order]
        assert np.all(np.diff(scanned) >= 0)  # cluster by cluster
        for cluster in np.unique(scanned):  # raster order inside each cluster (stable sort)
            assert np.all(np.diff(block.order[scanned == cluster]) > 0)
        assert not block.order.flags.writeable

    m = model.config.M
    assert ins.spectrum.singular_values.shape == ins.spectrum.thresholded.shape == (m,)
    assert np.all(np.diff(ins.spectrum.singular_values) <= 1e-6)
    np.testing.assert_allclose(ins.spectrum.thresholded,
                               np.maximum(ins.spectrum.singular_values - ins.spectrum.threshold, 0), atol=1e-5)
    assert ins.bits_y.shape == (128 // 16, 192 // 16) and ins.bits_z.shape == (128 // 64, 192 // 64)
    assert np.all(ins.bits_y >= 0)


def test_cache_and_errors(model, crop, inspection, tmp_path):
    assert cached_inspect_image(crop.copy(), 0.5, "mse", model) is inspection  # keyed by content
    if "perceptual" not in model.decoders:
        with pytest.raises(ValueError, match="perceptual"):
            inspect_image(crop, 0.5, "perceptual", model)
    with pytest.raises(ValueError, match="quality"):
        inspect_image(crop, 1.5, model=model)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(ImageError):
        prepare_image(broken)


def test_prepare_image_downscales_above_the_limit():
    rgb = np.random.default_rng(1).integers(0, 256, (300, 400, 3), np.uint8)
    same, notice = prepare_image(rgb, max_pixels=120_000)
    assert notice is None and np.array_equal(same, rgb)
    small, notice = prepare_image(rgb, max_pixels=30_000)
    assert small.shape[0] * small.shape[1] <= 30_000 and small.shape[2] == 3
    assert abs(small.shape[1] / small.shape[0] - 4 / 3) < 0.02
    assert "400 x 300" in notice and f"{small.shape[1]} x {small.shape[0]}" in notice


def test_rd_curves(model, crop):
    tiny = crop[:64, :64].copy()
    samic = rd_curve(tiny, model, qualities=(0.1, 0.9))
    assert [p.codec for p in samic] == ["samic", "samic"] and samic[0].bpp < samic[1].bpp
    classical = classical_rd_curves(tiny, {"jpeg": (10, 60), "webp": (10, 60), "avif": (10, 60)})
    assert set(classical) == {"jpeg", "webp", "avif"}
    for points in classical.values():
        assert len(points) == 2 and points[0].bpp < points[1].bpp and points[0].psnr < points[1].psnr
    fig = render.rd_figure({"samic": samic, **classical}, "lpips", current=samic[0])
    assert [t.name for t in fig.data] == ["SAMIC", "JPEG", "WEBP", "AVIF", "current"]
    with pytest.raises(ValueError):
        render.rd_figure({"samic": samic}, "ssim")


def test_render_images(inspection):
    ins = inspection
    block = ins.blocks["g_a.stage3"]
    overlay = render.cluster_overlay(ins.original, block.assignment, block.stride, opacity=0.5)
    assert overlay.dtype == np.uint8 and overlay.shape[1:] == (WIDTH, 3) and overlay.shape[0] > HEIGHT
    plain = render.cluster_overlay(ins.original, block.assignment, block.stride, opacity=0.0, legend=False)
    assert np.array_equal(plain, ins.original)
    for image in (render.entropy_map(ins.original, block.probs, block.stride, "g_a.stage3"),
                  render.error_heatmap(ins.original, ins.reconstruction),
                  render.bit_allocation_map(ins.original, ins.bits_y, ins.bits_z, ins.bpp)):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[1] >= 500
        assert image.std() > 10  # not blank

    k = block.probs.shape[0]
    entropy = render.assignment_entropy(block.probs)
    assert entropy.shape == block.assignment.shape and np.all((entropy >= -1e-6) & (entropy <= math.log2(k) + 1e-5))
    uniform = np.full((k, 2, 3), 1 / k, np.float32)
    np.testing.assert_allclose(render.assignment_entropy(uniform), math.log2(k), rtol=1e-5)
    # the bits map spreads every estimated bit over the padded image exactly once
    bpp = render.bits_per_pixel_map(ins.bits_y, ins.bits_z, ins.padded_size)
    assert bpp.shape == ins.padded_size
    assert bpp.sum() == pytest.approx(ins.bits_y.sum() + ins.bits_z.sum(), rel=1e-4)


def test_render_figures(inspection):
    ins = inspection
    block = ins.blocks["g_a.stage2"]
    cluster, share = max(render.cluster_shares(block.assignment), key=lambda ks: ks[1])
    fig = render.scan_path_figure(ins.original, block.assignment, block.order, block.stride, cluster, "g_a.stage2")
    assert isinstance(fig, go.Figure)
    n_tokens = int((block.assignment == cluster).sum())
    assert n_tokens == round(share * block.assignment.size) and len(fig.data[1].x) == n_tokens
    steps = np.asarray(fig.data[1].marker.color)
    assert np.all(np.diff(steps) == 1)  # a cluster is one contiguous run of the scan
    # start, end and direction: two marked tokens in the legend and arrows along the path
    start, end = fig.data[2], fig.data[3]
    assert start.name == f"start (step {steps[0]})" and end.name == f"end (step {steps[-1]})"
    assert (start.x[0], start.y[0]) == (fig.data[1].x[0], fig.data[1].y[0])
    assert (end.x[0], end.y[0]) == (fig.data[1].x[-1], fig.data[1].y[-1])
    assert 0 < len(fig.layout.annotations) <= render.MAX_ARROWS
    assert all(a.showarrow and a.axref == "x" for a in fig.layout.annotations)
    assert "semantic order" in fig.layout.title.text and "runs" not in fig.layout.title.text

    toy = np.array([[0, 0, 0, 1], [0, 0, 2, 2]])
    assert render.cluster_shares(toy) == [(0, 0.625), (1, 0.125), (2, 0.25)]
    assert render.default_cluster(toy) == 2 and render.default_cluster(np.zeros((2, 2), int)) == 0

    positions = render.scan_positions(block.order, block.assignment.shape)
    assert np.array_equal(positions.reshape(-1)[block.order], np.arange(block.order.size))
    fig = render.order_comparison_figure(block.assignment, block.order, "g_a.stage2")
    assert [t.name for t in fig.data] == ["semantic", "raster", "random"]
    assert np.array_equal(np.asarray(fig.data[0].z), positions)
    assert np.array_equal(np.asarray(fig.data[1].z), np.arange(positions.size).reshape(positions.shape))
    assert "(this file)" in fig.layout.annotations[0].text and "(this file)" not in fig.layout.annotations[1].text
    orders = render.scan_orders(block.assignment)  # the codec's permutations
    assert np.array_equal(orders["semantic"], block.order)
    assert np.array_equal(np.sort(orders["random"]), np.arange(block.order.size))

    s = ins.spectrum
    fig = render.spectrum_figure(s.singular_values, s.thresholded, s.threshold)
    assert fig.layout.yaxis.type == "log" and len(fig.data) == 2 and "retained energy" in fig.layout.title.text
    assert "no SVD-RRM" in render.spectrum_figure(None, None, None).layout.title.text
    stats = render.spectrum_stats(s.singular_values, s.thresholded)
    assert 0 <= stats["retained_energy"] <= 1 and stats["kept_rank"] <= stats["channels"]
    assert stats["effective_rank_thresholded"] <= stats["effective_rank"] + 1e-6
    assert render.effective_rank(np.ones(8)) == pytest.approx(8) and render.effective_rank(np.zeros(3)) == 0


def test_crop_comparison_same_rate_and_sizes(model, crop):
    from samic.viz.crops import crop_comparison, render_crop_comparison

    target, box = 0.3, (16, 8, 112, 72)  # the 96 x 160 crop is the coded image; a 96 x 64 box of it
    result = crop_comparison(crop, target, box, model=model, rel_tol=0.03)
    assert [(p.codec, p.decoder) for p in result.panels] == [("samic", "mse"), ("samic", "perceptual"),
                                                            ("jpeg", None), ("webp", None)]
    mse, perceptual = result.panel("samic", "mse"), result.panel("samic", "perceptual")
    assert mse.num_bytes == perceptual.num_bytes and mse.quality == perceptual.quality  # one .samic file
    assert mse.bpp == pytest.approx(target, rel=0.03)
    for p in result.panels:  # integer-quality codecs: the nearest their quality steps get
        assert p.bpp == pytest.approx(8 * p.num_bytes / (HEIGHT * WIDTH)) and abs(p.bpp - target) < 0.1 * target
        assert p.crop.shape == result.original.shape == (64, 96, 3) and p.crop.dtype == np.uint8
        assert 15 < p.psnr < 50 and 0 <= p.lpips < 1 and 15 < p.image_psnr < 50
    assert np.array_equal(result.original, crop[8:72, 16:112])
    figure = render_crop_comparison(result, scale=2, columns=3)
    assert figure.dtype == np.uint8 and figure.shape[1] >= 3 * 2 * 96 and figure.shape[0] > 2 * 2 * 64
    with pytest.raises(ValueError, match="box"):
        crop_comparison(crop, target, (0, 0, WIDTH + 1, 10), model=model)


# ------------------------------------------------------------- scan orders and the router's prior
def test_scan_order_reaches_the_file_and_the_cache_key(model, crop, inspection):
    raster = cached_inspect_image(crop, 0.5, "mse", model, scan_order="raster")
    assert raster is not inspection and raster.scan_order == read_header(raster.data).scan_order == "raster"
    assert cached_inspect_image(crop, 0.5, "mse", model, scan_order="raster") is raster  # keyed by order too
    # the decoder follows the header: the reconstruction is what the raster file decodes to
    assert np.array_equal(decompress_image(raster.data, model, "mse"), raster.reconstruction)
    for block in raster.blocks.values():  # every SAMB of encode and decode scanned row by row
        assert np.array_equal(block.order, np.arange(block.order.size))
    with pytest.raises(ValueError, match="scan order"):
        inspect_image(crop, 0.5, "mse", model, scan_order="spiral")

    points = compare_scan_orders(crop, 0.5, "mse", model)
    assert [p.scan_order for p in points] == ["semantic", "raster", "random"]
    assert points[0].num_bytes == inspection.num_bytes and points[0].psnr == inspection.psnr
    assert points[1].num_bytes == raster.num_bytes and points[1].bpp == raster.bpp
    assert "semantic order gives" in scan_order_summary(points)

    block = raster.blocks["g_a.stage2"]
    cluster = render.default_cluster(block.assignment)
    fig = render.scan_path_figure(raster.original, block.assignment, block.order, block.stride, cluster,
                                  "g_a.stage2", "raster")
    steps = np.flatnonzero(block.assignment.reshape(-1) == cluster)  # raster: a token's step is its index
    assert "raster order" in fig.layout.title.text and np.array_equal(fig.data[1].marker.color, steps)


def test_scan_order_summary_is_judged_by_the_numbers():
    def point(order, num_bytes, psnr):
        return ScanOrderPoint(order, num_bytes, num_bytes / 100, psnr, 0.9, 0.2)

    same = scan_order_summary([point("semantic", 1000, 30.0), point("raster", 1003, 30.01), point("random", 998, 29.98)])
    assert "no measurable change" in same and "-0.010 dB PSNR and -0.3 % bytes against raster" in same
    ahead = scan_order_summary([point("semantic", 9000, 30.5), point("raster", 10000, 30.0)])
    assert "comes out ahead" in ahead and "no measurable" not in ahead and "only" not in ahead
    behind = scan_order_summary([point("semantic", 1100, 30.5), point("raster", 1000, 30.0)])
    assert "is behind" in behind and "only 1100 bytes" in behind
    assert "at least two" in scan_order_summary([point("semantic", 1000, 30.0)])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SAMIC("samic-tiny").eval()  # random init: a non-zero position term


def test_position_only_is_the_router_on_zero_features(tiny):
    grid, stride = (6, 10), 8
    for name in ("g_a.stage3", "h_a.samb", "h_s.samb", "g_s.stage3"):
        router = samb_block(tiny, name).router
        centres = router.centres.clone()
        prior = position_only_clusters(tiny, name, grid, stride)
        k = router.n_clusters
        assert prior.clusters.assignment.shape == grid and prior.clusters.probs.shape == (k, *grid)
        assert prior.clusters.stride == stride and prior.pos_gate == pytest.approx(float(router.pos_gate.detach()))
        with torch.no_grad():
            _, ids, probs = router(torch.zeros(1, 60, router.pos_proj.out_features), *grid)
            # whitening leaves zero features at zero: only the gated position term is left
            pos = router.pos_gate * router.pos_proj(positional_encoding_2d(*grid, router.n_freqs))
            expected = F.normalize(pos, dim=-1) @ router.centres.t()
        assert np.array_equal(prior.clusters.assignment, ids.reshape(grid).numpy())
        np.testing.assert_allclose(prior.clusters.probs, probs[0].t().reshape(k, *grid).numpy(), atol=1e-6)
        assert np.array_equal(prior.clusters.assignment.reshape(-1), expected.argmax(-1).numpy())
        assert np.array_equal(prior.clusters.order, render.scan_orders(prior.clusters.assignment)["semantic"])
        assert not prior.flat and prior.position_norm > 0
        assert torch.equal(router.centres, centres) and not router.training
    assert set(router_gates(tiny, ["g_a.stage3", "g_s.stage3"])) == {"g_a.stage3", "g_s.stage3"}
    with pytest.raises(ValueError, match="not a SAMB"):
        samb_block(tiny, "g_a.stage2")  # samic-tiny has a SAMB after stage 3 only


def test_position_only_of_the_shipped_weights(model, inspection):
    """Blocks of the shipped model are found by their trace names; a zero position term is
    reported as a flat prior, not drawn as if it were one."""
    for name, block in inspection.blocks.items():
        prior = position_only_clusters(model, name, block.assignment.shape, block.stride, "mse")
        assert prior.clusters.assignment.shape == block.assignment.shape
        if prior.flat:
            assert prior.position_norm == 0 and np.all(prior.clusters.assignment == 0)
            assert "no spatial prior" in router_note(name, {name: prior.pos_gate}, prior)
    note = router_note("g_a.stage3", router_gates(model, inspection.blocks, "mse"))
    assert "**g_a.stage3 " in note and "h_s.samb" in note


def test_cluster_selection_resets_per_block():
    toy = np.array([[0, 0, 0, 1], [0, 0, 2, 2]])
    assert pick_cluster(toy, 1, "b", "b") == 1  # same block: kept
    assert pick_cluster(toy, 1, "b", "a") == render.default_cluster(toy) == 2  # another block: reset
    assert pick_cluster(toy, 7, "b", "b") == 2 and pick_cluster(toy, None, "b", "b") == 2  # absent: default
    assert pick_cluster(toy, "x", "b", "b") == 2
