"""Codec measurements: speed against Pillow JPEG, and file size against the model's estimate.

    python benchmarks/codec_speed.py speed [--image kodim01.png] [--quality 0.5] [--repeats 3]
        encode/decode time of one image, network and entropy coding separately, next to
        Pillow JPEG at the JPEG quality whose bpp is closest to SAMIC's.
    python benchmarks/codec_speed.py rate [--qualities 0.2,0.8]
        file bpp of the 24 Kodak images against the likelihood estimate of a forward pass,
        header bytes separately.

Both use samic-lite with random weights (seed 0) unless --weights names a weights file, or
--shipped loads the shipped default weights.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from samic.codec.api import compress_image, decompress_image, read_header, to_tensor
from samic.codec.image_io import load_image
from samic.entropy.latent_codec import PhaseTimer
from samic.models import SAMIC

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"


def load_model(args) -> tuple[SAMIC, str]:
    if args.weights or args.shipped:
        from samic.weights import load_model as load
        return load(args.weights), f"weights {args.weights or 'shipped default'}"
    torch.manual_seed(0)
    return SAMIC(args.model).eval(), "random weights (seed 0)"


def jpeg_at_bpp(rgb: np.ndarray, target_bpp: float) -> tuple[int, bytes]:
    """The Pillow JPEG quality (1..95) whose bpp is closest to target_bpp, and its bytes."""
    def encode(quality: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()

    pixels = rgb.shape[0] * rgb.shape[1]
    return min(((q, encode(q)) for q in range(1, 96)), key=lambda qd: abs(8 * len(qd[1]) / pixels - target_bpp))


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(args) -> None:
    model, origin = load_model(args)
    rgb = load_image(KODAK / args.image)
    height, width = rgb.shape[:2]
    pixels = height * width
    data = compress_image(rgb, args.quality, model)  # warm-up: caches, numba, allocator
    decompress_image(data, model)
    encode_phases, decode_phases = [], []
    encode_total, decode_total = [], []
    for _ in range(args.repeats):
        timer = PhaseTimer()
        start = time.perf_counter()
        data = compress_image(rgb, args.quality, model, timer=timer)
        encode_total.append(time.perf_counter() - start)
        encode_phases.append(timer.seconds)
        timer = PhaseTimer()
        start = time.perf_counter()
        decompress_image(data, model, timer=timer)
        decode_total.append(time.perf_counter() - start)
        decode_phases.append(timer.seconds)

    def phase(phases, name):
        return statistics.median(p.get(name, 0.0) for p in phases)

    jpeg_quality, jpeg_data = jpeg_at_bpp(rgb, 8 * len(data) / pixels)
    jpeg_encode = median_seconds(lambda: Image.fromarray(rgb).save(io.BytesIO(), format="JPEG",
                                                                     quality=jpeg_quality), args.repeats)
    jpeg_decode = median_seconds(lambda: np.asarray(Image.open(io.BytesIO(jpeg_data)).convert("RGB")), args.repeats)

    print(f"{model.config.name} ({origin}), {args.image} {width}x{height}, quality {args.quality}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'':34s} {'SAMIC':>10s} {'JPEG q' + str(jpeg_quality):>10s}")
    print(f"{'bpp':34s} {8 * len(data) / pixels:10.4f} {8 * len(jpeg_data) / pixels:10.4f}")
    rows = [
        ("encode total", statistics.median(encode_total), jpeg_encode),
        ("  network: g_a, h_a", phase(encode_phases, "analysis"), None),
        ("  network: h_s, ChARM (float64)", phase(encode_phases, "entropy_parameters"), None),
        ("  entropy coding", phase(encode_phases, "entropy_coding"), None),
        ("decode total", statistics.median(decode_total), jpeg_decode),
        ("  entropy coding", phase(decode_phases, "entropy_coding"), None),
        ("  network: h_s, ChARM (float64)", phase(decode_phases, "entropy_parameters"), None),
        ("  network: g_s", phase(decode_phases, "synthesis"), None),
    ]
    for name, samic_seconds, jpeg_seconds in rows:
        jpeg_text = f"{1000 * jpeg_seconds:8.1f}ms" if jpeg_seconds is not None else ""
        print(f"{name:34s} {1000 * samic_seconds:8.1f}ms {jpeg_text:>10s}")


def rate(args) -> None:
    model, origin = load_model(args)
    images = sorted(KODAK.glob("kodim*.png"))
    print(f"{model.config.name} ({origin}), {len(images)} Kodak images")
    print(f"{'quality':>7s} {'file bpp':>9s} {'estimate':>9s} {'overhead':>9s} {'payload/est':>11s} "
          f"{'header B':>8s} {'header bpp':>10s}")
    for quality in (float(q) for q in args.qualities.split(",")):
        file_bits, estimate_bits, payload_bits, header_bits, pixels = 0.0, 0.0, 0.0, 0.0, 0
        for path in images:
            rgb = load_image(path)
            data = compress_image(rgb, quality, model)
            header = read_header(data)
            with torch.no_grad():
                out = model(to_tensor(rgb, "cpu", torch.float32), quality)
            estimate_bits += sum(float(-torch.log2(lik).sum()) for lik in out.likelihoods.values())
            file_bits += 8 * len(data)
            header_bits += 8 * header.size
            payload_bits += 8 * (header.z_length + header.y_length)
            pixels += rgb.shape[0] * rgb.shape[1]
            if args.verbose:
                print(f"  {path.name} {8 * len(data) / rgb.size * 3:.4f} bpp", flush=True)
        print(f"{quality:7.2f} {file_bits / pixels:9.4f} {estimate_bits / pixels:9.4f} "
              f"{100 * (file_bits / estimate_bits - 1):8.2f}% {100 * (payload_bits / estimate_bits - 1):10.2f}% "
              f"{header_bits / 8 / len(images):8.0f} {header_bits / pixels:10.5f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("speed", "rate"))
    parser.add_argument("--model", default="samic-lite", help="preset for random weights")
    parser.add_argument("--weights", help="weights file (samic.weights.load_model)")
    parser.add_argument("--shipped", action="store_true", help="the shipped default weights")
    parser.add_argument("--image", default="kodim01.png")
    parser.add_argument("--quality", type=float, default=0.5)
    parser.add_argument("--qualities", default="0.2,0.8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    speed(args) if args.mode == "speed" else rate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
