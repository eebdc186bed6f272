"""samic bench train: measures on constructed curves, variants, pause/continue, and a tiny run end to end."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samic.bench import train as bench
from samic.cli import main
from samic.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_baseline_is_the_lite_dense_recipe():
    path = ROOT / "configs" / "lite-dense.toml"
    if not path.is_file():
        pytest.skip("configs/lite-dense.toml not found")
    recipe = TrainConfig.from_toml(path)
    for key, value in bench.BASELINE_RECIPE.items():
        assert getattr(recipe, key) == value, key


def test_psnr_at_bpp_is_linear_in_log_bpp():
    bpps, psnrs = [0.4, 0.1, 0.2], [29.0, 25.0, 27.0]  # any order
    assert bench.psnr_at_bpp(bpps, psnrs, 0.15) == pytest.approx(25 + 2 * math.log2(1.5))
    assert bench.psnr_at_bpp(bpps, psnrs, 0.3) == pytest.approx(27 + 2 * math.log2(1.5))
    assert bench.psnr_at_bpp(bpps, psnrs, 0.2) == pytest.approx(27.0)
    assert math.isnan(bench.psnr_at_bpp(bpps, psnrs, 0.05))  # no extrapolation
    assert math.isnan(bench.psnr_at_bpp(bpps, psnrs, 0.5))


def test_time_to_reach_and_efficiency_ratio():
    t = [0, 2, 4, 6, 8]
    baseline = {"x": t, "cost": [10, 8, 7, 6.5, 6]}
    faster = {"x": t, "cost": [10, 7, 6, 5.5, 5.2]}
    assert bench.time_to_reach(t, faster["cost"], 6.5) == pytest.approx(3.0)  # between (2, 7) and (4, 6)
    assert bench.efficiency_ratio(faster, baseline) == pytest.approx(0.5)
    assert bench.efficiency_ratio(baseline, baseline) == pytest.approx(1.0)
    assert bench.efficiency_ratio({"x": t, "cost": [10, 9, 8.5, 8, 7]}, baseline) is None
    assert bench.time_to_reach(t, [5, 9, 9, 9, 9], 6) == 0.0


def _fake_result(name, costs, minutes=(0, 2, 4, 6, 8), crops_per_s=3.0):
    points = [{"minutes": m, "step": 10 * i, "cost": c, "psnr@0.15": 25.0 + i, "psnr@0.3": math.nan,
               "crops_per_s": crops_per_s} for i, (m, c) in enumerate(zip(minutes, costs))]
    return {"variant": name, "steps": points[-1]["step"], "train_s": 60 * minutes[-1], "crops_per_s": crops_per_s,
            "points": points}


def _fake_report():
    report = {"budget": {"kind": "minutes", "total": 8, "every": 2}, "init": "w.safetensors", "preset": "samic-lite",
              "seed": 0, "torch_threads": 2, "cpu_count": 2,
              "validation": {"images": 8, "crops": 16, "crop": 256, "scales": [0.5, 0.25], "qualities": [0, 0.5, 1]},
              "variants": [_fake_result("lr2x", [10, 7, 6, 5.5, 5.2]), _fake_result("baseline", [10, 8, 7, 6.5, 6]),
                           _fake_result("slow", [10, 9, 8.5, 8, 7])]}
    report["summary"] = bench.summarize(report)
    return report


def test_summary_names_the_winner_and_its_ratio(tmp_path):
    report = _fake_report()
    s = report["summary"]
    assert (s["baseline"], s["winner"], s["ratio"]) == ("baseline", "lr2x", pytest.approx(0.5))
    assert "lr2x wins" in s["verdict"] and "0.50x" in s["verdict"]
    rows = {r["variant"]: r for r in s["rows"]}
    assert rows["slow"]["ratio"] is None and rows["baseline"]["ratio"] == 1.0
    assert rows["lr2x"]["cost_change"] == pytest.approx(5.2 / 6 - 1)
    table = bench.format_table(report)
    assert "not reached" in table and s["verdict"] in table
    bench.write_csv(report, tmp_path / "c.csv")
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert list(rows[0]) == list(bench.CSV_FIELDS) and len(rows) == 15
    bench.plot(report, tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_variants_file(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text('[big]\nlr = 2e-4\nscale_range = [0.3, 0.7]\nchannels_last = true\n'
                    '[big.model]\nd_state = 16\nsamb_stages = [3]\n')
    big = bench.load_variants_file(path)["big"]
    assert big.train == {"lr": 2e-4, "scale_range": (0.3, 0.7)} and big.channels_last
    assert big.model == {"d_state": 16, "samb_stages": (3,)}
    cfg, model_config = bench.variant_config(big, TrainConfig(preset="samic-tiny"))
    assert cfg.lr == 2e-4 and cfg.steps == bench.BENCH_SCHEDULE_STEPS and model_config.d_state == 16
    names = [v.name for v in bench.resolve_variants(["baseline", "big", "raster"], {"big": big})]
    assert names == ["baseline", "big", "raster"]
    for text, message in (('[x]\nlearning_rate = 1\n', "unknown TrainConfig"), ('[x]\nseed = 1\n', "protocol"),
                          ('[x.model]\nwidth = 3\n', "unknown ModelConfig"), ('lr = 1\n', "tables")):
        path.write_text(text)
        with pytest.raises(bench.BenchError, match=message):
            bench.load_variants_file(path)
    with pytest.raises(bench.BenchError, match="unknown variant"):
        bench.resolve_variants(["nope"])
    with pytest.raises(bench.BenchError, match="scan order"):
        bench.variant_config(bench.make_variant("x", {"scan_order": "spiral"}), TrainConfig())


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, states: str) -> str:
    for _ in range(100):
        state = _state(pid)
        if state in states:
            return state
        time.sleep(0.02)
    return state


def test_pause_stops_a_process_tree_and_always_continues_it():
    parent = subprocess.Popen(["bash", "-c", "sleep 30 & wait"])
    try:
        for _ in range(100):
            kids = bench._descendants(parent.pid)
            if kids:
                break
            time.sleep(0.02)
        assert kids, "the child sleep did not start"
        with bench.paused(parent.pid) as pids:
            assert set(pids) == {parent.pid, *kids}
            assert all(_wait_state(p, "T") == "T" for p in pids)
        assert all(_wait_state(p, "SR") in "SR" for p in pids)
        with pytest.raises(RuntimeError):  # an error inside: continued all the same
            with bench.paused(parent.pid):
                assert _wait_state(parent.pid, "T") == "T"
                raise RuntimeError("boom")
        assert _wait_state(parent.pid, "SR") in "SR"
        with pytest.raises(SystemExit):  # SIGTERM to the bench: continued, then exits
            with bench.paused(parent.pid):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert _wait_state(parent.pid, "SR") in "SR"
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        for p in bench._descendants(parent.pid):
            os.kill(p, signal.SIGKILL)
        parent.kill()
        parent.wait()
    with pytest.raises(bench.BenchError, match="no such process"):
        with bench.paused(parent.pid):
            pass


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """Eight small smooth-plus-texture photos (no shared data needed)."""
    folder = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:144, 0:160] / 160.0
    for i in range(8):
        base = np.stack([np.sin(6 * xx * (c + 1) + i) * np.cos(4 * yy + c) for c in range(3)], -1)
        img = 127 + 90 * base + 20 * rng.standard_normal(base.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


@pytest.fixture
def keep_threads():
    """The CLI's --threads sets torch's thread count for the process: put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_train_end_to_end(tmp_path, pool, capsys, keep_threads):
    variants = tmp_path / "v.toml"
    variants.write_text('[fast]\nlr = 1e-2\nwarmup_steps = 1\nbatch_size = 2\n'
                        '[fast-raster]\nlr = 1e-2\nwarmup_steps = 1\nbatch_size = 2\nscan_order = "raster"\n')
    out = tmp_path / "out"
    rc = main(["bench", "train", "--preset", "samic-tiny", "--random-init", "--crop", "32", "--val-images", "2",
               "--train-dir", str(pool), "--variants", "fast,fast-raster", "--variants-file", str(variants),
               "--minutes", "0.03", "--eval-every", "0.015", "--val-qualities", "0,1", "--out", str(out),
               "--plot", str(out / "p.png"), "--threads", "1", "--quiet"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "val cost" in table and ("wins" in table)
    report = json.loads((out / "report.json").read_text())
    assert [r["variant"] for r in report["variants"]] == ["fast", "fast-raster"]
    assert report["summary"]["baseline"] == "fast"  # no 'baseline' variant: the first one
    assert report["validation"] == {"images": 2, "crops": 4, "crop": 32, "scales": [0.5, 0.25], "qualities": [0.0, 1.0],
                                    "lambda_range": list(report["validation"]["lambda_range"])}
    for r in report["variants"]:
        minutes = [p["minutes"] for p in r["points"]]
        # at 0, then at the first step past each 0.015 min (one step may pass several marks on a busy machine)
        assert minutes[0] == 0 and minutes[-1] >= 0.03 and minutes == sorted(minutes) and len(minutes) >= 2
        assert r["steps"] > 0 and r["crops_per_s"] > 0 and all(math.isfinite(p["cost"]) for p in r["points"])
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert list(rows[0]) == list(bench.CSV_FIELDS)
    assert len(rows) == sum(len(r["points"]) for r in report["variants"])
    assert (out / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.txt").read_text().strip() == table.strip()


def test_steps_budget_is_exact(pool, keep_threads):
    base = TrainConfig(preset="samic-tiny", train_dir=str(pool), crop=32, n_val_images=2, batch_size=2, lr=1e-3,
                       warmup_steps=1, init="", threads=1)
    variants = [bench.make_variant("a", {}), bench.make_variant("b", {"lr": 2e-3}),
                bench.make_variant("broken", {"gumbel_tau": "hot"}),  # fails in its first step: reported, skipped
                bench.make_variant("stateless", {"scan_recurrence": False})]
    report = bench.bench_train(variants, base, bench.Budget("steps", 3, 2), qualities=(0.5,), quiet=True)
    assert [f["variant"] for f in report["failed"]] == ["broken"]
    assert "broken" in bench.format_table(report)
    for r in report["variants"]:
        assert r["steps"] == 3 and [p["step"] for p in r["points"]] == [0, 2, 3]
    a, b, stateless = (r["points"] for r in report["variants"])
    assert a[0]["cost"] == b[0]["cost"] and a[-1]["cost"] != b[-1]["cost"]  # the same start, different lr
    assert stateless[0]["cost"] != a[0]["cost"]  # the same weights, scanned without recurrence


def test_final_weights_are_saved_when_asked(pool, keep_threads, tmp_path):
    from samic.weights import load_model

    base = TrainConfig(preset="samic-tiny", train_dir=str(pool), crop=32, n_val_images=2, batch_size=2, lr=1e-3,
                       warmup_steps=1, init="", threads=1)
    bench.bench_train([bench.make_variant("a", {})], base, bench.Budget("steps", 2, 2), qualities=(0.5,),
                      quiet=True, save_dir=tmp_path)
    model = load_model(tmp_path / "a.safetensors")
    assert model.config.name == "samic-tiny" and all(bool(b.router.centres_ready) for b in model.samb_blocks())


def test_cli_user_errors(pool, capsys):
    args = ["bench", "train", "--preset", "samic-tiny", "--random-init", "--train-dir", str(pool), "--steps", "1"]
    assert main(args + ["--variants", "nope"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert main(args + ["--pause-pid", "999999999"]) == 2
    assert "no such process" in capsys.readouterr().err
    assert main(["bench", "train", "--preset", "samic-tiny", "--init", "missing.safetensors", "--train-dir",
                 str(pool)]) == 2
    assert "weights not found" in capsys.readouterr().err
