"""Entropy models: factorized prior, Gaussian conditional, channel-wise AR model."""
import math

import pytest
import torch

from samic.entropy.models import LIKELIHOOD_BOUND, ChannelARM, EntropyBottleneck, GaussianConditional

pytestmark = pytest.mark.usefixtures("fresh_seed")


def fit_quantiles(bottleneck: EntropyBottleneck, steps: int = 300) -> list[float]:
    """Optimize only the quantiles on the auxiliary loss; returns the loss history."""
    optimizer = torch.optim.Adam([bottleneck.quantiles], lr=1.0)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = bottleneck.aux_loss()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("training", [True, False])
def test_bottleneck_likelihoods_in_unit_interval(training):
    bottleneck = EntropyBottleneck(4).train(training)
    z = 5 * torch.randn(2, 4, 6, 7)
    z_hat, likelihoods = bottleneck(z)
    assert z_hat.shape == likelihoods.shape == z.shape
    assert ((likelihoods >= LIKELIHOOD_BOUND) & (likelihoods <= 1)).all()
    if training:
        assert ((z_hat - z).abs() <= 0.5).all() and not torch.equal(z_hat, z.round())
    else:
        assert torch.equal(z_hat - bottleneck.medians[None, :, None, None],
                           (z_hat - bottleneck.medians[None, :, None, None]).round())


def test_aux_loss_decreases_and_pmf_table_is_normalized():
    bottleneck = EntropyBottleneck(3)
    with torch.no_grad():  # a non-trivial density: random filters
        for p in bottleneck.parameters():
            if p is not bottleneck.quantiles:
                p.add_(0.3 * torch.randn_like(p))
    losses = fit_quantiles(bottleneck)
    assert losses[-1] < 0.2 * losses[0]
    assert sum(losses[-10:]) < sum(losses[:10])
    offsets, pmfs, medians = bottleneck.pmf_table()
    assert len(pmfs) == 3 and offsets.shape == medians.shape == (3,)
    for c, pmf in enumerate(pmfs):
        assert (pmf >= 0).all() and 1 - 1e-3 < pmf.sum() <= 1 + 1e-9, (c, pmf.sum())
        # the table is the module's own likelihood of the integer support
        support = torch.arange(len(pmf), dtype=torch.float32) + float(offsets[c]) + float(medians[c])
        z = torch.full((1, 3, 1, len(pmf)), float(medians[0]))
        z[0, c, 0] = support
        lik = bottleneck.likelihood(z)[0, c, 0].double()
        assert torch.allclose(lik, torch.from_numpy(pmf).clamp_min(LIKELIHOOD_BOUND), rtol=1e-3, atol=1e-7)


def test_gaussian_conditional_matches_discretized_gaussian():
    gaussian = GaussianConditional()
    y = 4 * torch.randn(500, dtype=torch.float64)
    means = torch.randn(500, dtype=torch.float64)
    y_hat = torch.round(y - means) + means
    scales = torch.exp(torch.empty(500, dtype=torch.float64).uniform_(math.log(0.2), math.log(20.0)))
    lik = gaussian.likelihood(y_hat, scales, means)

    def cdf(v, s):
        return 0.5 * (1 + math.erf(v / (s * math.sqrt(2))))

    expected = torch.tensor([max(cdf(v + 0.5 - m, s) - cdf(v - 0.5 - m, s), LIKELIHOOD_BOUND)
                             for v, m, s in zip(y_hat.tolist(), means.tolist(), scales.tolist())], dtype=torch.float64)
    assert torch.allclose(lik, expected, rtol=1e-6, atol=1e-12)
    assert ((lik > 0) & (lik <= 1)).all()
    # scales below the bound are treated as the bound
    small = gaussian.likelihood(y_hat, torch.full_like(scales, 1e-3), means)
    assert torch.allclose(small, gaussian.likelihood(y_hat, torch.full_like(scales, gaussian.scale_bound), means))


def test_likelihood_bound_passes_gradient_upwards():
    """Likelihoods stuck at the bound still get a gradient that raises them (CompressAI's LowerBound)."""
    gaussian = GaussianConditional()
    scales = torch.full((4,), 0.2, requires_grad=True)
    # in the tail (P ~ 4e-36 < bound), but not so far that float32's erfc underflows to 0
    lik = gaussian.likelihood(torch.full((4,), 3.0), scales, torch.zeros(4))
    assert (lik == LIKELIHOOD_BOUND).all()
    (-torch.log2(lik).sum()).backward()
    assert (scales.grad < 0).all()  # increasing the scale lowers the rate


def make_charm(channels=8, slices=4):
    return ChannelARM(channels, slices, hidden=(8, 8)), GaussianConditional()


@pytest.mark.parametrize("training", [True, False])
def test_charm_shapes(training):
    charm, gaussian = make_charm()
    charm.train(training)
    y, hyper_means, hyper_scales = (torch.randn(2, 8, 5, 3) for _ in range(3))
    y_hat, likelihoods, means, scales = charm(y, hyper_means, hyper_scales, gaussian)
    for t in (y_hat, likelihoods, means, scales):
        assert t.shape == y.shape and torch.isfinite(t).all()
    assert ((likelihoods > 0) & (likelihoods <= 1)).all()
    # y_hat = round(y - mean) + mean + LRP with |LRP| <= 0.5
    residual = y_hat - (torch.round(y - means) + means)
    assert (residual.abs() <= 0.5 + 1e-6).all()


def test_charm_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="not divisible"):
        ChannelARM(10, 4, (8, 8))


def test_charm_is_causal_over_slices():
    """Slice i's mean and scale depend on y slices < i only: perturbing slice j changes the
    parameters of slices > j and leaves slices <= j untouched."""
    charm, gaussian = make_charm(channels=8, slices=4)
    charm.eval()
    y, hyper_means, hyper_scales = (3 * torch.randn(1, 8, 4, 4) for _ in range(3))
    _, _, means, scales = charm(y, hyper_means, hyper_scales, gaussian)
    width = charm.slice_channels
    for j in range(4):
        y2 = y.clone()
        y2[:, j * width:(j + 1) * width] += 5 * torch.randn(1, width, 4, 4)
        _, _, means2, scales2 = charm(y2, hyper_means, hyper_scales, gaussian)
        for i in range(4):
            sl = slice(i * width, (i + 1) * width)
            unchanged = torch.equal(means[:, sl], means2[:, sl]) and torch.equal(scales[:, sl], scales2[:, sl])
            assert unchanged == (i <= j), (i, j)
