"""Evaluation runner, BD-rate, results files and RD plots on two small Kodak crops."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samic.eval.bdrate import bd_psnr, bd_rate, bd_rate_table
from samic.eval.classical import CODECS
from samic.eval.plots import plot_metrics, save_rd_plots
from samic.eval.results import RDResults, load_results_dir
from samic.eval.runner import default_metrics, evaluate
from samic.metrics import psnr

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"
JPEG_QUALITIES = [10, 25, 40, 60, 80]
METRICS = {"psnr-rgb": psnr}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two halved 192x128 Kodak crops, written as PNG like a real test set."""
    if not (KODAK / "kodim01.png").exists():
        pytest.skip(f"Kodak not found at {KODAK}")
    folder = tmp_path_factory.mktemp("kodak-crops")
    for name in ("kodim01", "kodim23"):
        with Image.open(KODAK / f"{name}.png") as im:
            im.convert("RGB").crop((192, 128, 576, 384)).reduce(2).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def jpeg_runs(dataset) -> dict[str, RDResults]:
    """Default JPEG and the same JPEG without Huffman optimisation: same pixels, more bits."""
    codecs = {"jpeg": CODECS["jpeg"](), "jpeg-unoptimized": CODECS["jpeg"](optimize=False)}
    qualities = {name: JPEG_QUALITIES for name in codecs}
    return evaluate(dataset, codecs, qualities, METRICS, progress=False, per_image=True)


def test_evaluate_collects_compressai_results(jpeg_runs):
    run = jpeg_runs["jpeg"]
    assert list(run.results) == ["bpp", "psnr-rgb", "encoding_time", "decoding_time"]
    assert run.qualities == JPEG_QUALITIES and len(run) == len(JPEG_QUALITIES)
    assert np.all(np.diff(run.metric("bpp")) > 0)
    assert np.all(np.diff(run.metric("psnr-rgb")) > 0)
    assert np.all(run.metric("encoding_time") > 0) and np.all(run.metric("decoding_time") > 0)
    assert "libjpeg" in run.description
    # The averages are the means of the per-image values.
    assert set(run.per_image) == {"kodim01", "kodim23"}
    per_image_bpp = np.mean([run.per_image[k]["bpp"] for k in run.per_image], axis=0)
    np.testing.assert_allclose(per_image_bpp, run.metric("bpp"))


def test_evaluate_uses_default_sweep_and_limit(dataset):
    run = evaluate(dataset, {"webp": CODECS["webp"]()}, metrics=METRICS, progress=False, limit=1)["webp"]
    assert run.qualities == list(CODECS["webp"].default_qualities) and run.per_image is None
    with pytest.raises(ValueError, match="no qualities"):
        evaluate(dataset, {"webp": CODECS["webp"]()}, {"webp": []}, METRICS, progress=False)


def test_default_metrics_always_has_psnr():
    metrics = default_metrics(("psnr-rgb",))
    a = np.zeros((8, 8, 3), np.uint8)
    assert math.isclose(metrics["psnr-rgb"](a, a + 1), 10 * math.log10(255**2))
    with pytest.raises(ValueError, match="unknown metric"):
        default_metrics(("vmaf",))


def args(anchor: RDResults, test: RDResults) -> tuple:
    """The four PSNR curve arrays that bd_rate / bd_psnr take."""
    return anchor.metric("bpp"), anchor.metric("psnr-rgb"), test.metric("bpp"), test.metric("psnr-rgb")


def test_bd_rate_against_itself_and_a_worse_codec(jpeg_runs):
    good, worse = jpeg_runs["jpeg"], jpeg_runs["jpeg-unoptimized"]
    assert abs(bd_rate(*args(good, good))) < 1e-9
    assert abs(bd_psnr(*args(good, good))) < 1e-9
    # Identical pixels in more bytes: positive BD-rate, negative BD-PSNR, for either interpolation.
    for method in ("pchip", "akima"):
        assert bd_rate(*args(good, worse), method=method) > 1
        assert bd_psnr(*args(good, worse), method=method) < 0
        assert bd_rate(*args(worse, good), method=method) < -1


def test_bd_exact_on_synthetic_curves():
    rate = np.array([0.1, 0.2, 0.4, 0.8])
    psnr = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, psnr, 1.2 * rate, psnr) == pytest.approx(20.0)
    assert bd_psnr(rate, psnr, rate, psnr + 0.5) == pytest.approx(0.5)
    # Lower-is-better metrics: fewer bits at equal LPIPS is still a negative BD-rate.
    lpips = np.array([0.3, 0.2, 0.12, 0.07])
    assert bd_rate(rate, lpips, 0.8 * rate, lpips, larger_better=False) == pytest.approx(-20.0)
    assert bd_psnr(rate, lpips, rate, lpips - 0.01, larger_better=False) == pytest.approx(-0.01)
    # Points in any order are sorted by rate first.
    assert bd_rate(rate[::-1], psnr[::-1], 1.2 * rate, psnr) == pytest.approx(20.0)


def test_bd_errors_are_clear():
    rate, psnr = np.array([0.1, 0.2, 0.4, 0.8]), np.array([28.0, 31.0, 34.0, 37.0])
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(rate[:3], psnr[:3], rate, psnr)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(rate, psnr, rate, psnr + 20)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_psnr(rate, psnr, rate * 100, psnr)
    with pytest.raises(ValueError, match="monotone"):
        bd_rate(rate, np.array([28.0, 31.0, 30.0, 37.0]), rate, psnr)


def test_bd_rate_table_markdown(jpeg_runs):
    good, worse = jpeg_runs["jpeg"], jpeg_runs["jpeg-unoptimized"]
    short = RDResults("short", {"bpp": [0.1, 0.2], "psnr-rgb": [25.0, 27.0]})
    table = bd_rate_table(good, [worse, short], metrics=("psnr-rgb", "lpips-alex"))
    assert "| anchor | psnr-rgb |" in table  # the test curve has no LPIPS: no column
    row = next(line for line in table.splitlines() if line.startswith("| jpeg-unoptimized"))
    assert float(row.split("|")[2].strip(" %")) < 0
    assert "| short | n/a |" in table and "at least 4" in table


def test_results_json_round_trip(jpeg_runs, tmp_path):
    run = jpeg_runs["jpeg"]
    path = run.save(tmp_path / "jpeg.json")
    on_disk = json.loads(path.read_text())
    assert {"name", "description", "results"} <= set(on_disk) and on_disk["results"]["bpp"] == run.results["bpp"]
    assert RDResults.load(path).to_dict() == run.to_dict()
    assert set(load_results_dir(tmp_path)) == {"jpeg"}


def test_results_nan_and_validation(tmp_path):
    run = RDResults("x", {"bpp": [0.1, 0.2], "dists": [float("nan"), 0.1]})
    assert json.loads(run.save(tmp_path / "x.json").read_text())["results"]["dists"][0] is None
    assert math.isnan(RDResults.load(tmp_path / "x.json").results["dists"][0])
    with pytest.raises(ValueError, match="differ in length"):
        RDResults("y", {"bpp": [0.1, 0.2], "psnr-rgb": [30.0]})
    with pytest.raises(ValueError, match="'bpp'"):
        RDResults("z", {"psnr-rgb": [30.0]})
    (tmp_path / "bad.json").write_text('{"name": "bad"}')
    with pytest.raises(ValueError, match="bad.json: not a CompressAI"):
        RDResults.load(tmp_path / "bad.json")


def test_plots_write_html_and_png(jpeg_runs, tmp_path):
    runs = list(jpeg_runs.values())
    assert plot_metrics(runs) == ["psnr-rgb"]
    written = save_rd_plots(runs, tmp_path / "rd", png_backend="matplotlib")
    assert written["html"].read_text().count("jpeg-unoptimized") >= 1
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="png_backend"):
        save_rd_plots(runs, tmp_path / "rd", png_backend="svg")


def test_plots_png_auto_backend(jpeg_runs, tmp_path):
    """Through kaleido when a Chrome is there, else matplotlib with a warning: a PNG either way."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = save_rd_plots(list(jpeg_runs.values()), tmp_path / "auto", html=False)
    assert set(written) == {"png"} and written["png"].read_bytes()[:4] == b"\x89PNG"


def test_plots_png_falls_back_to_matplotlib(jpeg_runs, tmp_path, monkeypatch):
    import plotly.graph_objects as go

    def no_chrome(*_args, **_kwargs):
        raise RuntimeError("no Chrome")

    monkeypatch.setattr(go.Figure, "write_image", no_chrome)
    with pytest.warns(UserWarning, match="matplotlib"):
        written = save_rd_plots(list(jpeg_runs.values()), tmp_path / "fallback", html=False)
    assert written["png"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RuntimeError, match="no Chrome"):
        save_rd_plots(list(jpeg_runs.values()), tmp_path / "strict", html=False, png_backend="plotly")
