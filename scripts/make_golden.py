"""Regenerate the golden files of tests/test_golden.py (one command).

    python scripts/make_golden.py            # writes tests/data/golden/

What it writes: a seeded samic-tiny model (float16 safetensors + sidecar, test data only), two
small crops of the CC0 example photos, the .samic files this model makes of them at a few
qualities, and manifest.json with the sha256 of every file and of each decoded
reconstruction (uint8 RGB bytes). The golden test decodes the stored files with the stored
model and asserts the same pixels, forever: re-run this script only when the network itself
changes (new parameters), and say so in the commit message. A *format* change must not
regenerate them: the old files must keep decoding (docs/bitstream.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "data" / "golden"
SEED = 14
# (name, example photo, top, left, height, width): one crop a multiple of 16, one odd-sized
# (exercises the replicate padding and the crop after decoding).
CROPS = (("kitten", "kitten.jpg", 40, 60, 48, 80), ("market", "spice-market.jpg", 100, 90, 37, 53))
QUALITIES = (0.0, 0.6, 1.0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR)
    args = parser.parse_args(argv)

    from samic.codec.api import compress_image, decompress_image
    from samic.codec.bitstream import FORMAT_VERSION
    from samic.codec.image_io import load_image
    from samic.models import SAMIC
    from samic.weights import load_model, save_weights

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    weights = out / "samic-tiny.safetensors"
    save_weights(SAMIC("samic-tiny"), weights, info={"note": f"seeded (torch.manual_seed({SEED})), untrained: "
                                                              "golden-file test data, not a usable codec"})
    model = load_model(weights)  # code with exactly what the file holds (float16 values)

    files = []
    for name, photo, top, left, height, width in CROPS:
        rgb = load_image(ROOT / "assets" / "examples" / photo)[top:top + height, left:left + width]
        source = out / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(rgb)).save(source)
        rgb = load_image(source)
        for quality in QUALITIES:
            data = compress_image(rgb, quality, model)
            path = out / f"{name}-q{quality:.1f}.samic"
            path.write_bytes(data)
            reconstruction = decompress_image(data, model, "mse")
            files.append({"file": path.name, "source": source.name, "quality": quality,
                          "format_version": FORMAT_VERSION, "sha256": sha256(data),
                          "reconstruction_sha256": sha256(np.ascontiguousarray(reconstruction).tobytes()),
                          "shape": list(reconstruction.shape)})
    manifest = {"model": weights.name, "seed": SEED, "torch": torch.__version__, "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} golden files, model and manifest to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
