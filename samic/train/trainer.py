"""The SAMIC trainer: ``samic train --config configs/NAME.toml``.

Stage 1 trains everything on rate + lambda(q) * 255^2 * MSE (+ an optional small LPIPS
term), with the quality q drawn per sample so one model covers the whole rate range.
Stage 2 freezes the encoder and the entropy model and trains a perceptual copy of the
decoder (MSE + LPIPS + hinge GAN against a conditional PatchGAN), so one
bitstream decodes with either decoder.

Runs on CPU or CUDA, single process or under ``torchrun`` (DistributedDataParallel; gloo
on CPU, NCCL on CUDA). Checkpoints hold weights, optimizers, step and every RNG state;
resuming continues exactly where the run stopped (batches are a function of the step).
"""
from __future__ import annotations

import csv
import math
import os
import random
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from samic.layers.samb import ScanSettings
from samic.models import SAMIC, ModelConfig
from samic.models.samic import pad_to_multiple
from samic.quality import VALIDATION_QUALITIES
from samic.train import losses
from samic.train.data import RandomCrops, list_images, split_train_val, validation_crops


@dataclass
class TrainConfig:
    """Every knob of a training run; ``configs/*.toml`` set these by section-less keys."""

    preset: str = "samic-lite"
    init: str = ""  # weights (.safetensors) or checkpoint (.pt) to start from
    stage: int = 1
    train_dir: str = "../shared/data/train"
    n_val_images: int = 8
    crop: int = 256
    scale_range: tuple[float, float] = (0.5, 1.0)
    batch_size: int = 8
    steps: int = 100_000
    lr: float = 1e-4
    aux_lr: float = 1e-3
    disc_lr: float = 1e-4
    gain_lr: float = 0.0  # learning rate of the gain units (0: lr); higher re-spaces the rate range cheaply
    lr_decay_at: tuple[float, ...] = (0.8, 0.95)  # fractions of ``steps``; x0.1 at each
    warmup_steps: int = 200
    clip_grad: float = 1.0
    gumbel_tau: tuple[float, float] = (1.0, 0.5)  # annealed linearly over ``steps``
    quality_range: tuple[float, float] = (0.0, 1.0)
    mse_weight: float = 1.0  # multiplies lambda(q) * 255^2 * MSE
    lpips_weight: float = 0.0
    lpips_net: str = "alex"
    scan_order: str = "semantic"  # SAMB scan order while training and validating: semantic, raster, random
    scan_recurrence: bool = True  # False: SAMB's state-less ablation (y = D * u), for comparisons
    gan_weight: float = 0.0
    gan_start: int = 0  # stage 2: steps before the generator's GAN term (the critic trains from step 0)
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    threads: int = 0  # torch CPU threads (0: torch default)
    out_dir: str = "runs/default"
    checkpoint_every: int = 200
    val_every: int = 1000
    log_every: int = 20
    time_limit_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0: no limit
    progress: bool = True

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "TrainConfig":
        raw = tomllib.loads(Path(path).read_text())
        flat: dict = {}
        for key, value in raw.items():  # sections are only for readability
            flat.update(value if isinstance(value, dict) else {key: value})
        flat.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        for f in fields(cls):
            if f.name in flat and isinstance(getattr(cls, f.name, None), tuple):
                flat[f.name] = tuple(flat[f.name])
        return cls(**flat)


@dataclass
class _DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN marks a term not active at that step); NaN if none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _ignore_stop_signals(worker_id: int) -> None:
    """Data workers leave SIGTERM/SIGINT to the main process, which checkpoints and then ends
    them (`pkill -f "samic train"` or Ctrl-C reach the workers too)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_distributed(device_type: str) -> _DistInfo:
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return _DistInfo()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend)
    return _DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """One training run (see the module docstring). ``run()`` trains until ``steps`` or the
    time limit, checkpointing to ``out_dir/checkpoint.pt`` and logging to CSV files."""

    def __init__(self, cfg: TrainConfig, model_config: ModelConfig | None = None):
        """``model_config``: an architecture other than ``cfg.preset``'s (benchmarks of variants)."""
        self.cfg = cfg
        self.scan = ScanSettings(order=cfg.scan_order, recurrence=cfg.scan_recurrence).validated()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = _init_distributed(torch.device(device).type)
        if torch.device(device).type == "cuda":
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.out_dir = Path(cfg.out_dir)
        if self.dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

        self.model = SAMIC(model_config or cfg.preset)
        if cfg.stage == 2:
            self.model.add_perceptual_decoder()
        self._init_discriminator = None
        if cfg.init:
            self._load_init(cfg.init)
        self.model.to(self.device).train()
        self._configure_trainable()

        files = list_images(cfg.train_dir)
        train_files, val_files = split_train_val(files, cfg.n_val_images)
        self.dataset = RandomCrops(train_files, cfg.crop, cfg.scale_range, seed=cfg.seed * 1000 + self.dist.rank)
        self.val_images = validation_crops(val_files, cfg.crop) if self.dist.main else None

        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad and not n.endswith("quantiles")]
        groups, self._base_lrs = [[p for _, p in trainable]], [cfg.lr]
        if cfg.gain_lr and any(n.startswith("gain_units.") for n, _ in trainable):
            groups = [[p for n, p in trainable if not n.startswith("gain_units.")],
                      [p for n, p in trainable if n.startswith("gain_units.")]]
            self._base_lrs = [cfg.lr, cfg.gain_lr]
        self.optimizer = torch.optim.Adam([{"params": g} for g in groups], lr=cfg.lr)
        self.aux_optimizer = torch.optim.Adam([self.model.entropy_bottleneck.quantiles], lr=cfg.aux_lr)
        self.discriminator = None
        self.disc_optimizer = None
        if cfg.gan_weight > 0:
            self.discriminator = losses.ConditionalPatchDiscriminator(self.model.config.M).to(self.device)
            self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
            if self._init_discriminator is not None:
                self.discriminator.load_state_dict(self._init_discriminator)
        self.lpips = None
        if cfg.lpips_weight > 0:
            from samic.metrics import LPIPS
            self.lpips = LPIPS(net=cfg.lpips_net).to(self.device).eval()

        self.net: nn.Module = self.model
        if self.dist.world > 1:
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.model, ["entropy_bottleneck.quantiles"])
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.discriminator is not None:
                self.discriminator = nn.parallel.DistributedDataParallel(
                    self.discriminator, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step = 0
        self._stop = False
        self._resume_if_possible()

    # ------------------------------------------------------------------ setup helpers
    def _load_init(self, path: str) -> None:
        if path.endswith(".pt"):
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            state = checkpoint["model"]
            # a stage-2 checkpoint's discriminator carries over (a new stage 2 on a refined encoder)
            self._init_discriminator = checkpoint.get("discriminator")
        else:
            from safetensors.torch import load_file
            state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
        if self.model.g_s_perceptual is None:  # stage 1 continued from two-decoder weights
            state = {k: v for k, v in state.items() if not k.startswith("g_s_perceptual.")}
        elif not any(k.startswith("g_s_perceptual.") for k in state):
            state.update({k.replace("g_s.", "g_s_perceptual.", 1): v for k, v in state.items() if k.startswith("g_s.")})
        self.model.load_state_dict(state)

    def _configure_trainable(self) -> None:
        if self.cfg.stage == 2:  # frozen encoder + entropy model: bitstreams stay decodable by both decoders
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith("g_s_perceptual."))
            # their SAMB routers too: in training mode a router moves its cluster centres
            for name, module in self.model.named_modules():
                if name.endswith(".router") and not name.startswith("g_s_perceptual."):
                    module.eval()

    def _checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def _resume_if_possible(self) -> None:
        path = self._checkpoint_path()
        if not path.is_file():
            return
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        if self.discriminator is not None and "discriminator" in ckpt:
            self._disc_module().load_state_dict(ckpt["discriminator"])
            self.disc_optimizer.load_state_dict(ckpt["disc_optimizer"])
        self.step = ckpt["step"]
        _set_rng_state(ckpt["rng"][min(self.dist.rank, len(ckpt["rng"]) - 1)])
        if self.dist.main:
            print(f"resumed from {path} at step {self.step}", flush=True)

    def _disc_module(self) -> nn.Module:
        d = self.discriminator
        return d.module if isinstance(d, nn.parallel.DistributedDataParallel) else d

    def save_checkpoint(self) -> None:
        rng = [_rng_state()]
        if self.dist.world > 1:
            gathered = [None] * self.dist.world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if not self.dist.main:
            return
        ckpt = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "aux_optimizer": self.aux_optimizer.state_dict(), "step": self.step, "rng": rng,
                "config": vars(self.cfg), "preset": self.model.config.name}
        if self.discriminator is not None:
            ckpt["discriminator"] = self._disc_module().state_dict()
            ckpt["disc_optimizer"] = self.disc_optimizer.state_dict()
        tmp = self._checkpoint_path().with_suffix(".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(self._checkpoint_path())

    # ------------------------------------------------------------------ schedules
    def lr_factor(self, step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))
        decays = sum(step >= frac * self.cfg.steps for frac in self.cfg.lr_decay_at)
        return warm * 0.1 ** decays

    def gumbel_tau(self, step: int) -> float:
        t0, t1 = self.cfg.gumbel_tau
        return t0 + (t1 - t0) * min(1.0, step / max(1, self.cfg.steps))

    def apply_schedules(self) -> None:
        """Set the learning rates and the Gumbel temperature for ``self.step``."""
        for group, base_lr in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base_lr * self.lr_factor(self.step)
        self.model.set_gumbel_temperature(self.gumbel_tau(self.step))

    # ------------------------------------------------------------------ one step
    def _batch(self, step: int) -> torch.Tensor:
        b = self.cfg.batch_size
        idx = range(step * b, (step + 1) * b)
        return torch.stack([self.dataset[k] for k in idx])

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        x = x.to(self.device, non_blocking=True)
        lo, hi = cfg.quality_range
        quality = lo + (hi - lo) * torch.rand(x.shape[0], device=self.device)
        decoder = "perceptual" if cfg.stage == 2 else "mse"
        out = self.net(x, quality=quality, decoder=decoder, scan=self.scan)
        lmbda = self.model.gain_units.lmbda(quality)
        bpp = losses.bits_per_pixel(out.likelihoods, x.shape[-2] * x.shape[-1])
        mse = losses.per_sample_mse(out.x_hat, x)
        loss_terms = {"distortion": cfg.mse_weight * losses.lambda_weighted_mse(mse, lmbda)}
        if cfg.stage == 1:
            loss_terms["rate"] = bpp
        lpips_value = None
        if self.lpips is not None:
            lpips_value = self.lpips(out.x_hat.clamp(0, 1), x)
            loss_terms["lpips"] = cfg.lpips_weight * lpips_value.view(-1)
        # The critic trains from the first step; the generator's adversarial term waits for
        # gan_start, so a fresh critic has learned something before its gradients reach g_s.
        critic_active = self.discriminator is not None
        gan_active = critic_active and self.step >= cfg.gan_start
        if critic_active:
            with torch.no_grad():  # the conditioning latent, as in HiFiC (encoder is frozen)
                y_hat = self._y_hat(x, quality)
        if gan_active:
            fake_logits = self.discriminator(out.x_hat, y_hat)
            loss_terms["gan"] = cfg.gan_weight * losses.hinge_generator_loss(fake_logits).expand(x.shape[0])
        loss = sum(t.mean() for t in loss_terms.values())

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                             cfg.clip_grad)
        self.optimizer.step()
        if cfg.stage == 1:  # in stage 2 the entropy model (quantiles included) is frozen
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux = self.model.aux_loss()
            aux.backward()
            self.aux_optimizer.step()
        else:
            with torch.no_grad():
                aux = self.model.aux_loss()

        stats = {"loss": loss.item(), "bpp": bpp.mean().item(), "mse": mse.mean().item(),
                 "psnr": losses.psnr_from_mse(mse).mean().item(), "aux": aux.item(),
                 "grad_norm": float(grad_norm)}
        if lpips_value is not None:
            stats["lpips"] = lpips_value.mean().item()
        if critic_active:
            real_logits = self.discriminator(x, y_hat)
            fake_logits = self.discriminator(out.x_hat.detach(), y_hat)
            d_loss = losses.hinge_discriminator_loss(real_logits, fake_logits)
            stats["d_real"] = torch.relu(1 - real_logits).mean().item()  # the two hinge terms of d_loss
            stats["d_fake"] = torch.relu(1 + fake_logits).mean().item()
            self.disc_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_optimizer.step()
            stats["d_loss"] = d_loss.item()
            # NaN until gan_start, so the log's columns are fixed from its first row
            stats["g_loss"] = loss_terms["gan"].mean().item() / cfg.gan_weight if gan_active else math.nan
        return stats

    @torch.no_grad()
    def _y_hat(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """The decoder's input latent (rounded, with ChARM's means and LRP) for conditioning."""
        model = self.model
        was_training = model.training
        model.eval()
        y, z, _ = model.analysis(pad_to_multiple(x), quality)
        y_hat = model.latent_codec.forward(y, z).y_hat
        model.train(was_training)
        self._configure_trainable()  # (train() also woke the frozen routers)
        return y_hat

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, qualities=VALIDATION_QUALITIES) -> list[dict]:
        self.model.eval()
        rows = []
        x = self.val_images.to(self.device)
        decoders = ("mse", "perceptual") if self.cfg.stage == 2 else ("mse",)
        for decoder in decoders:
            for q in qualities:
                bpps, psnrs, lp, critic = [], [], [], []
                judge = self.discriminator is not None and decoder == "perceptual"
                for i in range(0, x.shape[0], 4):
                    xb = x[i:i + 4]
                    out = self.model(xb, quality=q, decoder=decoder, scan=self.scan)
                    x_hat = out.x_hat.clamp(0, 1)
                    x_hat = torch.round(x_hat * 255) / 255
                    bpps.append(losses.bits_per_pixel(out.likelihoods, xb.shape[-2] * xb.shape[-1]))
                    psnrs.append(losses.psnr_from_mse(losses.per_sample_mse(x_hat, xb)))
                    if self.lpips is not None:
                        lp.append(self.lpips(x_hat, xb).view(-1))
                    if judge:
                        critic.append(self._critic_scores(xb, out.x_hat, q))
                row = {"step": self.step, "decoder": decoder, "quality": q,
                       "bpp": torch.cat(bpps).mean().item(), "psnr": torch.cat(psnrs).mean().item(),
                       "lpips": torch.cat(lp).mean().item() if lp else float("nan")}
                if self.discriminator is not None:  # held-out crops: does the critic beat chance?
                    names = ("critic_real_acc", "critic_fake_acc", "critic_acc", "d_real", "d_fake")
                    row.update({n: float(np.mean([c[n] for c in critic])) if critic else math.nan for n in names})
                rows.append(row)
        self.model.train()
        self._configure_trainable()
        return rows

    @torch.no_grad()
    def _critic_scores(self, x: torch.Tensor, x_hat: torch.Tensor, quality: float) -> dict[str, float]:
        """The critic on real crops and their decoded versions (patch logits): the share it
        calls right on each side (> 0 real, < 0 decoded), their mean, and both hinge terms."""
        critic = self._disc_module()
        was_training = critic.training
        critic.eval()
        y_hat = self._y_hat(x, torch.full((x.shape[0],), float(quality), device=x.device))
        real, fake = critic(x, y_hat), critic(x_hat, y_hat)
        critic.train(was_training)
        real_acc, fake_acc = (real > 0).float().mean().item(), (fake < 0).float().mean().item()
        return {"critic_real_acc": real_acc, "critic_fake_acc": fake_acc, "critic_acc": (real_acc + fake_acc) / 2,
                "d_real": torch.relu(1 - real).mean().item(), "d_fake": torch.relu(1 + fake).mean().item()}

    # ------------------------------------------------------------------ loop
    def _append_csv(self, name: str, rows: list[dict]) -> None:
        path = self.out_dir / name
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def run(self, max_new_steps: int | None = None) -> None:
        """Train until ``steps``, the time limit, SIGTERM/Ctrl-C, or ``max_new_steps`` more steps."""
        def request_stop(signum, frame):
            if self._stop and signum == signal.SIGINT:  # a second Ctrl-C: stop now, no checkpoint
                raise KeyboardInterrupt
            self._stop = True
            print("stop requested: saving a checkpoint after this step (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

        if not self.dist.main or threading.current_thread() is not threading.main_thread():
            return self._run(max_new_steps)
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._run(max_new_steps)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self, max_new_steps: int | None) -> None:
        cfg = self.cfg
        first_step = self.step
        start = time.time()
        deadline = start + cfg.time_limit_minutes * 60 if cfg.time_limit_minutes > 0 else math.inf
        bar = None
        if cfg.progress and self.dist.main:
            from tqdm import tqdm
            bar = tqdm(total=cfg.steps, initial=self.step, dynamic_ncols=True, mininterval=5)
        loader = self._loader()
        window: list[dict] = []
        last_save = self.step
        while self.step < cfg.steps:
            x = next(loader)
            self.apply_schedules()
            stats = self.train_step(x)
            self.step += 1
            window.append(stats)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(bpp=f"{stats['bpp']:.3f}", psnr=f"{stats['psnr']:.2f}", refresh=False)
            if self.dist.main and self.step % cfg.log_every == 0:
                mean = {k: _finite_mean([w[k] for w in window if k in w]) for k in window[-1]}
                self._append_csv("train_log.csv", [{"step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                                                    "elapsed_s": round(time.time() - start, 1), **mean}])
                window = []
            if self.dist.main and self.step % cfg.val_every == 0:
                self._append_csv("val_log.csv", self.validate())
            stop = self._stop or time.time() > deadline or (
                max_new_steps is not None and self.step - first_step >= max_new_steps)
            if self.dist.world > 1:  # every rank must agree to stop (collectives below)
                flag = torch.tensor([float(stop)], device=self.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item())
            if self.step % cfg.checkpoint_every == 0 or stop or self.step == cfg.steps:
                self.save_checkpoint()
                last_save = self.step
            if stop:
                break
        if last_save != self.step:
            self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self.dist.main:
            print(f"stopped at step {self.step} after {time.time() - start:.0f} s; checkpoint {self._checkpoint_path()}",
                  flush=True)

    def _loader(self):
        """Batches for steps self.step, self.step + 1, ... (workers keep the order)."""
        cfg = self.cfg
        if cfg.workers <= 0:
            def gen():
                step = self.step
                while True:
                    yield self._batch(step)
                    step += 1
            return gen()
        sampler = range(self.step * cfg.batch_size, cfg.steps * cfg.batch_size)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler,
                                             num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
                                             persistent_workers=True, prefetch_factor=4,
                                             worker_init_fn=_ignore_stop_signals)
        return iter(loader)

    def close(self) -> None:
        if self.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def train(cfg: TrainConfig) -> Trainer:
    trainer = Trainer(cfg)
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer


