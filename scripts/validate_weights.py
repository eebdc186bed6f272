"""Validate weights or a training checkpoint on the trainer's held-out training-pool crops.

    python scripts/validate_weights.py samic/assets/weights/samic-lite.safetensors \
        assets/weights/wip/samic-lite-stage1.safetensors [runs/NAME/checkpoint.pt ...]

The same crops and measure as `samic train`'s val_log.csv (Trainer.validate: the 8 held-out
photos, 256² crops, q = 0, 0.25, ..., 1, MSE decoder): one line of bpp and PSNR per quality for
each file, so weights trained with different lambda ranges can be compared at equal rate.
"""
from __future__ import annotations

import argparse
import sys
import tempfile

import torch

from samic.train.trainer import Trainer, TrainConfig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", help=".safetensors weights or .pt checkpoints")
    p.add_argument("--train-dir", default="../shared/data/train")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.weights:
        with tempfile.TemporaryDirectory() as out_dir:
            try:
                trainer = Trainer(TrainConfig(init=path, train_dir=args.train_dir, out_dir=out_dir, crop=256,
                                              n_val_images=8, progress=False))
            except (FileNotFoundError, RuntimeError, OSError) as exc:
                print(f"error: {path}: {str(exc).splitlines()[0]}", file=sys.stderr)
                return 2
            rows = trainer.validate()
        points = ", ".join(f"q {r['quality']:g}: {r['bpp']:.4f} bpp {r['psnr']:.2f} dB" for r in rows)
        print(f"{path}: {points}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
