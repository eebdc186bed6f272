"""`samic eval` end to end on two 128x128 Kodak crops with SAMIC (shipped weights) and JPEG."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samic.cli import main

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"
WEIGHTS = Path(__file__).resolve().parents[1] / "samic" / "assets" / "weights" / "samic-lite.safetensors"
QUALITIES = ["samic=0,0.35,0.7,1", "jpeg=5,15,30,50"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    if not (KODAK / "kodim01.png").is_file() or not WEIGHTS.is_file():
        pytest.skip("needs ../shared/data/kodak and the shipped samic-lite weights")
    folder = tmp_path_factory.mktemp("kodak-crops")
    for name, box in (("kodim01", (300, 200, 428, 328)), ("kodim23", (200, 150, 328, 278))):
        with Image.open(KODAK / f"{name}.png") as im:
            im.convert("RGB").crop(box).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    argv = ["eval", "--dataset", str(dataset), "--out", str(out), "--codecs", "samic,jpeg",
            "--metrics", "psnr", "--per-image", "--quiet", "--no-plots", "--qualities", *QUALITIES]
    threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # --threads (default 1) is restored afterwards
    return out


def test_writes_compressai_json_per_codec(run_dir):
    for name, n_points in (("samic-lite-mse", 4), ("jpeg", 4)):
        data = json.loads((run_dir / f"{name}.json").read_text())
        assert data["name"] == name
        results = data["results"]
        assert {"bpp", "psnr-rgb", "encoding_time", "decoding_time"} <= set(results)
        assert all(len(v) == n_points for v in results.values())
        assert np.all(np.diff(results["bpp"]) > 0), f"{name}: bpp must grow with quality"
        assert np.all(np.diff(results["psnr-rgb"]) > 0)
        assert set(data["per_image"]) == {"kodim01", "kodim23"}
    decoders = json.loads(WEIGHTS.with_suffix(".json").read_text())["decoders"]
    assert (run_dir / "samic-lite-perceptual.json").is_file() == ("perceptual" in decoders)  # default: all
    samic = json.loads((run_dir / "samic-lite-mse.json").read_text())
    assert samic["qualities"] == [0.0, 0.35, 0.7, 1.0]
    assert "sha256" in samic["description"]
    # SAMIC's network and entropy-coding times are kept apart, and fit in the total.
    res = samic["results"]
    for side in ("encoding", "decoding"):
        parts = np.add(res[f"{side}_network_time"], res[f"{side}_entropy_coding_time"])
        assert np.all(parts <= np.array(res[f"{side}_time"]) + 1e-6)


def test_resume_keeps_finished_points_and_plots(dataset, run_dir, capsys):
    before = {p.name: p.read_text() for p in run_dir.glob("*.json")}
    argv = ["eval", "--dataset", str(dataset), "--out", str(run_dir), "--codecs", "samic,jpeg",
            "--metrics", "psnr", "--per-image", "--quiet", "--resume", "--qualities", *QUALITIES]
    assert main(argv) == 0
    assert "| jpeg |" in capsys.readouterr().out
    assert {p.name: p.read_text() for p in run_dir.glob("*.json")} == before  # nothing re-encoded
    table = (run_dir / "bd-rate.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| jpeg |"))
    assert row.count("%") == 1 and "n/a" not in row  # one metric (PSNR), computed
    assert (run_dir / "rd.html").stat().st_size > 10_000
    assert Image.open(run_dir / "rd.png").size[0] > 100


def test_resume_adds_a_missing_metric(dataset, run_dir, tmp_path):
    out = tmp_path / "more"
    out.mkdir()
    before = json.loads((run_dir / "jpeg.json").read_text())
    (out / "jpeg.json").write_text(json.dumps(before))
    argv = ["eval", "--dataset", str(dataset), "--out", str(out), "--codecs", "jpeg", "--metrics", "psnr,ms-ssim",
            "--per-image", "--quiet", "--resume", "--no-plots", "--qualities", "jpeg=5,15,30,50"]
    assert main(argv) == 0
    after = json.loads((out / "jpeg.json").read_text())
    for key in ("bpp", "psnr-rgb"):  # kept as they were; the timings are measured again
        assert after["results"][key] == before["results"][key]
    assert all(t > 0 for t in after["results"]["encoding_time"])
    assert np.all(np.diff(after["results"]["ms-ssim-rgb"]) > 0)
    assert all(len(table["ms-ssim-rgb"]) == 4 for table in after["per_image"].values())


@pytest.mark.parametrize("extra, message", [
    (["--codecs", "samic,bpg2"], "unknown codec 'bpg2'"),
    (["--codecs", "jpeg", "--qualities", "jpeg=5,abc"], "not a list of numbers"),
    (["--codecs", "jpeg", "--qualities", "jpeg=0,50"], "outside [1, 100]"),
    (["--codecs", "jpeg", "--qualities", "jpeg=5.5"], "not an integer"),
    (["--codecs", "jpeg", "--qualities", "webp=5"], "not in --codecs"),
    (["--codecs", "jpeg", "--metrics", "psnr,vmaf"], "unknown metric 'vmaf'"),
    (["--codecs", "jpeg", "--limit", "0"], "--limit must be at least 1"),
    (["--codecs", "jpeg", "--threads", "0"], "--threads must be at least 1"),
    (["--codecs", "jpeg", "--weights", "x.safetensors"], "not in --codecs"),
    (["--codecs", "samic", "--weights", "missing.safetensors"], "neither a model"),
])
def test_bad_arguments_exit_2_with_one_line(dataset, tmp_path, capsys, extra, message):
    assert main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # nothing is written before the arguments are checked


def test_missing_dataset_and_decoder(dataset, tmp_path, capsys):
    assert main(["eval", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--dataset", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .png" in capsys.readouterr().err
    if "perceptual" not in json.loads(WEIGHTS.with_suffix(".json").read_text())["decoders"]:
        assert main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o"), "--codecs", "samic",
                     "--decoder", "perceptual"]) == 2
        assert "no perceptual decoder" in capsys.readouterr().err
