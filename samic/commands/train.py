"""samic train: run (or resume) a training run from a TOML config."""
from __future__ import annotations

from samic.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model from a config (resumes from out_dir)")
    p.add_argument("--config", required=True, help="TOML file under configs/")
    p.add_argument("--out-dir", default=None, help="override the config's out_dir")
    p.add_argument("--train-dir", default=None, help="override the config's train_dir")
    p.add_argument("--steps", type=int, default=None, help="override the total number of steps")
    p.add_argument("--init", default=None, help="weights (.safetensors) or checkpoint (.pt) to start from")
    p.add_argument("--device", default=None, help="cpu, cuda or auto")
    p.add_argument("--time-limit", type=float, default=None, dest="time_limit_minutes",
                   help="stop with a checkpoint after this many minutes")
    p.add_argument("--no-progress", action="store_false", dest="progress", default=None)
    p.set_defaults(func=run)

    e = subparsers.add_parser("export", help="export a training checkpoint to shippable safetensors weights")
    e.add_argument("checkpoint", help="runs/NAME/checkpoint.pt")
    e.add_argument("out", help="samic/assets/weights/NAME.safetensors (package data) or any path")
    e.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    e.set_defaults(func=run_export)


def run(args) -> int:
    from pathlib import Path

    from samic.train.trainer import TrainConfig, train

    if not Path(args.config).is_file():
        raise UserError(f"config not found: {args.config}")
    try:
        cfg = TrainConfig.from_toml(args.config, out_dir=args.out_dir, train_dir=args.train_dir, steps=args.steps,
                                    init=args.init,
                                    device=args.device, time_limit_minutes=args.time_limit_minutes,
                                    progress=args.progress)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None
    if not Path(cfg.train_dir).is_dir():
        raise UserError(f"training folder not found: {cfg.train_dir}")
    train(cfg)
    return 0


def run_export(args) -> int:
    from pathlib import Path

    from samic.train.export import export_checkpoint

    if not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    sidecar = export_checkpoint(args.checkpoint, args.out, dtype=args.dtype)
    print(f"wrote {args.out} ({sidecar['bytes'] / 1e6:.1f} MB, sha256 {sidecar['sha256'][:16]}...)")
    return 0
