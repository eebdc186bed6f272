"""samic bench clusters / samic bench scan-ablation: what SAMB's clusters and scan do.

Front ends of samic.bench.clusters (cluster-map statistics per SAMB over a folder of photos)
and samic.bench.scan_ablation (estimated-bpp/PSNR curves of the model with its scan order
changed or its recurrence removed, BD-rates against the intact model). Their options are
registered on the ``samic bench`` parser by :func:`add_arguments`.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict

from samic.errors import UserError

WHAT = ("clusters", "scan-ablation")


def add_arguments(p) -> None:
    """The options of `samic bench clusters` and `samic bench scan-ablation`."""
    from samic.codec.bitstream import SCAN_ORDER_CODES  # torch-free, unlike samic.layers.samb
    from samic.quality import MIDDLE_QUALITY, RD_QUALITIES

    g = p.add_argument_group("clusters, scan-ablation", "options of `samic bench clusters` and "
                             "`samic bench scan-ablation` (both also take --json, --device, and --threads, "
                             "default 1 for these two)")
    g.add_argument("--dataset", default=None, metavar="DIR", help="folder of photos (e.g. ../shared/data/kodak)")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N photos (sorted by name)")
    weights = g.add_mutually_exclusive_group()
    weights.add_argument("--weights", default=None, help="weights file (default: the shipped samic-lite weights)")
    weights.add_argument("--model", default=None, help="preset with random weights (seed 0) instead of weights")
    g.add_argument("--quality", type=float, default=MIDDLE_QUALITY,
                   help=f"clusters: rate knob in [0, 1] (default {MIDDLE_QUALITY:g})")
    g.add_argument("--scan-order", default="semantic", choices=tuple(SCAN_ORDER_CODES),
                   help="clusters: scan order of every SAMB (default semantic; "
                        "the order changes what later blocks see)")
    g.add_argument("--shift-axes", default="rows,cols",
                   help="clusters: axes of the one-token shift test, averaged (default rows,cols)")
    g.add_argument("--no-slic", action="store_true", help="clusters: leave out the NMI with SLIC superpixels")
    g.add_argument("--qualities", type=float, nargs="+", default=list(RD_QUALITIES), metavar="Q",
                   help="scan-ablation: qualities of the RD curves (default "
                        + " ".join(f"{q:g}" for q in RD_QUALITIES) + ")")
    g.add_argument("--at-quality", type=float, default=MIDDLE_QUALITY, metavar="Q",
                   help=f"scan-ablation: the quality reported on its own (default {MIDDLE_QUALITY:g})")


def _finite(value):
    """NaN/inf -> None, recursively, so that the JSON output is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _setup(args):
    """Checks shared by both benches -> (model, image paths)."""
    import torch

    from samic.train.data import list_images

    if args.dataset is None:
        raise UserError(f"samic bench {args.what} needs --dataset DIR")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be positive")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be positive")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    try:
        images = list_images(args.dataset)[:args.limit]
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(str(exc)) from None
    torch.set_num_threads(args.threads or 1)
    if args.model is not None:
        from samic.models import PRESETS, SAMIC

        if args.model not in PRESETS:
            raise UserError(f"unknown model {args.model!r}; presets: {', '.join(PRESETS)}")
        torch.manual_seed(0)
        model = SAMIC(args.model)
    else:
        from samic.commands.compress import load_model

        model = load_model(args.weights)
    return model.to(device).eval(), images


def _check_quality(value: float, option: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{option} must be in [0, 1], got {value:g}")


def _progress(args):
    return None if args.json else (lambda name: print(f"  {name}", file=sys.stderr, flush=True))


def run_clusters(args) -> int:
    from samic.bench.clusters import SHIFT_AXES, cluster_statistics, format_table
    from samic.layers.samb import ScanSettings

    _check_quality(args.quality, "--quality")
    axes = [a.strip() for a in args.shift_axes.split(",") if a.strip()]
    if not axes or any(a not in SHIFT_AXES for a in axes):
        raise UserError(f"--shift-axes: a comma-separated list of {' and '.join(SHIFT_AXES)}, got {args.shift_axes!r}")
    model, images = _setup(args)
    report = cluster_statistics(model, images, args.quality, ScanSettings(order=args.scan_order), axes=axes,
                                slic=not args.no_slic, progress=_progress(args))
    print(json.dumps(_finite(asdict(report)), indent=2) if args.json else format_table(report))
    return 0


def run_scan_ablation(args) -> int:
    from samic.bench.scan_ablation import format_table, scan_ablation
    from samic.eval.bdrate import MIN_POINTS

    for q in args.qualities:
        _check_quality(q, "--qualities")
    _check_quality(args.at_quality, "--at-quality")
    if len(set(args.qualities)) < MIN_POINTS:
        raise UserError(f"--qualities: a BD-rate needs at least {MIN_POINTS} distinct qualities")
    model, images = _setup(args)
    report = scan_ablation(model, images, args.qualities, at_quality=args.at_quality, progress=_progress(args))
    print(json.dumps(_finite(asdict(report)), indent=2) if args.json else format_table(report))
    return 0


def run(args) -> int:
    return run_clusters(args) if args.what == "clusters" else run_scan_ablation(args)
