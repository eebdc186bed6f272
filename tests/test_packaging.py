"""An install that works anywhere: the wheel carries the weights and the LPIPS-Alex weights as
package data, declares its pinned runtime dependencies, and `samic compress` / `decompress` run
from a folder outside the repository in a fresh virtual environment.

The wheel is built from a copy of the sources (pyproject.toml, README.md, samic/), so the test
writes no build/ folder into the checkout and no stale build output can slip into the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "kitten.jpg"
PACKAGE_DATA = ("samic/assets/weights/samic-lite.safetensors", "samic/assets/weights/samic-lite.json",
                "samic/assets/lpips/lpips_alex_v0.1.safetensors")
NETWORK_ERRORS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                  "Network is unreachable", "ConnectTimeoutError")

pytestmark = pytest.mark.timeout(240)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "samic", src / "samic",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "wip", "lpips_vgg_*"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src],
         cwd=src)
    (path,) = dist.glob("samic-*.whl")
    return path


def _declared(wheel: Path) -> tuple[list[str], dict[str, str]]:
    """(runtime requirements, pins from requirements.txt) for the same names."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    runtime = [line.split(":", 1)[1].strip() for line in lines
               if line.startswith("Requires-Dist:") and "extra ==" not in line]
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return runtime, pins


def test_wheel_carries_package_data_and_pinned_dependencies(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in PACKAGE_DATA:
            assert name in names, f"{name} is not in {wheel.name}"
        sizes = {name: zf.getinfo(name).file_size for name in PACKAGE_DATA}
    for name, size in sizes.items():  # the files themselves, not Git LFS pointers or copies of something else
        assert size == (ROOT / name).stat().st_size
    runtime, pins = _declared(wheel)
    names = {req.split("==")[0].lower(): req.split("==")[1] for req in runtime}
    assert {"torch", "numpy", "pillow", "safetensors", "constriction", "numba", "scipy", "tqdm", "einops",
            "scikit-image"} <= set(names)
    for name, version in names.items():
        assert pins.get(name) == version, f"pyproject pins {name}=={version}, requirements.txt {pins.get(name)}"


def test_installed_wheel_round_trips_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd=tmp_path)

    work = tmp_path / "work"  # outside the repository: nothing here can find the checkout's files
    work.mkdir()
    where = _run([python, "-c", "import samic, samic.weights as w; print(samic.__file__); print(w.WEIGHTS_DIR)"],
                 cwd=work).stdout.split()
    assert all(Path(p).resolve().is_relative_to(venv.resolve()) for p in where), where

    with Image.open(EXAMPLE) as im:
        im.convert("RGB").crop((0, 0, 96, 64)).save(work / "crop.png")
    samic = bindir / "samic"
    out = _run([samic, "compress", "crop.png", "crop.samic", "--quality", "0.5"], cwd=work).stdout
    assert "96x64" in out
    _run([samic, "decompress", "crop.samic", "back.png"], cwd=work)
    with Image.open(work / "back.png") as im:
        back = np.asarray(im.convert("RGB"))
    assert back.shape == (64, 96, 3)

    # The same bytes as the checkout's own code path makes from the same pixels.
    import samic as repo_samic
    from samic.codec.image_io import open_image_file
    from samic.weights import load_model

    data = repo_samic.compress_image(open_image_file(work / "crop.png"), 0.5, load_model())
    assert (work / "crop.samic").read_bytes() == data


def test_declared_dependencies_resolve(wheel, tmp_path):
    """`pip install --dry-run` of the wheel resolves every pinned runtime dependency, with the
    package sources pip is configured with (a local index here; PyPI elsewhere)."""
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--report", str(report), str(wheel)],
                            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=180)
    if result.returncode != 0 and any(marker in result.stderr for marker in NETWORK_ERRORS):
        pytest.skip(f"no package index reachable: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    runtime, _ = _declared(wheel)
    for req in runtime:
        name, version = req.split("==")
        assert chosen.get(name.lower(), "").split("+")[0] == version, f"{req} resolved to {chosen.get(name.lower())}"
