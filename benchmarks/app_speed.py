"""How fast the explorer (app.py) answers, through its real HTTP API, before and after a change.

    python benchmarks/app_speed.py [--before COMMIT] [--rd-images 2] [--out docs/app_speed.md]

Checks out ``--before`` into a git worktree (/tmp/app-before), starts that app.py and this
checkout's app.py on two free ports, and drives each with gradio_client, one at a time (the
machine has two cores), on the 5 example photos and one 1.3 MP photo (Kodak kodim23 upscaled
Lanczos to 1400 x 933). Per image and app, in seconds:

- reconstruction: from the /inspect request (quality 0.5, a setting not seen before) to the
  first streamed output that holds the full-size reconstruction decoded from the real file
  (the old app streams nothing: its only output is the complete one);
- all panels: to the complete /inspect output;
- revisit: the same request again (cached);
- RD chart: /rd_curve to its complete chart (only on the first ``--rd-images`` images: the
  old app needs minutes per image);
- first page: from starting ``python app.py`` to the page answering HTTP 200 (once per app).

Prints a markdown table (new, old and old / new) and writes it to ``--out`` when given.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from samic.codec.image_io import load_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.jpg"))
KODAK = ROOT / ".." / "shared" / "data" / "kodak" / "kodim23.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(folder: Path, log: Path) -> tuple[subprocess.Popen, str, float]:
    """``python app.py`` in ``folder``; (process, url, seconds until the page answered)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=folder,
                               stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                    "PYTHONPATH": str(folder)})
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{folder}/app.py exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url, time.perf_counter() - begin
        except OSError:
            time.sleep(0.1)


def has_reconstruction(output) -> bool:
    """An /inspect output tuple whose comparison slider holds two images."""
    if not isinstance(output, (list, tuple)) or len(output) < 2:
        return False
    compare = output[1]
    if isinstance(compare, dict):
        compare = compare.get("value")
    return isinstance(compare, (list, tuple)) and len(compare) == 2 and all(compare)


def inspect_times(client, image: Path, quality: float) -> tuple[float, float]:
    """(seconds to the first output with the reconstruction, seconds to the complete output)."""
    from gradio_client import handle_file
    begin = time.perf_counter()
    job = client.submit(handle_file(str(image)), quality, "mse", "semantic", None, None, 0.55, False,
                        api_name="/inspect")
    first = None
    while not job.done():
        if first is None and any(has_reconstruction(o) for o in job.outputs()):
            first = time.perf_counter() - begin
        time.sleep(0.02)
    job.result()
    total = time.perf_counter() - begin
    return (first if first is not None else total), total


def measure(url: str, images: list[Path], rd_images: int) -> dict[str, dict[str, float]]:
    from gradio_client import Client
    client = Client(url, verbose=False)
    rows = {}
    for i, image in enumerate(images):
        row = {}
        row["reconstruction"], row["all panels"] = inspect_times(client, image, 0.5)
        row["revisit"] = inspect_times(client, image, 0.5)[1]
        if i < rd_images:
            begin = time.perf_counter()
            client.predict("PSNR", api_name="/rd_curve")
            row["RD chart"] = time.perf_counter() - begin
        rows[image.name] = row
        print(image.name, {k: round(v, 2) for k, v in row.items()}, flush=True)
    return rows


def table(new: dict, old: dict, first_new: float, first_old: float, note: str) -> str:
    columns = ["reconstruction", "all panels", "revisit", "RD chart"]
    lines = [note, "", "| image | " + " | ".join(f"{c}: new s (old s, old/new)" for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name in new:
        cells = []
        for c in columns:
            if c in new[name] and c in old.get(name, {}):
                a, b = new[name][c], old[name][c]
                cells.append(f"{a:.2f} ({b:.2f}, x{b / a:.1f})")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| first page after launch | {first_new:.2f} ({first_old:.2f}, x{first_old / first_new:.1f}) "
                 "| | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="09ce68a", help="the commit to compare against")
    parser.add_argument("--rd-images", type=int, default=2, help="measure the RD chart on the first N images")
    parser.add_argument("--images", type=int, default=6, help="how many of the 6 images to run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="samic-app-speed-"))
    large = work / "kodim23-1400x933.png"
    Image.fromarray(load_image(KODAK)).resize((1400, 933), Image.LANCZOS).save(large)
    images = ([large] + EXAMPLES)[:args.images]  # the 1.3 MP photo first: its RD chart is the hardest

    before = Path("/tmp/app-before")
    if not before.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True)
    load = os.getloadavg()
    results = {}
    for label, folder in (("new", ROOT), ("old", before)):
        process, url, first = start(folder, work / f"{label}.log")
        try:
            print(f"{label}: first page {first:.2f} s", flush=True)
            results[label] = (measure(url, images, args.rd_images), first)
        finally:
            process.terminate()
            process.wait(timeout=30)
    note = (f"app.py at {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()} "
            f"(new) against {args.before} (old), torch threads at their default, load average "
            f"{load[0]:.1f} at the start on {os.cpu_count()} cores; seconds, lower is better.")
    text = table(results["new"][0], results["old"][0], results["new"][1], results["old"][1], note)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
