"""Trainer: exact resume, DDP across two gloo processes, stage-2 freezing, export/load."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import signal
import textwrap
import time
from pathlib import Path

import pytest
import torch

from samic.train.data import RandomCrops, list_images
from samic.train.trainer import TrainConfig, Trainer, train

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DIR = ROOT / ".." / "shared" / "data" / "train"
pytestmark = pytest.mark.skipif(not TRAIN_DIR.is_dir(), reason=f"training photos not found at {TRAIN_DIR}")


def tiny_config(out_dir: Path, **changes) -> TrainConfig:
    base = dict(preset="samic-tiny", train_dir=str(TRAIN_DIR), crop=64, n_val_images=2, batch_size=2,
                steps=4, lr=1e-3, warmup_steps=1, out_dir=str(out_dir), checkpoint_every=2, val_every=1000,
                log_every=1, progress=False, seed=3)
    base.update(changes)
    return TrainConfig(**base)


def test_samples_are_a_function_of_the_index():
    files = list_images(TRAIN_DIR)[:4]
    a, b = RandomCrops(files, crop=48, seed=1), RandomCrops(files, crop=48, seed=1)
    assert torch.equal(a[7], b[7])
    assert not torch.equal(a[7], a[8])
    assert a[0].shape == (3, 48, 48) and 0 <= a[0].min() and a[0].max() <= 1


def test_resume_is_exact(tmp_path):
    straight = train(tiny_config(tmp_path / "straight")).model.state_dict()
    interrupted = Trainer(tiny_config(tmp_path / "split"))
    interrupted.run(max_new_steps=2)  # as if stopped by the time limit or SIGTERM
    assert interrupted.step == 2
    resumed = train(tiny_config(tmp_path / "split"))
    assert resumed.step == 4
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, straight[name]), name
    log = (tmp_path / "split" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,lr") and len(log) == 5


def test_stage2_trains_only_the_perceptual_decoder(tmp_path):
    stage1 = train(tiny_config(tmp_path / "s1", steps=1))
    before = {k: v.clone() for k, v in stage1.model.state_dict().items()}
    cfg = tiny_config(tmp_path / "s2", stage=2, steps=2, init=str(tmp_path / "s1" / "checkpoint.pt"),
                      lpips_weight=1.0, gan_weight=0.1, mse_weight=0.3)
    after = train(cfg).model.state_dict()
    changed = {k for k in after if k in before and not torch.equal(after[k], before[k])}
    assert not changed, f"frozen parameters changed: {sorted(changed)[:5]}"
    perceptual = [k for k in after if k.startswith("g_s_perceptual.")]
    assert perceptual and any(not torch.equal(after[k], before[k.replace("g_s_perceptual.", "g_s.", 1)])
                              for k in perceptual)

    # a new stage 2 started from this stage-2 checkpoint keeps its trained discriminator
    discriminator = torch.load(tmp_path / "s2" / "checkpoint.pt", weights_only=False)["discriminator"]
    again = Trainer(tiny_config(tmp_path / "s2b", stage=2, steps=2, init=str(tmp_path / "s2" / "checkpoint.pt"),
                                lpips_weight=1.0, gan_weight=0.1))
    for name, value in again.discriminator.state_dict().items():
        assert torch.equal(value, discriminator[name]), name


def test_stage2_validation_reports_the_critic_on_held_out_crops(tmp_path):
    """Issue 16: the log says whether the critic beats chance, on crops it never trained on."""
    import csv

    train(tiny_config(tmp_path / "s1", steps=1))
    train(tiny_config(tmp_path / "s2", stage=2, steps=2, init=str(tmp_path / "s1" / "checkpoint.pt"),
                      gan_weight=0.1, val_every=2))
    rows = list(csv.DictReader(open(tmp_path / "s2" / "val_log.csv")))
    perceptual = [r for r in rows if r["decoder"] == "perceptual"]
    assert perceptual and all(0 <= float(r["critic_acc"]) <= 1 and float(r["d_real"]) >= 0 for r in perceptual)
    assert all(r["critic_acc"] == "nan" for r in rows if r["decoder"] == "mse")
    log = list(csv.DictReader(open(tmp_path / "s2" / "train_log.csv")))
    assert {"d_loss", "d_real", "d_fake"} <= set(log[0])


def test_critic_trains_before_the_generators_gan_term(tmp_path):
    """A fresh critic learns from step 0; the generator sees its gradients only from gan_start."""
    train(tiny_config(tmp_path / "s1", steps=1))
    trainer = Trainer(tiny_config(tmp_path / "s2", stage=2, steps=2, init=str(tmp_path / "s1" / "checkpoint.pt"),
                                  gan_weight=0.1, gan_start=2))
    critic_before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    stats = trainer.train_step(trainer._batch(0))
    assert "d_loss" in stats and math.isnan(stats["g_loss"])
    assert any(not torch.equal(v, critic_before[k]) for k, v in trainer.discriminator.state_dict().items())
    trainer.step = 2
    assert math.isfinite(trainer.train_step(trainer._batch(2))["g_loss"])


def test_train_log_has_the_gan_column_before_gan_start(tmp_path):
    train(tiny_config(tmp_path / "s1", steps=1))
    train(tiny_config(tmp_path / "s2", stage=2, steps=3, init=str(tmp_path / "s1" / "checkpoint.pt"),
                      gan_weight=0.1, gan_start=2))
    header, *rows = (tmp_path / "s2" / "train_log.csv").read_text().splitlines()
    columns = header.split(",")
    assert "d_loss" in columns and "g_loss" in columns and len(rows) == 3
    g_loss = [row.split(",")[columns.index("g_loss")] for row in rows]
    assert g_loss[0] == "nan" and g_loss[1] == "nan" and g_loss[2] != "nan"


def test_export_and_load_roundtrip(tmp_path):
    from samic.train.export import export_checkpoint
    from samic.weights import WeightsError, load_model

    trainer = train(tiny_config(tmp_path / "run", steps=1))
    sidecar = export_checkpoint(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.safetensors", dtype="float32")
    assert sidecar["preset"] == "samic-tiny" and sidecar["steps"] == 1
    model = load_model(tmp_path / "w.safetensors")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value.cpu()), name
    data = bytearray((tmp_path / "w.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "w.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(tmp_path / "w.safetensors")


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[optim]\nbatch_sise = 4\n")
    with pytest.raises(ValueError, match="batch_sise"):
        TrainConfig.from_toml(path)


def test_ddp_two_gloo_processes_end_identical(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_train import tiny_config
        from samic.train.trainer import Trainer
        cfg = tiny_config({str(tmp_path / 'ddp')!r}, steps=2, checkpoint_every=1000)
        trainer = Trainer(cfg)
        trainer.run()
        torch.save(trainer.model.state_dict(), {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.pt")
        trainer.close()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--rdzv-endpoint=127.0.0.1:0",
                           "--rdzv-backend=c10d", str(worker)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    initial = Trainer(tiny_config(tmp_path / "fresh", steps=0)).model.state_dict()
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0), "no training happened"
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_sigterm_to_every_process_checkpoints_the_current_step(tmp_path):
    """`pkill -f "samic train"` signals the data worker too: the run still ends with a checkpoint."""
    config = tmp_path / "run.toml"
    config.write_text((ROOT / "configs" / "tiny-test.toml").read_text()
                      .replace("steps = 4", "steps = 100000").replace("checkpoint_every = 2", "checkpoint_every = 100000")
                      .replace('out_dir = "runs/tiny-test"', f'out_dir = "{tmp_path / "run"}"\nworkers = 1'))
    proc = subprocess.Popen([sys.executable, "-m", "samic.cli", "train", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = tmp_path / "run" / "train_log.csv"
    deadline = time.monotonic() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):  # two steps done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-2000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # main process and data worker alike
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-2000:]
    step = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"]
    assert step >= 2 and f"stopped at step {step}" in output


def test_stage1_continues_from_two_decoder_weights(tmp_path):
    """Stage 1 resumed from shipped-style weights (MSE + perceptual decoder) keeps the MSE model."""
    train(tiny_config(tmp_path / "s1", steps=1))
    train(tiny_config(tmp_path / "s2", stage=2, steps=1, init=str(tmp_path / "s1" / "checkpoint.pt"), gan_weight=0.1))
    two_decoders = torch.load(tmp_path / "s2" / "checkpoint.pt", weights_only=False)["model"]
    again = Trainer(tiny_config(tmp_path / "s1b", init=str(tmp_path / "s2" / "checkpoint.pt")))
    assert again.model.g_s_perceptual is None
    for name, value in again.model.state_dict().items():
        assert torch.equal(value, two_decoders[name]), name
