"""SVD-RRM: its spectrum, the soft threshold, identity limits, and its custom backward."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import relative_error
from samic.layers.svd_rrm import SVDRRM, _GramShrink, symmetric_eigh

pytestmark = pytest.mark.usefixtures("fresh_seed")


def svd_reference(module: SVDRRM, y: torch.Tensor) -> torch.Tensor:
    """The module's function written with a plain SVD of X / sqrt(HW) (X = C x HW), with
    the same choice as the module: tau relative to the largest singular value, detached."""
    batch, channels, height, width = y.shape
    n = height * width
    U, S, Vh = torch.linalg.svd(y.reshape(batch, channels, n) / math.sqrt(n), full_matrices=False)
    tau = module.relative_threshold() * S[:, :1].detach()
    low_rank = (U * F.relu(S - tau)[:, None, :]) @ Vh * math.sqrt(n)
    mix = torch.sigmoid(module.mix_logit)[None, :, None, None]
    return y + mix * (low_rank.reshape_as(y) - y)


def random_module(channels: int) -> SVDRRM:
    module = SVDRRM(channels).double()
    with torch.no_grad():
        module.threshold_param.fill_(torch.empty(()).uniform_(-3.0, 0.0).item())  # tau 5-50% of s_max
        module.mix_logit.normal_()
    return module


@pytest.mark.parametrize("shape", [(2, 6, 4, 5), (1, 8, 2, 3), (3, 4, 1, 1)])  # C > HW: rank-deficient
def test_spectrum_matches_svdvals(shape):
    module = random_module(shape[1])
    y = torch.randn(*shape, dtype=torch.float64)
    _, spectrum = module(y, return_intermediates=True)
    n = shape[2] * shape[3]
    expected = torch.linalg.svdvals(y.reshape(shape[0], shape[1], n))  # C x HW, descending
    if expected.shape[1] < shape[1]:  # C > HW: the Gram matrix has C - HW zero eigenvalues
        expected = F.pad(expected, (0, shape[1] - expected.shape[1]))
    s = spectrum.singular_values.double()
    assert s.shape == (shape[0], shape[1])
    assert torch.allclose(s, expected / math.sqrt(n), atol=1e-5, rtol=1e-5)  # Gram / (HW)
    tau = spectrum.threshold.double()
    assert torch.allclose(tau, module.relative_threshold().detach() * s[:, 0], rtol=1e-6)
    assert torch.allclose(spectrum.thresholded.double(), (s - tau[:, None]).clamp_min(0), atol=1e-6)


def test_output_and_gradients_match_svd_reference():
    module = random_module(6)
    y = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn_like(y)
    grads = []
    for fn in (lambda y: module(y)[0], lambda y: svd_reference(module, y)):
        module.zero_grad()
        y.grad = None
        out = fn(y)
        (out * weight).sum().backward()
        grads.append((out.detach(), y.grad.clone(), module.threshold_param.grad.clone(), module.mix_logit.grad.clone()))
    for name, a, b in zip(("output", "grad y", "grad threshold", "grad mix"), *grads):
        assert relative_error(a, b) < 1e-8, name


def test_identity_with_full_mix_and_zero_threshold():
    module = SVDRRM(5)
    with torch.no_grad():
        module.threshold_param.fill_(-float("inf"))  # softplus -> tau = 0
        module.mix_logit.fill_(float("inf"))  # sigmoid -> mix = 1: output is the low-rank part only
    for shape in [(2, 5, 4, 4), (1, 5, 2, 1)]:  # full rank and rank-deficient (HW < C)
        y = torch.randn(*shape)
        out, spectrum = module(y, return_intermediates=True)
        assert torch.allclose(out, y, atol=1e-5), shape
        assert torch.equal(spectrum.thresholded, spectrum.singular_values)


def test_threshold_lowers_rank():
    module = SVDRRM(6)
    with torch.no_grad():
        module.threshold_param.fill_(math.log(math.expm1(0.5)))  # tau = s_max / 2
        module.mix_logit.fill_(float("inf"))
    y = torch.randn(1, 6, 8, 8) * 2.0 ** -torch.arange(6.0)[:, None, None]  # a decaying spectrum
    out, spectrum = module(y, return_intermediates=True)
    rank = (spectrum.thresholded > 0).sum().item()
    assert 1 <= rank < 6
    assert torch.linalg.matrix_rank(out.reshape(6, 64).double(), atol=1e-4).item() == rank


def test_gram_shrink_gradcheck():
    """The Daleckii-Krein backward of U f(lambda) U^T, through X -> Gram(X) so that the
    perturbations keep the matrix symmetric, and w.r.t. an absolute tau."""
    def low_rank(x, tau):
        gram = x @ x.transpose(1, 2) / x.shape[-1]
        eigvals, eigvecs = symmetric_eigh(gram)
        return _GramShrink.apply(gram, tau, eigvals, eigvecs, 1e-12) @ x

    x = torch.randn(2, 4, 7, dtype=torch.float64, requires_grad=True)
    s_max = torch.linalg.svdvals(x.detach() / math.sqrt(7))[:, 0]
    tau = (torch.tensor([0.2, 0.45], dtype=torch.float64) * s_max).requires_grad_()
    assert torch.autograd.gradcheck(low_rank, (x, tau))


def test_module_gradcheck_wrt_parameters():
    module = random_module(4)
    y = torch.randn(2, 4, 3, 3, dtype=torch.float64)

    def fn(threshold_param, mix_logit):
        module.threshold_param, module.mix_logit = threshold_param, mix_logit
        return module(y)[0]

    params = tuple(p.detach().clone().requires_grad_() for p in (module.threshold_param, module.mix_logit))
    del module.threshold_param, module.mix_logit  # plain attributes, so that gradcheck can substitute them
    assert torch.autograd.gradcheck(fn, params)


@pytest.mark.parametrize("case", ["zeros", "rank one", "repeated", "HW < C"])
def test_gradients_finite_in_degenerate_cases(case):
    channels = 6
    if case == "zeros":
        y = torch.zeros(2, channels, 3, 4)
    elif case == "rank one":
        y = torch.randn(2, 1, 3, 4).repeat(1, channels, 1, 1)
    elif case == "repeated":  # orthogonal rows of equal norm: all singular values equal
        y = (3 * torch.eye(12)[:channels]).reshape(1, channels, 3, 4).repeat(2, 1, 1, 1)
    else:
        y = torch.randn(2, channels, 2, 2)
    module = SVDRRM(channels)
    y.requires_grad_()
    out, _ = module(y)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for name, grad in (("y", y.grad), ("threshold", module.threshold_param.grad), ("mix", module.mix_logit.grad)):
        assert grad is not None and torch.isfinite(grad).all(), name
