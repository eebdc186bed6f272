"""samic info: a model's parameters by part and the scan backends available here."""
from __future__ import annotations

import json

from samic.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="model parameters and available scan backends")
    p.add_argument("--model", default=None, help="preset name (default: samic-lite)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from samic.models import DEFAULT_MODEL, PRESETS, SAMIC
    from samic.ops.scan import available_backends

    name = args.model or DEFAULT_MODEL
    if name not in PRESETS:
        raise UserError(f"unknown model {name!r}; available: {', '.join(PRESETS)}")
    model = SAMIC(name)
    by_part = {k: v for k, v in model.params_by_part().items() if v or k != "g_s_perceptual"}
    backends = available_backends("cpu")
    if torch.cuda.is_available():
        backends += [b for b in available_backends("cuda") if b not in backends]
    info = {"name": name, "params": sum(by_part.values()), "params_by_part": by_part,
            "scan_backends": backends, "config": {k: v for k, v in vars(model.config).items()}}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{name}: {info['params'] / 1e6:.2f}M parameters")
        for part, n in by_part.items():
            print(f"  {part:16s} {n / 1e6:8.3f}M")
        print(f"scan backends: {', '.join(backends)}")
    return 0
