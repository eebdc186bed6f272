"""SAMB: shapes, clustering intermediates, determinism, gradients through the router."""
import pytest
import torch

from samic.layers.samb import SAMB, SemanticRouter, positional_encoding_2d

pytestmark = pytest.mark.usefixtures("fresh_seed")

K = 4


def make_block(directions=1, dim=8, **kwargs):
    return SAMB(dim, d_state=4, expand=1.5, n_clusters=K, directions=directions, **kwargs)


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (5, 3), (6, 11)])
def test_shapes_and_intermediates(directions, size):
    height, width = size
    block = make_block(directions).eval()
    x = torch.randn(2, 8, height, width)
    out, inter = block(x, return_intermediates=True)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert block(x)[1] is None  # intermediates only when asked

    assert inter.assignment.shape == (2, height, width) and inter.assignment.dtype == torch.int64
    assert ((inter.assignment >= 0) & (inter.assignment < K)).all()
    assert inter.probs.shape == (2, K, height, width)
    assert (inter.probs >= 0).all() and torch.allclose(inter.probs.sum(1), torch.ones(2, height, width))
    # eval: the hard assignment is the argmax of the (noise-free) probabilities
    assert torch.equal(inter.assignment, inter.probs.argmax(1))

    order = inter.order
    assert order.shape == (2, height * width)
    for b in range(2):
        assert torch.equal(order[b].sort().values, torch.arange(height * width))  # a permutation
        ids = inter.assignment[b].flatten()[order[b]]
        assert (ids[1:] >= ids[:-1]).all()  # grouped by cluster ...
        same = ids[1:] == ids[:-1]
        assert (order[b][1:][same] > order[b][:-1][same]).all()  # ... raster order inside (stable)


def test_eval_is_deterministic_and_training_is_stochastic():
    block = make_block(2)
    block.router.tau.fill_(5.0)  # hot temperature: the Gumbel noise surely flips some tokens
    x = torch.randn(1, 8, 12, 12)
    block.eval()
    out1, inter1 = block(x, return_intermediates=True)
    out2, inter2 = block(x, return_intermediates=True)
    assert torch.equal(out1, out2) and torch.equal(inter1.assignment, inter2.assignment)
    block.train()
    block.router.centres_ready.fill_(True)  # keep the centres where they are: only the noise varies
    block.router.momentum = 1.0
    assignments = [block(x, return_intermediates=True)[1].assignment for _ in range(3)]
    assert any(not torch.equal(a, inter1.assignment) for a in assignments)
    # the probabilities shown are noise-free in both modes
    assert torch.allclose(block(x, return_intermediates=True)[1].probs, inter1.probs, atol=1e-6)


def test_gradients_reach_router_and_prompt():
    """The hard assignment is straight-through: the loss reaches the router's positional
    projection and gate, its scale and the cluster prompt (through the scan's C). The cluster
    centres are k-means running means, not gradient-trained."""
    block = make_block(1).train()
    x = torch.randn(2, 8, 6, 7, requires_grad=True)
    out, _ = block(x)
    (out * torch.randn_like(out)).sum().backward()
    for name in ("router.pos_gate", "router.pos_proj.weight", "router.logit_scale", "cluster_prompt",
                 "A_log", "dt_proj", "dt_bias", "D", "x_proj.weight", "in_proj.weight"):
        grad = dict(block.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()


def test_positional_encoding_drives_clusters_of_featureless_tokens():
    """With featureless tokens the router sees only the 2D position: the two-octave encoding
    splits the grid into a few large, spatially coherent regions. Without the positional term
    every such token falls into one cluster."""
    router = SemanticRouter(dim=16, n_clusters=8).eval()
    with torch.no_grad():
        router.pos_gate.fill_(1.0)
    height, width = 48, 48
    _, ids, _ = router(torch.zeros(1, height * width, 16), height, width)
    ids = ids.view(height, width)
    assert ids.unique().numel() > 1
    neighbours = torch.cat([(ids[1:] == ids[:-1]).flatten(), (ids[:, 1:] == ids[:, :-1]).flatten()]).float().mean()
    random_pairs = (ids.flatten() == ids.flatten()[torch.randperm(height * width)]).float().mean()
    assert neighbours > 0.9 and neighbours > random_pairs + 0.3
    with torch.no_grad():
        router.pos_gate.zero_()
    _, ids, _ = router(torch.zeros(1, height * width, 16), height, width)
    assert ids.unique().numel() == 1


def _three_region_tokens(height=24, width=24, dim=16, shift=0, noise=0.3, seed=0):
    """Tokens (1, H*W, D) of three regions (left, top right, bottom right), each around its
    own random centre plus a large component all tokens share; the region map (H, W)."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(3, dim, generator=gen)
    shared = 20 * torch.randn(dim, generator=gen)
    cols = torch.arange(width) + shift
    regions = torch.where(cols[None, :] < width // 2, 0, torch.where(torch.arange(height)[:, None] < height // 2, 1, 2))
    tokens = shared + centres[regions] + noise * torch.randn(height, width, dim, generator=gen)
    return tokens.reshape(1, height * width, dim), regions


def test_router_centres_learn_the_content_regions_despite_a_shared_component():
    """Training steps seed the centres by k-means++ and move them as running means: the
    clusters then follow the three content regions (one cluster per region), although a
    shared component 7x larger than the regions' differences sits in every token."""
    router = SemanticRouter(dim=16, n_clusters=3, smooth=1).train()
    router.tau.fill_(0.1)
    tokens, regions = _three_region_tokens()
    assert not bool(router.centres_ready)
    for _ in range(20):
        router(tokens, 24, 24)
    assert bool(router.centres_ready)
    router.eval()
    _, ids, _ = router(tokens, 24, 24)
    ids = ids.view(24, 24)
    for r in range(3):  # each region is one cluster, and the three clusters differ
        assert (ids[regions == r] == ids[regions == r][0]).float().mean() > 0.95
    assert len({int(ids[regions == r].mode().values) for r in range(3)}) == 3
    assert torch.allclose(router.usage.sum(), torch.tensor(1.0), atol=1e-4)


def test_router_reseeds_an_unused_centre():
    router = SemanticRouter(dim=16, n_clusters=4, smooth=1).train()
    tokens, _ = _three_region_tokens()
    router(tokens, 24, 24)
    with torch.no_grad():
        router.centres[3] = -router.centres[:3].mean(0)  # far from every token: never chosen
        router.centres[3] /= router.centres[3].norm()
        router.usage[3] = 0.0
    before = router.centres[3].clone()
    router(tokens, 24, 24)
    assert not torch.allclose(router.centres[3], before)
    assert router.usage[3] == pytest.approx(0.25)


def test_router_clusters_move_with_the_content():
    """Shift-equivariance: shifting the content by 3 tokens moves the clusters with it."""
    torch.manual_seed(0)  # k-means++ draws
    router = SemanticRouter(dim=16, n_clusters=3, smooth=1).eval()
    tokens, regions = _three_region_tokens(shift=0)
    router.fit_centres(router.queries(tokens, 24, 24)[0])
    shifted, shifted_regions = _three_region_tokens(shift=3)
    ids = router(tokens, 24, 24)[1].view(24, 24)
    ids_shifted = router(shifted, 24, 24)[1].view(24, 24)
    assert not torch.equal(shifted_regions, regions)
    assert (ids_shifted[:, :-3] == ids[:, 3:]).float().mean() > 0.95  # realigned
    assert (ids_shifted == ids).float().mean() < 0.95  # not locked to the grid


def test_first_design_router_weights_load_with_fresh_router_state():
    """Weights saved with the first router (LayerNorm, 6-octave PE, prototypes) still load."""
    block = make_block(1)
    state = block.state_dict()
    prefix = "router."
    for key in [k for k in state if k.startswith(prefix)]:
        del state[key]
    di = block.d_inner
    state.update({prefix + "norm.weight": torch.ones(di), prefix + "norm.bias": torch.zeros(di),
                  prefix + "pos_proj.weight": torch.zeros(di, 24), prefix + "pos_proj.bias": torch.zeros(di),
                  prefix + "prototypes": torch.randn(K, di), prefix + "logit_scale": torch.tensor(2.0)})
    fresh = make_block(1)
    fresh.load_state_dict(state)
    assert fresh.router.logit_scale.item() == 2.0 and not bool(fresh.router.centres_ready)
    assert fresh.router.pos_proj.weight.shape == (di, 8)
    # the same in every process: nothing comes from the global random generator
    torch.manual_seed(123)
    other = make_block(1)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), other.state_dict().values()))


def test_positional_encoding_2d():
    enc = positional_encoding_2d(3, 5, n_freqs=2)
    assert enc.shape == (15, 8) and torch.isfinite(enc).all()
    assert enc.unique(dim=0).shape[0] == 15  # every position distinct
    # normalized coordinates: the centre of a 1x1 and of a 3x3 grid get the same code
    assert torch.allclose(positional_encoding_2d(1, 1, 3)[0], positional_encoding_2d(3, 3, 3)[4], atol=1e-6)


def test_directions_validated():
    with pytest.raises(ValueError, match="directions must be 1 or 2"):
        make_block(3)


def test_float64_runs():
    block = make_block(2).double().eval()
    x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
    out, _ = block(x)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_scan_orders_are_permutations_and_follow_the_setting():
    """semantic groups by cluster; raster is the identity; random is a fixed permutation that
    depends only on the seed and the length (an encoder and a decoder draw the same one)."""
    from samic.layers.samb import ScanSettings, scan_permutation

    ids = torch.tensor([[2, 0, 1, 0, 2, 1, 0]])
    assert scan_permutation(ids, ScanSettings()).tolist() == [[1, 3, 6, 2, 5, 0, 4]]
    assert scan_permutation(ids, ScanSettings(order="raster")).tolist() == [list(range(7))]
    random1 = scan_permutation(ids, ScanSettings(order="random", seed=3))
    assert sorted(random1[0].tolist()) == list(range(7))
    assert torch.equal(random1, scan_permutation(ids.flip(1), ScanSettings(order="random", seed=3)))
    assert not torch.equal(random1, scan_permutation(ids, ScanSettings(order="random", seed=4)))
    with pytest.raises(ValueError, match="unknown scan order"):
        ScanSettings(order="zigzag").validated()


def test_scan_order_changes_the_output_and_the_stateless_ablation_is_the_skip_term():
    block = make_block(2).eval()
    x = torch.randn(1, 8, 9, 9)
    from samic.layers.samb import ScanSettings

    outs = {o: block(x, scan=ScanSettings(order=o))[0] for o in ("semantic", "raster", "random")}
    assert not torch.allclose(outs["semantic"], outs["raster"])
    assert not torch.allclose(outs["raster"], outs["random"])
    _, inter = block(x, return_intermediates=True, scan=ScanSettings(order="raster"))
    assert torch.equal(inter.order[0], torch.arange(81))
    # state-less: B = 0 makes the recurrence add nothing, leaving each direction's D * u
    stateless = block(x, scan=ScanSettings(recurrence=False))[0]
    with torch.no_grad():
        block.x_proj.weight.view(2, -1, block.d_inner)[:, block.dt_rank:block.dt_rank + block.d_state].zero_()
    assert torch.allclose(block(x)[0], stateless, atol=1e-5)
    # scan output zeroed: the block is the gated residual of nothing, plus its FFN
    zeroed = block(x, scan=ScanSettings(recurrence=False, skip=False))[0]
    with torch.no_grad():
        block.D.zero_()
    assert torch.allclose(block(x, scan=ScanSettings(recurrence=False))[0], zeroed)
    with pytest.raises(ValueError, match="needs recurrence=False"):
        ScanSettings(skip=False).validated()


def test_fit_router_centres_seeds_every_router_and_changes_no_other_weight():
    from samic.models import SAMIC
    from samic.train.centres import fit_router_centres

    model = SAMIC("samic-tiny").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.rand(2, 3, 64, 64) for _ in range(3)]
    assert fit_router_centres(model, batches) == 3
    assert not model.training and all(not b.router.training for b in model.samb_blocks())
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".router.centres" in k or ".router.usage" in k for k in changed)
    assert all(bool(b.router.centres_ready) for b in model.samb_blocks())
    again = SAMIC("samic-tiny").eval()
    again.load_state_dict(before)
    fit_router_centres(again, batches)  # the same data gives the same centres
    assert all(torch.equal(a.router.centres, b.router.centres)
               for a, b in zip(model.samb_blocks(), again.samb_blocks()))
