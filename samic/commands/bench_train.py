"""samic bench train: training recipes side by side (the engine is samic.bench.train).

    samic bench train --minutes 8 --variants baseline,lr2x,crop128,highrate --pause-pid PID
    samic bench train --random-init --crop 128 --steps 300 --variants baseline,raster,stateless

Writes OUT/report.json, OUT/curves.csv, OUT/table.txt and the plot (OUT/curves.png unless
--plot), and prints the table (or the report with --json).
"""
from __future__ import annotations

DEFAULT_VARIANTS = "baseline,lr2x,crop128,highrate"


def add_arguments(p) -> None:
    """Options of `samic bench train` (the bench parser's --json, --device, --threads apply too)."""
    from samic.quality import VALIDATION_QUALITIES

    g = p.add_argument_group("train", "options of `samic bench train`")
    g.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma-separated variants (default {DEFAULT_VARIANTS}); built-in: baseline, lr2x, crop128, "
                        "highrate, stateless, raster, random-order, compile, workers1")
    g.add_argument("--variants-file", default=None, metavar="TOML",
                   help="more variants: [NAME] tables of TrainConfig keys, [NAME.model] for ModelConfig fields, "
                        "channels_last/compile knobs")
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training minutes per variant (default 8)")
    budget.add_argument("--steps", type=int, default=None, help="training steps per variant, instead of --minutes")
    g.add_argument("--eval-every", type=float, default=None,
                   help="validate every this many minutes (or steps); default a quarter of the budget")
    start = g.add_mutually_exclusive_group()
    start.add_argument("--init", default=None, metavar="WEIGHTS",
                       help=".safetensors weights or .pt checkpoint to start from (default the preset's shipped weights)")
    start.add_argument("--random-init", action="store_true", help="start from the same seeded random init")
    g.add_argument("--preset", default=None, help="model preset (default the recipe's samic-lite)")
    g.add_argument("--crop", type=int, default=None, help="training and validation crop of the baseline (default 256)")
    g.add_argument("--train-dir", default="../shared/data/train", help="training pool (default ../shared/data/train)")
    g.add_argument("--val-images", type=int, default=None, help="held-out images (default 8: the recipe's)")
    g.add_argument("--val-crop", type=int, default=None, help="validation crop (default --crop)")
    g.add_argument("--val-scales", default=None, help="comma-separated scales of the validation views "
                   "(default 0.5,0.25: inside the recipe's training scale range)")
    g.add_argument("--val-qualities", default=None, help="comma-separated qualities of the validation sweep "
                   "(default " + ",".join(f"{q:g}" for q in VALIDATION_QUALITIES) + ")")
    g.add_argument("--seed", type=int, default=0, help="seed of the data order, quality draws and random init")
    g.add_argument("--out", default="runs/bench-train", help="output folder (default runs/bench-train)")
    g.add_argument("--plot", default=None, help="plot file, .png or .svg (default OUT/curves.png)")
    g.add_argument("--save-weights", action="store_true",
                   help="also write each variant's final weights to OUT/NAME.safetensors (float16), e.g. for "
                        "`samic bench scan-ablation --weights`")
    g.add_argument("--pause-pid", type=int, default=None, metavar="PID",
                   help="SIGSTOP this process (and its children) while the bench runs, SIGCONT at exit")
    g.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _float_list(text: str, what: str) -> tuple[float, ...]:
    from samic.errors import UserError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    return values


def run(args) -> int:
    import json
    from pathlib import Path

    import torch

    from samic.bench import train as bench
    from samic.errors import UserError
    from samic.quality import VALIDATION_QUALITIES
    from samic.train.trainer import TrainConfig
    from samic.weights import default_weights_path

    if args.minutes is not None and args.minutes <= 0 or args.steps is not None and args.steps <= 0:
        raise UserError("--minutes and --steps must be positive")
    budget_kind, total = ("steps", float(args.steps)) if args.steps else ("minutes", args.minutes or 8.0)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    if not Path(args.train_dir).is_dir():
        raise UserError(f"training folder not found: {args.train_dir}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads must be positive")
        torch.set_num_threads(args.threads)
    qualities = _float_list(args.val_qualities, "--val-qualities") if args.val_qualities else VALIDATION_QUALITIES
    if not all(0 <= q <= 1 for q in qualities):
        raise UserError("--val-qualities must lie in [0, 1]")
    scales = _float_list(args.val_scales, "--val-scales") if args.val_scales else bench.VAL_SCALES
    if not all(0 < x <= 1 for x in scales):
        raise UserError("--val-scales must lie in (0, 1]")
    for name in ("crop", "val_crop", "val_images"):
        value = getattr(args, name)
        if value is not None and value < (16 if "crop" in name else 1):
            raise UserError(f"--{name.replace('_', '-')} too small: {value}")

    base = dict(bench.BASELINE_RECIPE, train_dir=args.train_dir, seed=args.seed, device=args.device, workers=0)
    for key, value in (("preset", args.preset), ("crop", args.crop), ("n_val_images", args.val_images)):
        if value is not None:
            base[key] = value
    if args.random_init:
        base["init"] = ""
    else:
        init = Path(args.init) if args.init else default_weights_path(base["preset"])
        if not init.is_file():
            raise UserError(f"weights not found: {init}" + ("" if args.init else " (give --init or --random-init)"))
        base["init"] = str(init)
    base_cfg = TrainConfig(**base)

    try:
        extra = bench.load_variants_file(args.variants_file) if args.variants_file else None
        variants = bench.resolve_variants([v.strip() for v in args.variants.split(",") if v.strip()], extra)
        budget = bench.Budget(budget_kind, total, args.eval_every or total / 4)
        out = Path(args.out)
        plot_path = Path(args.plot) if args.plot else out / "curves.png"
        if plot_path.suffix.lower() not in (".png", ".svg"):
            raise UserError(f"--plot {plot_path}: use a .png or .svg name")
        out.mkdir(parents=True, exist_ok=True)
        with bench.paused(args.pause_pid):
            report = bench.bench_train(variants, base_cfg, budget, qualities, args.val_crop, scales, args.quiet,
                                       save_dir=out if args.save_weights else None)
    except (bench.BenchError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    report["command"] = {k: v for k, v in vars(args).items() if k != "func"}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    bench.write_csv(report, out / "curves.csv")
    table = bench.format_table(report)
    (out / "table.txt").write_text(table + "\n")
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    bench.plot(report, plot_path)
    print(json.dumps(report, indent=2, default=str) if args.json else table)
    if not args.quiet:
        import sys

        print(f"wrote {out / 'report.json'}, {out / 'curves.csv'}, {out / 'table.txt'}, {plot_path}", file=sys.stderr)
    return 0
