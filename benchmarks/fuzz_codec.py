"""Fuzz the .samic decoder: thousands of random mutations of real files.

Every mutated file must decode to an image or raise samic.codec.FormatError; any other
exception, or a case slower than --max-seconds, is a failure (exit status 1).

    python benchmarks/fuzz_codec.py                      # 2,400 cases, samic-tiny, random weights
    python benchmarks/fuzz_codec.py --cases 500 --model samic-lite --weights samic/assets/weights/samic-lite.safetensors
"""
from __future__ import annotations

import argparse
import collections
import random
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from samic.codec import FormatError, compress_image, decompress_image
from samic.codec.fuzzing import mutate
from samic.codec.image_io import load_image
from samic.models import SAMIC

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="samic-tiny", help="preset (random weights unless --weights)")
    parser.add_argument("--weights", help="weights file for samic.weights.load_model")
    parser.add_argument("--image", default=str(KODAK / "kodim01.png"))
    parser.add_argument("--crop", default="96x128", help="HxW crop of the image's top-left corner")
    parser.add_argument("--qualities", default="0.1,0.5,0.9", help="one source file per quality")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="slowest acceptable case")
    args = parser.parse_args()

    if args.weights:
        from samic.weights import load_model
        model = load_model(args.weights)
    else:
        torch.manual_seed(args.seed)
        model = SAMIC(args.model).eval()
    height, width = (int(v) for v in args.crop.split("x"))
    image = load_image(args.image)[:height, :width].copy()
    sources = [compress_image(image, float(q), model) for q in args.qualities.split(",")]
    print(f"{model.config.name}, {width}x{height} crop of {Path(args.image).name}, "
          f"source files of {[len(s) for s in sources]} bytes, {args.cases} cases")

    rng = random.Random(args.seed)
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    messages: collections.Counter = collections.Counter()
    failures, slowest = [], (0.0, "")
    start = time.perf_counter()
    for case in range(args.cases):
        kind, data = mutate(sources[case % len(sources)], rng)
        case_start = time.perf_counter()
        try:
            decoded = decompress_image(data, model)
            if decoded.dtype != np.uint8 or decoded.ndim != 3 or decoded.shape[2] != 3:
                raise AssertionError(f"decoded to {decoded.dtype} {decoded.shape}")
            outcomes[kind]["decoded"] += 1
        except FormatError as exc:
            outcomes[kind]["format_error"] += 1
            message = re.sub(r"needs the \S+ model", "needs the <name> model", str(exc))
            messages[re.sub(r"[^\s(]*\d[^\s)]*", "N", message)[:100]] += 1
        except Exception:
            outcomes[kind]["other"] += 1
            failures.append((case, kind, traceback.format_exc()))
        seconds = time.perf_counter() - case_start
        slowest = max(slowest, (seconds, kind))
        if seconds > args.max_seconds:
            failures.append((case, kind, f"took {seconds:.1f} s"))
    elapsed = time.perf_counter() - start

    print(f"{'mutation':32s} {'cases':>6s} {'decoded':>8s} {'FormatError':>12s} {'other':>6s}")
    for kind in sorted(outcomes):
        c = outcomes[kind]
        print(f"{kind:32s} {sum(c.values()):6d} {c['decoded']:8d} {c['format_error']:12d} {c['other']:6d}")
    total = collections.Counter()
    for c in outcomes.values():
        total.update(c)
    print(f"{'total':32s} {sum(total.values()):6d} {total['decoded']:8d} {total['format_error']:12d} "
          f"{total['other']:6d}")
    print("FormatError messages (numbers replaced by N, model names by <name>):")
    for message, count in messages.most_common():
        print(f"  {count:6d}  {message}")
    print(f"{elapsed:.1f} s in all, {1000 * elapsed / args.cases:.1f} ms per case, "
          f"slowest {slowest[0]:.2f} s ({slowest[1]})")
    for case, kind, report in failures[:5]:
        print(f"\nFAILED case {case} ({kind}):\n{report}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
