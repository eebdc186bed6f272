"""Compose the starting point of a new stage 2 from a refined stage-1 run and an earlier stage 2.

    python scripts/compose_stage2_init.py --stage1 runs/lite-dense/checkpoint.pt \
        --stage2 runs/lite-stage2-continue/checkpoint.pt --out runs/stage2-init.pt
    samic train --config configs/lite-stage2-dense.toml --init runs/stage2-init.pt

--stage2 may also be shipped weights (``samic/assets/weights/samic-lite.safetensors``): their
perceptual decoder is taken and the critic starts fresh (the trainer trains it from step 0 and
holds the generator's GAN term back until ``gan_start``).

The output holds {"model", "discriminator"}: the stage-1 model (encoder, entropy model, MSE
decoder), a perceptual decoder and the earlier stage 2's discriminator (or None), which `samic
train --init` carries over. The perceptual decoder is the earlier one (``--perceptual old``, the
default: it already learned to synthesize texture, and a few hundred steps adapt it to the
refined latents) or a fresh copy of the new MSE decoder (``--perceptual copy``).
"""

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", type=Path, required=True, help="stage-1 checkpoint (.pt)")
    parser.add_argument("--stage2", type=Path, required=True, help="stage-2 checkpoint (.pt) with a discriminator")
    parser.add_argument("--perceptual", choices=("old", "copy"), default="old")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    for path in (args.stage1, args.stage2):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found")
    stage1 = torch.load(args.stage1, map_location="cpu", weights_only=False)
    if args.stage2.suffix == ".safetensors":
        from safetensors.torch import load_file
        stage2 = {"model": {k: v.float() for k, v in load_file(args.stage2).items()}, "discriminator": None}
    else:
        stage2 = torch.load(args.stage2, map_location="cpu", weights_only=False)
        if "discriminator" not in stage2:
            raise SystemExit(f"error: {args.stage2} has no discriminator; pass a stage-2 checkpoint")
    model = {k: v for k, v in stage1["model"].items() if not k.startswith("g_s_perceptual.")}
    prefix = "g_s_perceptual." if args.perceptual == "old" else "g_s."
    source = stage2["model"] if args.perceptual == "old" else stage1["model"]
    perceptual = {"g_s_perceptual." + k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
    if not perceptual:
        raise SystemExit(f"error: no {prefix}* weights found")
    model.update(perceptual)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "discriminator": stage2["discriminator"]}, args.out)
    print(f"wrote {args.out}: {len(model)} model tensors ({len(perceptual)} perceptual), "
          + (f"discriminator from {args.stage2}" if stage2["discriminator"] is not None else "fresh discriminator"))


if __name__ == "__main__":
    main()
