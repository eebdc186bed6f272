"""samic.bench.clusters and samic.bench.scan_ablation on constructed inputs: a position lattice,
content-following clusters and random labels; fake models whose maps are positional or follow
the content (the shift and pairing logic end to end); `samic bench clusters` and
`samic bench scan-ablation` with the samic-tiny preset on generated photos."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from samic.bench.clusters import (cluster_maps, cluster_statistics, cohen_kappa, colour_segmentation,
                                  effective_clusters, format_table, kmeans, neighbour_kappa, nmi, nmi_chance,
                                  shift_image, shift_test, slic_segmentation, token_lab)
from samic.bench.scan_ablation import INTACT, VARIANTS, rd_point
from samic.layers.samb import SAMBIntermediates, ScanSettings

K = 16
PALETTE = np.array([[230, 40, 40], [40, 200, 60], [40, 60, 220], [240, 230, 60], [30, 30, 30], [250, 250, 250]],
                   dtype=np.uint8)


def lattice(h: int, w: int) -> np.ndarray:
    """A map fixed by position: neighbours never share a cluster."""
    i, j = np.mgrid[:h, :w]
    return (3 * i + 5 * j) % K


def blobs(h: int, w: int, n: int = 12, seed: int = 0) -> np.ndarray:
    """A content-like map: Voronoi regions of n random seeds, labels 0..5."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform([0, 0], [h, w], size=(n, 2))
    i, j = np.mgrid[:h, :w]
    nearest = ((i[..., None] - centres[:, 0]) ** 2 + (j[..., None] - centres[:, 1]) ** 2).argmin(-1)
    return nearest % len(PALETTE)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A generated photo (h, w, 3) uint8: palette-coloured regions whose edges cut through tokens."""
    return PALETTE[blobs(h, w, seed=seed)]


# ----------------------------------------------------------------------------- pure statistics
def test_kappa_nmi_effective_on_simple_maps():
    a = np.array([[0, 0, 1, 1]])
    assert cohen_kappa(a, a) == 1.0 and nmi(a, a) == 1.0
    assert cohen_kappa(a, 1 - a) == pytest.approx(-1.0)
    assert nmi(a, 1 - a) == pytest.approx(1.0)  # the same partition, other label values
    assert effective_clusters(a) == pytest.approx(2.0)
    one = np.zeros((3, 3), dtype=int)
    assert cohen_kappa(one, one) == 1.0 and nmi(one, one) == 1.0 and neighbour_kappa(one) == 1.0
    assert effective_clusters(one) == pytest.approx(1.0)
    assert nmi(one, lattice(3, 3)) == 0.0
    with pytest.raises(ValueError):
        cohen_kappa(a, a[:, :3])


def test_position_lattice():
    grid = lattice(32, 48)
    images = [grid.copy() for _ in range(3)]  # the same map whatever the photo
    assert all(cohen_kappa(images[0], other) == 1.0 for other in images[1:])
    for axis, shifted in (("cols", lattice(32, 47)), ("rows", lattice(31, 48))):
        t = shift_test(grid, shifted, axis)
        assert t.grid_locked == 1.0
        assert t.realigned < 0.05
    assert neighbour_kappa(grid) < 0


def test_content_following_clusters():
    content = blobs(33, 49)
    original = content[:32, :48]
    for axis, shifted in (("cols", content[:32, 1:49]), ("rows", content[1:33, :48])):
        t = shift_test(original, shifted, axis)
        assert t.realigned == 1.0
        assert t.grid_locked < 0.95
    assert neighbour_kappa(original) > 0.7
    # a colour segmentation of a photo painted by those regions recovers them
    stride = 4
    rgb = np.kron(PALETTE[original], np.ones((stride, stride, 1), dtype=np.uint8))
    relabelled = (original * 7 + 3) % K  # cluster ids are arbitrary
    assert nmi(relabelled, colour_segmentation(rgb, stride, original.shape)) > 0.99
    assert nmi(lattice(32, 48), colour_segmentation(rgb, stride, original.shape)) < 0.1


def test_random_labels():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, K, (128, 192)), rng.integers(0, K, (128, 192))
    assert abs(cohen_kappa(a, b)) < 0.02
    assert nmi(a, b) < 0.01
    assert abs(neighbour_kappa(a)) < 0.02
    assert effective_clusters(a) > 15.9
    t = shift_test(a, rng.integers(0, K, (128, 191)), "cols")
    assert abs(t.realigned) < 0.02 and abs(t.grid_locked) < 0.02
    small = rng.integers(0, K, (16, 24))  # NMI's chance level is high on small grids
    assert nmi_chance(small, rng.integers(0, K, (16, 24))) > 0.05


def test_colour_references():
    rgb = photo(64, 96)
    lab = token_lab(rgb, 8, (8, 12))
    assert lab.shape == (8, 12, 3)
    assert np.allclose(lab[..., 0].mean(), token_lab(rgb, 1, (64, 96))[..., 0].mean())
    points = np.array([[0.0], [0.1], [10.0], [10.1]])
    labels = kmeans(points, k=2, seed=3)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert len(set(kmeans(points, k=16, seed=3))) == 4  # no more clusters than distinct points
    seg = slic_segmentation(rgb, 8, (8, 12))
    assert seg.shape == (8, 12) and seg.dtype.kind == "i"
    with pytest.raises(ValueError):
        token_lab(rgb, 8, (9, 12))


def test_shift_image_moves_content_by_one_token():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    assert torch.equal(shift_image(x, 4, "cols")[..., 0], x[..., 4])
    assert torch.equal(shift_image(x, 4, "rows")[..., 0, :], x[..., 4, :])


# ----------------------------------------------------------------------------- fake models end to end
class FakeModel(torch.nn.Module):
    """SAMIC's interface with one 'SAMB' at stride 4 whose clusters are the palette colour
    nearest each token's mean colour (content) or a lattice of grid positions (position)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(n_clusters=K)

    def forward(self, x, quality=None, return_intermediates=False, scan=ScanSettings()):
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % 16, 0, -height % 16))
        pooled = F.avg_pool2d(x, 4) * 255  # (B, 3, h, w)
        if self.kind == "content":
            palette = torch.as_tensor(PALETTE, dtype=torch.float32)
            ids = ((pooled[:, :, None] - palette.T[None, :, :, None, None]) ** 2).sum(1).argmin(1)
        else:
            ids = torch.as_tensor(lattice(*pooled.shape[-2:])).expand(x.shape[0], -1, -1)
        probs = F.one_hot(ids, K).permute(0, 3, 1, 2).float()
        inter = SAMBIntermediates(assignment=ids, probs=probs, order=ids.flatten(1).argsort(dim=1, stable=True))
        return SimpleNamespace(original_size=(height, width), padded_size=tuple(x.shape[-2:]),
                               intermediates=SimpleNamespace(samb={"block": inter}))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i, (h, w) in enumerate([(72, 100), (72, 100), (100, 72)]):
        Image.fromarray(photo(h, w, seed=i)).save(folder / f"p{i}.png")
    return sorted(folder.glob("*.png"))


def test_statistics_of_content_following_maps(photos):
    report = cluster_statistics(FakeModel("content"), photos, slic=False)
    [block] = report.blocks
    assert block.stride == 4 and block.n_images == 3 and block.n_pairs == 1  # only p0/p1 share a size
    assert block.shift_realigned == 1.0
    assert block.shift_grid_locked < 0.95
    assert block.nmi_colour > 0.75  # tokens across region edges have mixed colours
    assert block.cross_image_kappa < 0.5
    assert {s.grid for s in report.per_image} == {(18, 25), (25, 18)}  # padding tokens dropped
    assert "block" in format_table(report)


def test_statistics_of_positional_maps(photos):
    report = cluster_statistics(FakeModel("position"), photos)
    [block] = report.blocks
    assert block.cross_image_kappa == 1.0
    assert block.shift_grid_locked == 1.0 and block.shift_realigned < 0.05
    assert block.nmi_colour < 0.3 and block.nmi_slic is not None
    assert block.effective_clusters > 15


# ----------------------------------------------------------------------------- the real model, the CLI
def test_tiny_model_maps_and_scan_variants():
    from samic.models import SAMIC

    torch.manual_seed(0)
    model = SAMIC("samic-tiny").eval()
    x = torch.from_numpy(photo(64, 96)).permute(2, 0, 1)[None].float() / 255
    maps = cluster_maps(model, x)
    assert {name: m.stride for name, m in maps.items()} == {
        "g_a.stage3": 8, "h_a.samb": 32, "h_s.samb": 32, "g_s.stage3": 8}
    assert maps["g_a.stage3"].labels.shape == (8, 12)
    points = {name: rd_point(model, x, 0.5, scan) for name, scan in VARIANTS.items()}
    bpp, psnr = points[INTACT]
    assert bpp.shape == (1,) and bpp[0] > 0 and np.isfinite(psnr[0])
    assert points["no-recurrence"][1][0] != psnr[0]  # the ablation reaches the model


def samic_bench(*args) -> tuple[int, str]:
    import contextlib
    import io

    from samic.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", *map(str, args)])
    return code, out.getvalue()


def test_cli_clusters_and_scan_ablation(photos, capsys):
    folder = photos[0].parent
    code, out = samic_bench("clusters", "--dataset", folder, "--model", "samic-tiny", "--limit", 2, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["images"] == ["p0.png", "p1.png"]
    assert [b["block"] for b in report["blocks"]] == ["g_a.stage3", "h_a.samb", "h_s.samb", "g_s.stage3"]
    assert all(b["n_pairs"] == 1 and 1 <= b["effective_clusters"] <= K for b in report["blocks"])

    code, out = samic_bench("scan-ablation", "--dataset", folder, "--model", "samic-tiny", "--limit", 1,
                            "--qualities", 0, 0.3, 0.7, 1, "--json")
    assert code == 0
    report = json.loads(out)
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == set(VARIANTS)
    assert variants[INTACT]["bd_rate_psnr"] is None
    for v in variants.values():
        assert [p["quality"] for p in v["points"]] == [0, 0.3, 0.7, 1] and v["at_quality"]["quality"] == 0.5
        if v["name"] != INTACT:  # random weights need not give a monotone curve: then a reason
            assert (v["bd_rate_psnr"] is None) == (v["bd_note"] is not None)

    code, _ = samic_bench("clusters", "--dataset", folder / "missing")
    assert code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_reports_read_back_from_their_json(tmp_path):
    """docs/results.md is generated from the benches' JSON files: a report survives the trip."""
    import json
    from dataclasses import asdict

    from samic.bench import clusters, scan_ablation

    block = clusters.BlockStats("g_a.stage2", 4, 2, 1, 0.1, 0.9, 0.5, 0.4, 0.01, None, 0.6, 11.0)
    report = clusters.ClusterReport(0.5, {"order": "semantic"}, ["a.png", "b.png"], 16, ["rows"], [block], [], [])
    again = clusters.ClusterReport.from_dict(json.loads(json.dumps(asdict(report))))
    assert again == report and clusters.format_table(again) == clusters.format_table(report)

    point = scan_ablation.RDPoint(0.5, 0.2, 26.3)
    variant = scan_ablation.VariantResult("semantic", {"order": "semantic"}, [point], point, None)
    ablation = scan_ablation.ScanAblationReport(["a.png"], [0.5], 0.5, [variant], [])
    again = scan_ablation.ScanAblationReport.from_dict(json.loads(json.dumps(asdict(ablation))))
    assert again == ablation and scan_ablation.format_table(again) == scan_ablation.format_table(ablation)
