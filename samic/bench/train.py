"""Side-by-side training benchmark: which recipe learns fastest per minute (``samic bench train``).

Protocol. Every variant is the baseline recipe plus a few changes (``Variant``): TrainConfig
fields (lr, batch_size, crop, quality_range, scan_order, ...), ModelConfig fields (an
architecture change), and bench knobs (channels_last, torch.compile). All variants start from
the same weights (or the same seeded random init), draw from the same training pool with the
same seed, and train for the same budget: wall minutes of training (validation excluded) or a
number of steps. They run one after the other in this process, so they are timed on the same
machine under the same load.

At fixed points of the budget (and at 0) each variant is validated on one fixed set of
held-out *training-pool* crops (the trainer's split_train_val / validation_crops, at half
and quarter size by default: see VAL_SCALES; never Kodak), at a fixed sweep of qualities, always with the same SAMB scan settings it trains with:

- the RD cost: bpp + lambda(q) * 255^2 * MSE per crop (8-bit rounded reconstruction; lambda
  from the base preset's lambda_range for every variant), averaged over crops and qualities;
- PSNR at 0.15 and 0.3 bpp, linear in log(bpp) between the sweep's points (NaN outside).

The learning-efficiency ratio of a variant is the budget it needs to reach the baseline's
final cost (linear between validation points) over the baseline's budget: 0.5 means twice
as fast. The winner is the variant with the lowest final cost.

A variant that raises (torch.compile's inductor fails on this model with torch 2.13) is
reported as failed and the others run. ``channels_last = true`` (a variants-file knob) crashes
the process on CPU with torch 2.13: heap corruption in the backward, with or without SAMB and
SVD-RRM; try it on a GPU.

The schedule: lr warm-up as in the recipe, then a constant lr. The recipe's ``steps`` only
places its lr decay, which a bench window should not hit, so the bench sets ``steps`` to
10^7 unless a variant sets it.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import gc
import math
import os
import signal
import sys
import tempfile
import threading
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from samic.layers.samb import ScanSettings
from samic.models import ModelConfig, get_config
from samic.models.samic import GainUnits
from samic.quality import VALIDATION_QUALITIES
from samic.train import losses
from samic.train.trainer import TrainConfig, Trainer

# Stage 1's loss and optimizer settings of configs/lite-dense.toml, the shipped recipe
# (tests/test_bench_train.py checks that they still match the file).
BASELINE_RECIPE = dict(
    preset="samic-lite", crop=256, scale_range=(0.25, 0.6), n_val_images=8, batch_size=8, lr=5e-5,
    gain_lr=1e-3, warmup_steps=50, lr_decay_at=(0.85,), clip_grad=1.0, gumbel_tau=(0.5, 0.5),
    mse_weight=1.0, lpips_weight=0.0, stage=1,
)
BENCH_SCHEDULE_STEPS = 10 ** 7
# Validation crops at half and quarter size, inside the recipe's training scale range [0.25, 0.6]:
# at the trainer's own scales (1, 0.5) the smooth full-size photos keep the shipped weights
# under 0.22 bpp at q = 1, and PSNR at 0.3 bpp falls outside the sweep.
VAL_SCALES = (0.5, 0.25)
PSNR_AT_BPP = (0.15, 0.3)
# Fields a variant may not change: they are the protocol (same data, start, seed, split).
PROTOCOL_FIELDS = frozenset({"init", "train_dir", "n_val_images", "seed", "device", "out_dir", "stage",
                             "progress", "time_limit_minutes", "val_every", "checkpoint_every", "log_every"})
BENCH_KNOBS = ("channels_last", "compile", "description")


@dataclass(frozen=True)
class Variant:
    """A recipe: ``train`` overrides TrainConfig fields, ``model`` ModelConfig fields (an
    architecture change: start with --random-init); channels_last / compile are bench knobs."""

    name: str
    train: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    channels_last: bool = False
    compile: bool = False
    description: str = ""


BUILTIN_VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", description="the shipped recipe (configs/lite-dense.toml, stage 1)"),
    Variant("lr2x", {"lr": 1e-4}, description="peak lr x2 (gain-unit lr unchanged)"),
    Variant("crop128", {"crop": 128, "batch_size": 32},
            description="128^2 crops at 4x the batch (same pixels per step, same scale range): the first "
                        "phase of a 128^2-then-256^2 curriculum, validated on the same 256^2 crops"),
    Variant("highrate", {"quality_range": (0.5, 1.0)},
            description="high-rate half of the quality range first (validated over the full sweep)"),
    Variant("stateless", {"scan_recurrence": False}, description="SAMB without its recurrence (y = D * u)"),
    Variant("raster", {"scan_order": "raster"}, description="SAMB scans in raster order, ignoring clusters"),
    Variant("random-order", {"scan_order": "random"}, description="SAMB scans in a fixed random order"),
    Variant("compile", compile=True, description="torch.compile of the training forward (its compile time is "
                                                  "untimed warm-up)"),
    Variant("workers1", {"workers": 1}, description="one data-loader worker process"),
)}


class BenchError(ValueError):
    """A bad variant, variants file or budget (the CLI prints it as one line)."""


@dataclass(frozen=True)
class Budget:
    """``kind`` 'minutes' (training wall time, validation excluded) or 'steps'; validation
    every ``every`` units of the same kind."""

    kind: str
    total: float
    every: float

    def __post_init__(self):
        if self.kind not in ("minutes", "steps"):
            raise BenchError(f"budget kind must be minutes or steps, not {self.kind!r}")
        if not (self.total > 0 and self.every > 0):
            raise BenchError("the budget and the validation interval must be positive")

    def spent(self, train_s: float, step: int) -> float:
        return train_s / 60 if self.kind == "minutes" else float(step)


# ---------------------------------------------------------------------------------- variants
def _coerce(cls, overrides: dict, where: str) -> dict:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise BenchError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}")
    defaults = cls.__dataclass_fields__
    out = {}
    for key, value in overrides.items():
        default = defaults[key].default
        out[key] = tuple(value) if isinstance(default, tuple) or isinstance(value, list) else value
    return out


def make_variant(name: str, table: dict) -> Variant:
    """A variant from a TOML table: TrainConfig keys, bench knobs, and a ``model`` sub-table."""
    table = dict(table)
    model = table.pop("model", {})
    knobs = {k: table.pop(k) for k in BENCH_KNOBS if k in table}
    if not isinstance(model, dict):
        raise BenchError(f"variant {name}: 'model' must be a table of ModelConfig fields")
    train = _coerce(TrainConfig, table, f"variant {name}")
    fixed = sorted(PROTOCOL_FIELDS & set(train))
    if fixed:
        raise BenchError(f"variant {name}: {', '.join(fixed)} belong to the protocol, the same for every variant")
    model = _coerce(ModelConfig, model, f"variant {name} [model]")
    if "name" in model:
        raise BenchError(f"variant {name}: change the preset with 'preset', not model.name")
    return Variant(name, train, model, **knobs)


def load_variants_file(path: str | Path) -> dict[str, Variant]:
    """``[NAME]`` tables of TrainConfig overrides, ``[NAME.model]`` for ModelConfig fields, and
    the bench knobs ``channels_last`` / ``compile`` / ``description``."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"variants file {path}: {exc}") from None
    bad = [k for k, v in raw.items() if not isinstance(v, dict)]
    if bad:
        raise BenchError(f"variants file {path}: top-level keys must be [variant] tables, not {', '.join(bad)}")
    return {name: make_variant(name, table) for name, table in raw.items()}


def resolve_variants(names: list[str], extra: dict[str, Variant] | None = None) -> list[Variant]:
    """Variants by name, from the built-ins and ``extra`` (which wins on a clash)."""
    pool = {**BUILTIN_VARIANTS, **(extra or {})}
    missing = [n for n in names if n not in pool]
    if missing:
        raise BenchError(f"unknown variant(s) {', '.join(missing)}; known: {', '.join(pool)}")
    if len(set(names)) != len(names):
        raise BenchError("a variant is named twice")
    return [pool[n] for n in names]


def variant_config(variant: Variant, base: TrainConfig) -> tuple[TrainConfig, ModelConfig]:
    cfg = dataclasses.replace(base, **{"steps": BENCH_SCHEDULE_STEPS, **variant.train})
    try:
        model_config = get_config(cfg.preset)
        if variant.model:
            model_config = model_config.replace(**variant.model)
        ScanSettings(order=cfg.scan_order).validated()
    except (ValueError, TypeError) as exc:
        raise BenchError(f"variant {variant.name}: {exc}") from None
    return cfg, model_config


# ---------------------------------------------------------------------------------- measures
def psnr_at_bpp(bpps, psnrs, target: float) -> float:
    """PSNR at ``target`` bpp, linear in log(bpp) over the sweep; NaN outside its range."""
    bpps, psnrs = np.asarray(bpps, float), np.asarray(psnrs, float)
    keep = bpps > 0
    if keep.sum() < 2:
        return math.nan
    order = np.argsort(bpps[keep])
    x, y = np.log(bpps[keep][order]), psnrs[keep][order]
    t = math.log(target)
    if t < x[0] or t > x[-1]:
        return math.nan
    return float(np.interp(t, x, y))


def time_to_reach(times, costs, target: float) -> float | None:
    """First time a curve reaches ``target`` (cost <= target), linear between points; None if never."""
    if not len(times):
        return None
    if costs[0] <= target:
        return float(times[0])
    for (t0, c0), (t1, c1) in zip(zip(times, costs), zip(times[1:], costs[1:])):
        if c1 <= target:
            return float(t0 + (t1 - t0) * (c0 - target) / (c0 - c1))
    return None


def efficiency_ratio(curve: dict, baseline: dict) -> float | None:
    """Budget ``curve`` needs to reach ``baseline``'s final cost over the baseline's budget
    (curves: {'x': budget spent, 'cost': validation cost}); None if it never gets there."""
    reached = time_to_reach(curve["x"], curve["cost"], baseline["cost"][-1])
    return None if reached is None else reached / baseline["x"][-1]


@torch.no_grad()
def validation_point(model, images: torch.Tensor, qualities, scan: ScanSettings, lmbda, batch: int = 4) -> dict:
    """RD cost and PSNR-at-bpp of ``model`` on ``images`` (see the module docstring)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    costs, bpps, psnrs = [], [], []
    for q in qualities:
        lam = float(lmbda(torch.tensor([q]))[0])
        q_bpp, q_psnr = [], []
        for i in range(0, images.shape[0], batch):
            x = images[i:i + batch].to(device)
            out = model(x, quality=q, scan=scan)
            x_hat = torch.round(out.x_hat.clamp(0, 1) * 255) / 255
            bpp = losses.bits_per_pixel(out.likelihoods, x.shape[-2] * x.shape[-1])
            mse = losses.per_sample_mse(x_hat, x)
            costs.append((bpp + lam * 255 ** 2 * mse).cpu())
            q_bpp.append(bpp.cpu())
            q_psnr.append(losses.psnr_from_mse(mse).cpu())
        bpps.append(torch.cat(q_bpp).mean().item())
        psnrs.append(torch.cat(q_psnr).mean().item())
    model.train(was_training)
    point = {"cost": torch.cat(costs).mean().item(), "bpp": bpps, "psnr": psnrs}
    for target in PSNR_AT_BPP:
        point[f"psnr@{target:g}"] = psnr_at_bpp(bpps, psnrs, target)
    return point


# ---------------------------------------------------------------------------------- pausing
def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


@contextmanager
def paused(pid: int | None):
    """SIGSTOP process ``pid`` and its descendants (e.g. data-loader workers) for the duration,
    SIGCONT them at exit: normal, error, Ctrl-C, or SIGTERM/SIGHUP (turned into SystemExit)."""
    if not pid:
        yield []
        return
    if pid in (os.getpid(), os.getppid()) or pid <= 1:
        raise BenchError(f"--pause-pid {pid}: not a process this bench may pause")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise BenchError(f"--pause-pid {pid}: no such process") from None
    except PermissionError:
        raise BenchError(f"--pause-pid {pid}: not allowed to signal it") from None
    pids = [pid] + [p for p in _descendants(pid) if p != os.getpid()]
    previous = {}

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for p in pids:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        yield pids
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- the bench
def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _warm_up(trainer: Trainer, channels_last: bool, sync) -> float:
    """One untimed forward and backward through the training module (first-call costs: numba
    kernels, allocator, torch.compile), then the weights and buffers (the router's running
    centres move in a training forward) are put back: every variant starts from the same state."""
    t = time.perf_counter()
    state = copy.deepcopy(trainer.model.state_dict())
    x = trainer._batch(0).to(trainer.device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    trainer.apply_schedules()
    out = trainer.net(x, quality=torch.rand(x.shape[0], device=trainer.device), scan=trainer.scan)
    (out.x_hat.square().mean() - sum(v.log().mean() for v in out.likelihoods.values())).backward()
    trainer.model.zero_grad(set_to_none=True)
    trainer.model.load_state_dict(state)
    sync()
    return time.perf_counter() - t


def run_variant(variant: Variant, base: TrainConfig, budget: Budget, val_images: torch.Tensor,
                qualities, lmbda, quiet: bool = False, save_dir: Path | None = None) -> dict:
    """Train one variant for ``budget`` and return its curve and throughput; with ``save_dir``,
    its final weights go to save_dir/NAME.safetensors (float16, with a sidecar)."""
    cfg, model_config = variant_config(variant, base)
    with tempfile.TemporaryDirectory(prefix="samic-bench-train-") as out_dir:
        cfg = dataclasses.replace(cfg, out_dir=out_dir, progress=False)
        try:
            trainer = Trainer(cfg, model_config)
        except RuntimeError as exc:  # weights that do not fit the variant's architecture
            raise BenchError(f"variant {variant.name}: cannot load {cfg.init}: {str(exc).splitlines()[0]} "
                             "(architecture changes start with --random-init)") from None
        trainer.val_images = None  # the bench validates every variant on its own fixed set
        model = trainer.model
        if variant.channels_last:
            model.to(memory_format=torch.channels_last)
        if variant.compile:
            trainer.net = torch.compile(model)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        warmup_s = _warm_up(trainer, variant.channels_last, sync)
        torch.manual_seed(cfg.seed)  # the same quality draws for every variant
        loader = trainer._loader()

        points, train_s, crops, next_eval = [], 0.0, 0, budget.every

        def record():
            t = time.perf_counter()
            point = validation_point(model, val_images, qualities, trainer.scan, lmbda)
            point.update(step=trainer.step, minutes=train_s / 60, crops=crops,
                         crops_per_s=crops / train_s if train_s else math.nan,
                         val_s=time.perf_counter() - t)
            points.append(point)
            _log(f"  [{variant.name}] {point['minutes']:6.2f} min  step {trainer.step:6d}  cost {point['cost']:.4f}  "
                 f"PSNR@0.15 {point['psnr@0.15']:.2f}  PSNR@0.3 {point['psnr@0.3']:.2f}  "
                 f"{point['crops_per_s']:.2f} crops/s", quiet)

        record()
        try:
            while True:
                sync()
                t = time.perf_counter()
                x = next(loader, None)
                if x is None:  # a DataLoader's sampler ends at the schedule's steps
                    break
                if variant.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                trainer.apply_schedules()
                stats = trainer.train_step(x)
                sync()
                train_s += time.perf_counter() - t
                trainer.step += 1
                crops += x.shape[0]
                if not math.isfinite(stats["loss"]):
                    raise BenchError(f"variant {variant.name}: the loss is {stats['loss']} at step {trainer.step}")
                spent = budget.spent(train_s, trainer.step)
                done = spent >= budget.total
                if done or spent >= next_eval:
                    record()
                    while next_eval <= spent:
                        next_eval += budget.every
                if done:
                    break
        finally:
            del loader
            trainer.close()
        if save_dir is not None:
            from samic.weights import save_weights

            save_weights(model, Path(save_dir) / f"{variant.name}.safetensors",
                         {"bench_variant": variant.name, "steps": trainer.step, "init": cfg.init or "random"})
    result = {"variant": variant.name, "description": variant.description, "train": _jsonable(variant.train),
              "model": _jsonable(variant.model), "channels_last": variant.channels_last, "compile": variant.compile,
              "batch_size": cfg.batch_size, "crop": cfg.crop, "threads": torch.get_num_threads(),
              "steps": trainer.step, "train_s": train_s, "warmup_s": warmup_s, "crops_per_s": crops / train_s if train_s else math.nan,
              "points": points}
    del trainer, model
    gc.collect()
    return result


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def bench_train(variants: list[Variant], base: TrainConfig, budget: Budget, qualities=VALIDATION_QUALITIES,
                val_crop: int | None = None, val_scales=VAL_SCALES, quiet: bool = False,
                save_dir: Path | None = None) -> dict:
    """Run ``variants`` one after the other under ``budget``; return the report (see summarize)."""
    from samic.codec.image_io import load_image
    from samic.train.data import list_images, split_train_val, validation_crops

    if not variants:
        raise BenchError("no variants to run")
    for v in variants:
        variant_config(v, base)  # fail on a bad variant before hours of training
    _, val_files = split_train_val(list_images(base.train_dir), base.n_val_images)
    val_crop = val_crop or base.crop
    def short_side(path):
        return min(load_image(path).shape[:2])  # the codec's one image opener (EXIF orientation included)

    if not any(short_side(f) * s >= val_crop for f in val_files for s in val_scales):
        raise BenchError(f"no validation view of {val_crop}^2 at scales {val_scales}: the images are too small")
    val_images = validation_crops(val_files, val_crop, val_scales)
    lmbda = GainUnits(1, 2, get_config(base.preset).lambda_range).lmbda
    threads = torch.get_num_threads()
    results, failed = [], []
    for v in variants:
        torch.set_num_threads(threads)  # a variant's `threads` must not leak into the next
        _log(f"{v.name}: {v.description or v.train or v.model}", quiet)
        try:
            results.append(run_variant(v, base, budget, val_images, qualities, lmbda, quiet, save_dir))
        except BenchError:
            raise
        except Exception as exc:  # e.g. torch.compile failing on this model: the other variants still run
            message = str(exc).strip().splitlines()
            failed.append({"variant": v.name, "error": f"{type(exc).__name__}: {message[0] if message else ''}"})
            _log(f"  [{v.name}] failed: {failed[-1]['error']}", quiet)
    torch.set_num_threads(threads)
    if not results:
        raise BenchError("every variant failed: " + "; ".join(f"{f['variant']}: {f['error']}" for f in failed))
    report = {
        "budget": dataclasses.asdict(budget), "init": base.init or "random (seed %d)" % base.seed,
        "preset": base.preset, "train_dir": str(base.train_dir), "seed": base.seed,
        "device": str(base.device), "torch_threads": threads, "cpu_count": os.cpu_count(),
        "validation": {"images": len(val_files), "crops": int(val_images.shape[0]), "crop": val_crop,
                       "scales": list(val_scales),
                       "qualities": list(qualities), "lambda_range": list(get_config(base.preset).lambda_range)},
        "variants": results, "failed": failed,
    }
    report["summary"] = summarize(report)
    return report


def _curve(result: dict, kind: str) -> dict:
    key = "minutes" if kind == "minutes" else "step"
    return {"x": [p[key] for p in result["points"]], "cost": [p["cost"] for p in result["points"]]}


def summarize(report: dict) -> dict:
    """Per variant: final cost, its change against the baseline, the efficiency ratio; and the
    winner. The baseline is the variant named 'baseline', else the first one."""
    results, kind = report["variants"], report["budget"]["kind"]
    base = next((r for r in results if r["variant"] == "baseline"), results[0])
    base_curve = _curve(base, kind)
    rows = []
    for r in results:
        final = r["points"][-1]
        rows.append({"variant": r["variant"], "steps": r["steps"], "minutes": r["train_s"] / 60,
                     "crops_per_s": r["crops_per_s"], "final_cost": final["cost"],
                     "cost_change": final["cost"] / base_curve["cost"][-1] - 1,
                     "psnr@0.15": final["psnr@0.15"], "psnr@0.3": final["psnr@0.3"],
                     "ratio": 1.0 if r is base else efficiency_ratio(_curve(r, kind), base_curve)})
    winner = min(rows, key=lambda row: row["final_cost"])
    unit = "min" if kind == "minutes" else "steps"
    if winner["variant"] == base["variant"]:
        verdict = f"{base['variant']} wins: no variant reaches a lower final validation cost"
    else:
        reached = winner["ratio"] * base_curve["x"][-1]
        verdict = (f"{winner['variant']} wins: it reaches {base['variant']}'s final cost "
                   f"{base_curve['cost'][-1]:.4f} in {reached:.3g} {unit} against {base_curve['x'][-1]:.3g}, "
                   f"{winner['ratio']:.2f}x the {'time' if kind == 'minutes' else 'steps'} "
                   f"(final cost {winner['cost_change']:+.1%})")
    return {"baseline": base["variant"], "winner": winner["variant"], "ratio": winner["ratio"],
            "verdict": verdict, "rows": rows}


# ---------------------------------------------------------------------------------- output
CSV_FIELDS = ("variant", "minutes", "step", "val_cost", "psnr_at_0.15", "psnr_at_0.3", "crops_per_s")


def csv_rows(report: dict) -> list[dict]:
    return [{"variant": r["variant"], "minutes": round(p["minutes"], 4), "step": p["step"],
             "val_cost": round(p["cost"], 6), "psnr_at_0.15": round(p["psnr@0.15"], 4),
             "psnr_at_0.3": round(p["psnr@0.3"], 4), "crops_per_s": round(p["crops_per_s"], 4)}
            for r in report["variants"] for p in r["points"]]


def write_csv(report: dict, path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(report))


def _num(value, fmt: str, width: int) -> str:
    ok = value is not None and not (isinstance(value, float) and math.isnan(value))
    return f"{value:{width}{fmt}}" if ok else f"{'-':>{width}s}"


def format_table(report: dict) -> str:
    b, v, s = report["budget"], report["validation"], report["summary"]
    unit = "min of training (validation excluded)" if b["kind"] == "minutes" else "steps"
    lines = [f"samic bench train: {len(report['variants'])} variants x {b['total']:g} {unit}, validation every "
             f"{b['every']:g}; {report['preset']} from {report['init']}; seed {report['seed']}; "
             f"{report['torch_threads']} torch threads on {report['cpu_count']} CPUs",
             f"validation: {v['crops']} crops {v['crop']}^2 of {v['images']} held-out training-pool images "
             f"at scales {', '.join(f'{x:g}' for x in v['scales'])}, "
             f"q in {{{', '.join(f'{q:g}' for q in v['qualities'])}}}; cost = bpp + lambda(q)*255^2*MSE", "",
             f"{'variant':16s} {'minutes':>8s} {'step':>7s} {'val cost':>9s} {'PSNR@0.15':>9s} {'PSNR@0.3':>9s} "
             f"{'crops/s':>8s}"]
    for r in csv_rows(report):
        lines.append(f"{r['variant']:16s} {r['minutes']:8.2f} {r['step']:7d} {r['val_cost']:9.4f} "
                     f"{_num(r['psnr_at_0.15'], '.2f', 9)} {_num(r['psnr_at_0.3'], '.2f', 9)} "
                     f"{_num(r['crops_per_s'], '.2f', 8)}")
    lines += ["", f"{'variant':16s} {'steps':>7s} {'crops/s':>8s} {'final cost':>10s} {'vs base':>8s} "
              f"{'PSNR@0.3':>9s}  budget to reach {s['baseline']}'s final cost / {s['baseline']}'s"]
    for r in s["rows"]:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "not reached"
        lines.append(f"{r['variant']:16s} {r['steps']:7d} {_num(r['crops_per_s'], '.2f', 8)} {r['final_cost']:10.4f} "
                     f"{r['cost_change']:+8.1%} {_num(r['psnr@0.3'], '.2f', 9)}  {ratio}")
    lines += [f"{f['variant']:16s} failed: {f['error']}" for f in report.get("failed", [])]
    lines += ["", s["verdict"]]
    return "\n".join(lines)


def plot(report: dict, path: str | Path) -> None:
    """Validation cost (left) and PSNR at 0.3 bpp (right) against the budget; the verdict as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = report["budget"]["kind"]
    key, label = ("minutes", "training minutes") if kind == "minutes" else ("step", "steps")
    fig, (ax_cost, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in report["variants"]:
        xs = [p[key] for p in r["points"]]
        ax_cost.plot(xs, [p["cost"] for p in r["points"]], marker="o", ms=3,
                     label=f"{r['variant']} ({r['crops_per_s']:.1f} crops/s)")
        ax_psnr.plot(xs, [p["psnr@0.3"] for p in r["points"]], marker="o", ms=3, label=r["variant"])
    ax_cost.set(xlabel=label, ylabel="validation RD cost (bpp + lambda 255^2 MSE)")
    ax_psnr.set(xlabel=label, ylabel="PSNR at 0.3 bpp (dB)")
    for ax in (ax_cost, ax_psnr):
        ax.grid(alpha=0.3)
    ax_cost.legend(fontsize=8)
    fig.suptitle(report["summary"]["verdict"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
