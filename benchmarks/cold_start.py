"""Cold start: a fresh `samic compress` of one image against Pillow's WebP encoder, side by side.

    python benchmarks/cold_start.py [--image ../shared/data/kodak/kodim01.png] [--repeat 5] [--json]

Each repetition starts both as new processes, in alternating order, on the same image:
``python -m samic.cli compress IMAGE OUT --quality Q`` and a Python process that opens the image
with Pillow and saves it as WebP. The report is the median wall time of each and their ratio.

A third process, run as many times, says where the cold compress goes (the same steps as
samic.commands.compress, timed): interpreter start, the CLI and its parser, opening the image,
importing torch and the model code, loading the weights (sha256 check included), the first
encode (numba's kernels come from its on-disk cache, whose first load sets up numba's CPU
target), and a second encode of the same image for comparison. One compress before the
timed ones fills numba's kernel cache and the .pyc files, so "cold" means a new process, not an
empty disk cache.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODIM01 = ROOT / ".." / "shared" / "data" / "kodak" / "kodim01.png"

WEBP = "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], 'WEBP', quality=int(sys.argv[3]))"

PHASES = r"""
import json, sys, time
t = [time.perf_counter()]
times = {}
def lap(name):
    now = time.perf_counter(); times[name] = now - t[0]; t[0] = now
import samic.cli
samic.cli.build_parser(); lap("cli_and_parser")
from samic.codec.image_io import open_image_file
rgb = open_image_file(sys.argv[1]); lap("open_image")
import torch, samic.weights, samic.codec.api; lap("import_torch_and_model_code")
model = samic.weights.load_model(); lap("load_weights")
samic.codec.api.compress_image(rgb, float(sys.argv[2]), model); lap("first_encode")
samic.codec.api.compress_image(rgb, float(sys.argv[2]), model); lap("second_encode")
print(json.dumps(times))
"""


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"cold_start: {' '.join(cmd[:4])} ... failed: {result.stderr.strip().splitlines()[-1:]}")
    return elapsed, result.stdout


def measure(image: Path, repeat: int, quality: float, webp_quality: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    samic_s, webp_s, phases, start_s = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        compress = [sys.executable, "-m", "samic.cli", "compress", str(image), f"{tmp}/out.samic",
                    "--quality", str(quality), "--force"]
        webp = [sys.executable, "-c", WEBP, str(image), f"{tmp}/out.webp", str(webp_quality)]
        _timed(compress, env)  # not counted: writes numba's kernel cache and .pyc files if missing
        for i in range(repeat):
            for name in (("samic", "webp") if i % 2 == 0 else ("webp", "samic")):
                elapsed, _ = _timed(compress if name == "samic" else webp, env)
                (samic_s if name == "samic" else webp_s).append(elapsed)
            start_s.append(_timed([sys.executable, "-c", "pass"], env)[0])
            total, out = _timed([sys.executable, "-c", PHASES, str(image), str(quality)], env)
            phases.append(json.loads(out))
        sizes = {"samic": Path(f"{tmp}/out.samic").stat().st_size, "webp": Path(f"{tmp}/out.webp").stat().st_size}
    phase_names = list(phases[0])
    return {
        "image": str(image), "repeat": repeat, "quality": quality, "webp_quality": webp_quality, "bytes": sizes,
        "samic_compress_s": statistics.median(samic_s), "webp_s": statistics.median(webp_s),
        "ratio": statistics.median(samic_s) / statistics.median(webp_s),
        "runs": {"samic_compress_s": samic_s, "webp_s": webp_s},
        "phases_s": {"interpreter_start": statistics.median(start_s),
                     **{name: statistics.median(p[name] for p in phases) for name in phase_names}},
    }


def format_report(r: dict) -> str:
    lines = [f"cold start on {r['image']} (median of {r['repeat']} fresh processes each)",
             f"  samic compress --quality {r['quality']:g}: {r['samic_compress_s']:6.3f} s  ({r['bytes']['samic']} bytes)",
             f"  Pillow WebP quality {r['webp_quality']}:     {r['webp_s']:6.3f} s  ({r['bytes']['webp']} bytes)",
             f"  ratio samic / WebP:        {r['ratio']:6.1f}x",
             "where the cold compress goes (medians; second_encode is not part of it):"]
    lines += [f"  {name:28s} {seconds:6.3f} s" for name, seconds in r["phases_s"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=KODIM01, help="image to compress (default Kodak's kodim01)")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes of each kind (default 5)")
    parser.add_argument("--quality", type=float, default=0.5, help="samic --quality (default 0.5)")
    parser.add_argument("--webp-quality", type=int, default=75, help="WebP quality (default 75, Pillow's)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not args.image.is_file():
        parser.error(f"{args.image} not found (pass --image)")
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    report = measure(args.image.resolve(), args.repeat, args.quality, args.webp_quality)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
