"""End-to-end tests of app.py: the app runs in a subprocess on a free port and is driven
through gradio_client, as a remote user would. Small Kodak crops keep it fast on a CPU."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from samic.codec.api import read_header

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT / ".." / "shared" / "data" / "kodak"
MAX_PIXELS = 20_000  # the test server downscales anything larger (the default is 2 MP)
N_OUTPUTS = 22  # what /inspect returns (its session States are not part of the API)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """``python app.py`` on a free port; ``url`` once it answers; ``stop()`` ends it."""

    def __init__(self, log_path: Path, *args: str, timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(self.port), *args],
                                        cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def kodak_crop(path: Path, name: str, box: tuple[int, int, int, int]) -> Path:
    """Save a crop (x0, y0, x1, y1) of a Kodak image as PNG under ``path``."""
    out = path / name
    with Image.open(KODAK / name) as image:
        image.crop(box).save(out)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not KODAK.is_dir():
        pytest.skip(f"Kodak images not found at {KODAK}")
    app = AppServer(tmp_path_factory.mktemp("app") / "app.log", "--max-pixels", str(MAX_PIXELS), "--threads", "1")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("crops")
    return {"main": kodak_crop(folder, "kodim23.png", (300, 120, 460, 240)),  # 160 x 120
            "small": kodak_crop(folder, "kodim05.png", (200, 200, 264, 264)),  # 64 x 64
            "large": kodak_crop(folder, "kodim15.png", (100, 100, 300, 250))}  # 200 x 150 > MAX_PIXELS


def inspect(client: Client, image: Path, quality: float, scan_order: str = "semantic",
            position_only: bool = False) -> tuple:
    return client.predict(handle_file(str(image)), quality, "mse", scan_order, None, None, 0.5, position_only,
                          api_name="/inspect")


def metric_table(output: dict) -> dict[str, float]:
    return {row[0]: float(row[1]) for row in output["data"]}


def check_outputs(outputs: tuple, size: tuple[int, int], quality: float) -> dict[str, float]:
    """Every output of /inspect is present and consistent; returns the metrics table."""
    assert len(outputs) == N_OUTPUTS
    (info, compare, table, samic_file, png_file, diff, bits, spectrum,
     block, cluster, overlay, position_overlay, router_text, entropy, scan_path, scan_map,
     order_table, order_text, same_table, same_text, same_slider, zoom) = outputs
    assert same_table["value"]["data"] == [] and "Press the button" in same_text  # on demand only
    original, reconstruction = compare["value"]  # the slider's label names the key it shows
    assert f"quality {quality:.2f}" in compare["label"] and "mse decoder" in compare["label"]
    assert f"quality {quality:.2f}" in info and "pos_gate" in router_text
    assert order_table["value"]["data"] == [] and "Press the button" in order_text  # cleared: on demand only
    assert position_overlay["visible"] is False
    for path in (original, reconstruction, png_file["value"]):
        with Image.open(path) as image:
            assert image.size == size
    metrics = metric_table(table)
    assert set(metrics) >= {"rate", "file size", "compression ratio", "PSNR", "MS-SSIM", "LPIPS (Alex)",
                            "encode time", "decode time"}
    data = Path(samic_file["value"]).read_bytes()
    assert data[:4] == b"\x89SMC" and len(data) == metrics["file size"]
    assert metrics["rate"] == pytest.approx(8 * len(data) / (size[0] * size[1]), abs=1e-4)
    assert metrics["compression ratio"] == pytest.approx(24 / metrics["rate"], rel=1e-3)
    assert 10 < metrics["PSNR"] < 60 and 0 < metrics["MS-SSIM"] <= 1 and 0 <= metrics["LPIPS (Alex)"] < 1
    for path in (diff, bits, overlay, entropy):
        with Image.open(path) as image:
            assert image.width > 100 and image.height > 50
    for plot in (spectrum, scan_path, scan_map):
        assert plot["type"] == "plotly" and '"data"' in plot["plot"]
    assert block["value"] in [value for _, value in block["choices"]]
    assert cluster["value"] in [value for _, value in cluster["choices"]]
    return metrics


def test_main_call_two_qualities(server, crops):
    client = Client(server.url, verbose=False)
    low = check_outputs(inspect(client, crops["main"], 0.1), (160, 120), 0.1)
    high = check_outputs(inspect(client, crops["main"], 0.9), (160, 120), 0.9)
    assert low["rate"] < high["rate"]

    # the RD curve and the block views use the session's last inspection (a small one: the
    # RD curve codes the image 23 times)
    inspect(client, crops["small"], 0.5)
    rd = client.predict("PSNR", api_name="/rd_curve")
    assert rd["type"] == "plotly"
    for name in ("SAMIC", "JPEG", "WEBP", "AVIF", "current"):
        assert f'"name":"{name}"' in rd["plot"]
    views = client.predict("g_s.stage3", None, 0.8, False, api_name="/views")
    assert len(views) == 8 and views[0]["value"] == "g_s.stage3"


def test_scan_order_reaches_the_file_and_the_comparison(server, crops):
    client = Client(server.url, verbose=False)
    outputs = inspect(client, crops["main"], 0.5, scan_order="raster")
    check_outputs(outputs, (160, 120), 0.5)
    data = Path(outputs[3]["value"]).read_bytes()
    assert read_header(data).scan_order == "raster" and "raster scan order" in outputs[0]
    assert outputs[3]["value"].endswith("-raster.samic")
    assert "raster order" in outputs[14]["plot"] and "(this file)" in outputs[15]["plot"]

    table, text = client.predict(api_name="/scan_orders")
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == {"semantic", "raster (shown)", "random"}
    assert int(rows["raster (shown)"][1]) == len(data)  # the file on display
    assert "160 x 120 px, quality 0.50" in text and "semantic order gives" in text

    with pytest.raises(AppError) as error:
        inspect(client, crops["small"], 0.5, scan_order="spiral")
    assert "Traceback" not in str(error.value)


def test_cluster_selection_resets_per_block_and_position_only(server, crops):
    client = Client(server.url, verbose=False)
    outputs = inspect(client, crops["main"], 0.5)
    assert outputs[8]["value"] == "g_a.stage2"
    # g_a.stage3 with a cluster id other than its default: a new block resets the selection
    default = client.predict("g_a.stage3", None, 0.5, False, api_name="/views")[1]
    others = [value for _, value in default["choices"] if value != default["value"]]
    assert others, "g_a.stage3 uses a single cluster on this crop"
    views = client.predict("g_s.stage2", others[0], 0.5, False, api_name="/views")
    assert views[0]["value"] == "g_s.stage2"
    views = client.predict("g_a.stage3", others[0], 0.5, False, api_name="/views")
    assert views[1]["value"] == default["value"]  # another block was shown: reset to the default
    views = client.predict("g_a.stage3", others[0], 0.5, False, api_name="/views")
    assert views[1]["value"] == others[0]  # the same block: the pick is kept
    assert f"cluster {others[0]}:" in views[6]["plot"]

    position = client.predict("g_a.stage3", others[0], 0.5, True, api_name="/views")
    assert position[1]["value"] == others[0] and "Position only, g_a.stage3" in position[4]
    assert position[3]["visible"] is True
    with Image.open(position[3]["value"]) as image:
        assert image.width == 160


def test_bad_uploads_give_readable_errors(server, tmp_path):
    client = Client(server.url, verbose=False)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path in (corrupt, text):
        with pytest.raises(AppError) as error:
            inspect(client, path, 0.5)
        message = str(error.value)
        assert path.name in message and "Traceback" not in message and "/tmp/gradio" not in message


def test_large_upload_is_downscaled_with_notice(server, crops):
    outputs = inspect(Client(server.url, verbose=False), crops["large"], 0.5)
    assert "downscaled from 200 x 150" in outputs[0]
    with Image.open(outputs[1]["value"][1]) as image:
        assert image.width * image.height <= MAX_PIXELS


def test_concurrent_clients(server, crops):
    """4 clients x 3 requests at distinct qualities, all queued at once: all succeed."""
    def session(index: int) -> list[float]:
        client = Client(server.url, verbose=False)
        return [metric_table(inspect(client, crops["small"], 0.1 + 0.2 * index + 0.05 * k)[2])["rate"]
                for k in range(3)]

    with ThreadPoolExecutor(4) as pool:
        rates = list(pool.map(session, range(4)))
    assert all(len(r) == 3 and all(v > 0 for v in r) for r in rates)
