"""Fit the SAMB routers' cluster centres of a weights file on training crops (nothing else changes).

    python scripts/fit_router_centres.py --weights samic/assets/weights/samic-lite.safetensors \
        [--out PATH] [--train-dir ../shared/data/train] [--batches 16]

Writes --out (default: in place) with its sidecar; the sidecar keeps its other fields and
records the fit.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from samic.train.centres import fit_router_centres
from samic.train.data import RandomCrops, list_images, split_train_val
from samic.weights import WeightsError, load_model, save_weights, sidecar_path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help=".safetensors file (with its .json sidecar)")
    p.add_argument("--out", help="output .safetensors (default: overwrite --weights)")
    p.add_argument("--train-dir", default="../shared/data/train")
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.weights)
        files, _ = split_train_val(list_images(args.train_dir), 8)  # never the validation photos
    except (WeightsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    crops = RandomCrops(files, args.crop, (0.25, 0.6), seed=12345)
    batches = (torch.stack([crops[b * args.batch_size + i] for i in range(args.batch_size)])
               for b in range(args.batches))
    used = fit_router_centres(model, batches)
    out = Path(args.out or args.weights)
    info = json.loads(sidecar_path(Path(args.weights)).read_text())
    for key in ("file", "preset", "decoders", "dtype", "sha256", "bytes"):
        info.pop(key, None)
    info["router_centres"] = (f"fitted by scripts/fit_router_centres.py on {used} batches of "
                              f"{args.batch_size} {args.crop}px crops of {args.train_dir}")
    sidecar = save_weights(model, out, info)
    print(f"wrote {out} (sha256 {sidecar['sha256'][:8]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
