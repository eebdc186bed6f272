"""The SAMIC network: presets, sizes, intermediates, gain units, training pass, `samic info`."""
import json
import math
import subprocess
import sys

import pytest
import torch

from samic.models import PRESETS, SAMIC, get_config
from samic.models.samic import GainUnits, pad_to_multiple

pytestmark = pytest.mark.usefixtures("fresh_seed")

# samic-tiny with every optional branch switched on (SAMB at all three stages, two scan
# directions, separate hyper-decoders): covers the naming of every SAMB at tiny cost.
FULL_TINY = get_config("samic-tiny").replace(samb_stages=(1, 2, 3), directions=2, separate_hyper_decoders=True)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build(name):
    model = SAMIC(name)
    by_part = model.params_by_part()
    assert {"g_a", "g_s", "h_a", "h_s", "entropy", "gain_units"} <= set(by_part)
    assert sum(by_part.values()) == n_params(model)  # every parameter belongs to exactly one part
    assert model.config.name == name


def test_parameter_budgets():
    assert 23e6 <= n_params(SAMIC("samic-paper")) <= 27e6  # the paper's ~25M
    assert n_params(SAMIC("samic-lite")) <= 6.5e6
    with pytest.raises(ValueError, match="unknown model"):
        SAMIC("samic-huge")


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (65, 130)])
def test_forward_any_size(size):
    model = SAMIC(FULL_TINY).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = model(x)
    padded = tuple(-(-s // 64) * 64 for s in size)
    assert out.x_hat.shape == x.shape and torch.isfinite(out.x_hat).all()
    assert out.original_size == size and out.padded_size == padded
    assert out.likelihoods["y"].shape == (1, FULL_TINY.M, padded[0] // 16, padded[1] // 16)
    assert out.likelihoods["z"].shape == (1, FULL_TINY.Nz, padded[0] // 64, padded[1] // 64)
    assert out.intermediates is None


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_forward_odd_size(name):
    model = SAMIC(name).eval()
    x = torch.rand(1, 3, 65, 130)
    with torch.no_grad():
        out = model(x, return_intermediates=True)
    assert out.x_hat.shape == x.shape and torch.isfinite(out.x_hat).all()
    assert len(out.intermediates.samb) == len(model.samb_blocks())


def test_intermediates():
    model = SAMIC(FULL_TINY).eval()
    x = torch.rand(2, 3, 70, 100)  # padded to 128 x 128
    with torch.no_grad():
        out = model(x, quality=torch.tensor([0.1, 0.9]), return_intermediates=True)
    inter = out.intermediates
    expected = {f"g_a.stage{s}" for s in (1, 2, 3)} | {f"g_s.stage{s}" for s in (1, 2, 3)} \
        | {"h_a.samb", "h_s.means.samb", "h_s.scales.samb"}
    assert set(inter.samb) == expected and len(expected) == len(model.samb_blocks())
    # each SAMB's maps live on its own grid: stage s at H/2^s, h_a at H/32, h_s at H/32
    grids = {f"{part}.stage{s}": 128 // 2 ** s for part in ("g_a", "g_s") for s in (1, 2, 3)}
    grids.update({"h_a.samb": 4, "h_s.means.samb": 4, "h_s.scales.samb": 4})
    for name, samb in inter.samb.items():
        side = grids[name]
        assert samb.assignment.shape == (2, side, side), name
        assert samb.probs.shape == (2, FULL_TINY.n_clusters, side, side), name
        assert samb.order.shape == (2, side * side), name
    assert inter.spectrum.singular_values.shape == inter.spectrum.thresholded.shape == (2, FULL_TINY.M)
    assert inter.spectrum.threshold.shape == (2,)
    assert inter.bits_y.shape == (2, 8, 8) and inter.bits_z.shape == (2, 2, 2)
    assert torch.allclose(inter.bits_y.sum(), -torch.log2(out.likelihoods["y"]).sum())
    assert torch.allclose(inter.bits_z.sum(), -torch.log2(out.likelihoods["z"]).sum())
    assert torch.equal(inter.quality, torch.tensor([0.1, 0.9]))


def test_eval_is_deterministic():
    model = SAMIC("samic-tiny").eval()
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.likelihoods["y"], b.likelihoods["y"])


def test_gain_units_interpolation():
    units = GainUnits(channels=5, n_anchors=4, lambda_range=(0.001, 0.1))
    with torch.no_grad():
        units.log_gain.normal_()
        units.log_inverse_gain.normal_()
    anchors = torch.linspace(0, 1, 4)
    assert torch.allclose(units.gain(anchors)[:, :, 0, 0], units.log_gain.exp(), rtol=1e-5)
    assert torch.allclose(units.inverse_gain(anchors)[:, :, 0, 0], units.log_inverse_gain.exp(), rtol=1e-5)
    # geometric in between: the midpoint of two anchors is their geometric mean
    mid = units.gain(torch.tensor([(anchors[1] + anchors[2]) / 2]))[0, :, 0, 0]
    assert torch.allclose(mid, (units.log_gain[1] + units.log_gain[2]).div(2).exp(), rtol=1e-5)
    q = torch.rand(50).sort().values
    lambdas = units.lmbda(q)
    assert (lambdas[1:] >= lambdas[:-1]).all()
    assert torch.allclose(units.lmbda(torch.tensor([0.0, 1.0])), torch.tensor([0.001, 0.1]))
    assert torch.allclose(units.lmbda(torch.tensor([0.5])), torch.tensor([math.sqrt(0.001 * 0.1)]))
    # the initial gains follow high-rate theory: higher quality, larger gain (finer steps)
    fresh = GainUnits(channels=3, n_anchors=6, lambda_range=(0.0006, 0.02))
    g = fresh.gain(torch.linspace(0, 1, 11))[:, 0, 0, 0]
    assert (g[1:] > g[:-1]).all()


def test_quality_validation():
    model = SAMIC("samic-tiny")
    for bad in (1.5, -0.1, torch.tensor([0.5, 0.5, 0.5])):
        with pytest.raises(ValueError, match="quality"):
            model.quality_tensor(bad, batch=2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 8, 8))


def test_training_step_end_to_end():
    model = SAMIC(FULL_TINY).train()
    model.set_gumbel_temperature(0.7)
    x = torch.rand(2, 3, 64, 48)
    out = model(x, quality=torch.tensor([0.2, 0.8]))
    bpp = sum(-torch.log2(lik).sum() for lik in out.likelihoods.values()) / (2 * 64 * 48)
    loss = torch.nn.functional.mse_loss(out.x_hat, x) + 0.01 * bpp
    assert torch.isfinite(loss)
    (loss + model.aux_loss()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    assert all(block.router.tau.item() == pytest.approx(0.7) for block in model.samb_blocks())


def test_perceptual_decoder():
    model = SAMIC("samic-tiny").eval()
    with pytest.raises(ValueError, match="no perceptual decoder"):
        model.decoder("perceptual")
    assert model.decoders == ("mse",)
    model.add_perceptual_decoder()
    assert model.decoders == ("mse", "perceptual")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():  # a copy of the MSE decoder until it is trained
        assert torch.equal(model(x, decoder="perceptual").x_hat, model(x).x_hat)
    assert model.params_by_part()["g_s_perceptual"] == model.params_by_part()["g_s"]


def test_pad_to_multiple_replicates():
    for size in [(1, 1), (1, 5), (3, 70), (64, 64)]:
        x = torch.rand(1, 3, *size)
        padded = pad_to_multiple(x)
        assert padded.shape[-2:] == tuple(-(-s // 64) * 64 for s in size)
        assert torch.equal(padded[..., :size[0], :size[1]], x)
        assert torch.equal(padded[..., -1, -1], x[..., -1, -1])  # replicate: the corner extends


@pytest.mark.parametrize("name", ["samic-tiny", "samic-paper"])
def test_info_json(name):
    result = subprocess.run([sys.executable, "-m", "samic.cli", "info", "--model", name, "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert {"name", "params", "params_by_part", "scan_backends"} <= set(info)
    assert info["name"] == name
    assert {"g_a", "g_s", "h_a", "h_s", "entropy"} <= set(info["params_by_part"])
    assert info["params"] == sum(info["params_by_part"].values()) == n_params(SAMIC(name))
    assert {"reference", "torch"} <= set(info["scan_backends"])


def test_info_unknown_model():
    result = subprocess.run([sys.executable, "-m", "samic.cli", "info", "--model", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown model" in result.stderr and "Traceback" not in result.stderr
