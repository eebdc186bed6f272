"""SAMB: the semantic-aware Mamba block.

Tokens are softly clustered by a router that sees their content (features whitened per
image and smoothed over the token grid) plus an explicit, gated 2D positional encoding,
against k-means cluster centres; Gumbel-Softmax turns the soft assignment into a hard one
(straight-through in training, plain argmax at inference). Tokens are then stably sorted by cluster,
so each cluster is scanned as one contiguous run in raster order, and a per-cluster prompt
added to the scan's C projection lets every token read a summary of its cluster, which
relaxes the scan's strict causality (reference sections 1 and 3; cf. MambaIRv2's ASSM).

    x ─► LN ─► in_proj ─┬─► xs ─► dwconv3x3 ─► SiLU ─┬─► router(content + g·2D PE) ─► cluster ids
                        │                           └─► sort by cluster ─► selective scan ─► unsort
                        └─► z ──────────────────────────────────────────────────────► × SiLU(z)
    x + out_proj(LN(·)) ─► + FFN(LN(·))
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from samic.layers.basic import inplace_ok
from samic.ops.scan import selective_scan


SCAN_ORDERS = ("semantic", "raster", "random")


class ScanSettings(NamedTuple):
    """How SAMB scans, passed explicitly from the model call down to every block.

    order: ``semantic`` (the paper's: tokens grouped by cluster, raster inside a cluster),
    ``raster`` (row by row, ignoring the clusters) or ``random`` (a fixed permutation drawn
    from ``seed`` and the sequence length, so an encoder and a decoder draw the same one).
    recurrence: False runs the state-less ablation, y = D * u (the skip term only).
    skip: False with recurrence False zeroes the scan's output altogether (an ablation).
    backend: the selective-scan backend (see samic.ops.scan; ``auto`` picks per device).
    """

    order: str = "semantic"
    seed: int = 0
    recurrence: bool = True
    backend: str = "auto"
    skip: bool = True

    def validated(self) -> "ScanSettings":
        if self.order not in SCAN_ORDERS:
            raise ValueError(f"unknown scan order {self.order!r}; choose one of {', '.join(SCAN_ORDERS)}")
        if self.recurrence and not self.skip:
            raise ValueError("ScanSettings: skip=False (scan output zeroed) needs recurrence=False")
        return self


DEFAULT_SCAN = ScanSettings()


def scan_permutation(ids: torch.Tensor, scan: ScanSettings) -> torch.Tensor:
    """Cluster ids (B, L) -> raster indices of the tokens in scan order (B, L)."""
    batch, length = ids.shape
    if scan.order == "semantic":  # clusters contiguous, raster order inside each (stable sort)
        return torch.sort(ids, dim=1, stable=True).indices
    if scan.order == "raster":
        order = torch.arange(length, device=ids.device)
    else:  # a CPU generator: the same permutation on every device and in every process
        generator = torch.Generator().manual_seed(scan.seed * 1_000_003 + length)
        order = torch.randperm(length, generator=generator).to(ids.device)
    return order.expand(batch, length)


class SAMBIntermediates(NamedTuple):
    """What one SAMB shows about its clustering (batch B, K clusters, H x W tokens)."""

    assignment: torch.Tensor  # (B, H, W) int64 cluster id of each token
    probs: torch.Tensor  # (B, K, H, W) noise-free soft assignment probabilities
    order: torch.Tensor  # (B, H*W) int64 raster indices of the tokens in scan order


def positional_encoding_2d(height: int, width: int, n_freqs: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal encoding of normalized (row, col) in [0, 1]: (H*W, 4 * n_freqs).

    Normalized coordinates keep the encoding comparable across image sizes; octave
    frequencies from pi to 2^(n-1) pi resolve from whole-image halves to fine positions.
    """
    dtype = dtype or torch.float32  # the codec's float64 entropy path needs float64 here too
    rows = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    cols = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    freqs = math.pi * 2.0 ** torch.arange(n_freqs, device=device, dtype=dtype)
    r = rows[:, None, None] * freqs  # (H, 1, F)
    c = cols[None, :, None] * freqs  # (1, W, F)
    r, c = r.expand(height, width, n_freqs), c.expand(height, width, n_freqs)
    enc = torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=-1)
    return enc.reshape(height * width, 4 * n_freqs)


class SemanticRouter(nn.Module):
    """Soft clustering of tokens into K clusters by content, with an explicit 2D position term.

        q_i    = normalize( smooth(whiten(x))_i + g * pos_proj(PE(row_i, col_i)) )
        p(k|i) = softmax_k( s * <q_i, c_k> )          c_k: unit-norm cluster centres

    - whiten: per image and channel, centred and scaled over the tokens. Raw features are
      mostly a component every token shares; the first design (LayerNorm per token) left the
      position to decide the clusters and produced a lattice (issue 13).
    - smooth: a ``smooth`` x ``smooth`` box mean over the token grid. The synthesis side
      smooths over one latent cell, whose sub-pixel pattern is the same in every picture and
      would otherwise decide the clusters; the analysis side not at all (preset
      ``router_smooth``), which keeps its maps following the content under one-token shifts.
    - PE: ``n_freqs`` octaves from pi (halves, quarters of the image): a weak spatial prior
      whose weight g (``pos_gate``) is learned.
    - centres: spherical k-means running means of the tokens assigned to them in training
      (EMA ``momentum``), seeded by k-means (best of 4 k-means++ starts) on the first training
      batch, or by ``samic.train.centres.fit_router_centres``, and re-seeded on a
      token when their usage falls below a tenth of uniform. They take no gradient: the
      straight-through gradient reaching them through the cluster prompt is tiny.

    Training: Gumbel noise at temperature ``tau`` and a straight-through hard one-hot.
    Inference: deterministic argmax of the noise-free logits.
    """

    def __init__(self, dim: int, n_clusters: int, n_freqs: int = 2, smooth: int = 1,
                 momentum: float = 0.99, pos_gate: float = 0.1):
        super().__init__()
        self.n_clusters, self.n_freqs, self.smooth, self.momentum = n_clusters, n_freqs, smooth, momentum
        self.pos_proj = nn.Linear(4 * n_freqs, dim)
        self.pos_gate = nn.Parameter(torch.tensor(float(pos_gate)))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        # a fixed draw, not the global RNG: weights saved before the centres existed must load
        # to the same router in every process (an encoder and a decoder run h_s's SAMB alike)
        generator = torch.Generator().manual_seed(dim * 1009 + n_clusters)
        self.register_buffer("centres", F.normalize(torch.randn(n_clusters, dim, generator=generator), dim=-1))
        self.register_buffer("usage", torch.full((n_clusters,), 1.0 / n_clusters))
        self.register_buffer("centres_ready", torch.tensor(False))  # seeded from data yet?
        self.register_buffer("tau", torch.tensor(1.0), persistent=False)  # annealed by the trainer

    def content_features(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """tokens (B, L, D) -> whitened, smoothed features (B, L, D), before the position term."""
        centred = tokens - tokens.mean(1, keepdim=True)
        white = centred * torch.rsqrt(centred.pow(2).mean(1, keepdim=True) + 1e-6)
        if self.smooth > 1:  # a box mean; even sizes too (one latent cell in a decoder)
            k = self.smooth
            grid = rearrange(white, "b (h w) d -> b d h w", h=height, w=width)
            grid = F.pad(grid, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2), mode="replicate")
            white = rearrange(F.avg_pool2d(grid, k, 1), "b d h w -> b (h w) d")
        return white

    def queries(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """tokens (B, L, D) -> unit-norm routing queries q (B, L, D)."""
        pos = positional_encoding_2d(height, width, self.n_freqs, tokens.device, tokens.dtype)
        q = self.content_features(tokens, height, width) + self.pos_gate * self.pos_proj(pos)
        return F.normalize(q, dim=-1)

    def forward(self, tokens: torch.Tensor, height: int, width: int):
        """tokens (B, L, D) -> assignment (B, L, K) [one-hot, straight-through in training],
        cluster ids (B, L), noise-free probabilities (B, L, K)."""
        q = self.queries(tokens, height, width)
        if self.training and not bool(self.centres_ready):
            self._seed_centres(q.detach())
        # (a copy in training: the running-mean update below changes the centres in place)
        centres = self.centres.to(q.dtype, copy=self.training)
        logits = q @ centres.t() * self.logit_scale.exp().clamp(max=100.0)
        probs = logits.softmax(-1)
        if self.training:
            self._update_centres(q.detach(), logits.detach().argmax(-1))
            gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-9, 1.0 - 1e-9)))
            soft = ((logits + gumbel) / self.tau).softmax(-1)
            ids = soft.argmax(-1)
            hard = F.one_hot(ids, self.n_clusters).to(soft.dtype)
            assignment = hard - soft.detach() + soft
        else:
            ids = logits.argmax(-1)
            assignment = F.one_hot(ids, self.n_clusters).to(logits.dtype)
        return assignment, ids, probs

    # ------------------------------------------------------------------ k-means centres
    @torch.no_grad()
    def fit_centres(self, queries: torch.Tensor, iterations: int = 20, restarts: int = 4) -> None:
        """Spherical k-means of unit-norm queries (N, D) into the centres: ``restarts`` k-means++
        seedings, each refined by ``iterations`` Lloyd steps; the tightest one is kept (a single
        seeding can split a large region and merge two small ones)."""
        q = queries.reshape(-1, queries.shape[-1]).float()
        best, best_spread = None, math.inf
        for _ in range(restarts):
            centres = [q[torch.randint(len(q), (1,), device=q.device)].squeeze(0)]
            for _ in range(1, self.n_clusters):  # k-means++: far from the chosen ones, likelier
                dist = (1 - q @ torch.stack(centres).t()).clamp(min=0).min(-1).values
                centres.append(q[torch.multinomial(dist + 1e-12, 1)].squeeze(0))
            centres = torch.stack(centres)
            for _ in range(iterations):
                onehot = F.one_hot((q @ centres.t()).argmax(-1), self.n_clusters).to(q.dtype)
                sums, counts = onehot.t() @ q, onehot.sum(0)
                centres = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), centres)
            similarity = q @ centres.t()
            spread = float((1 - similarity.max(-1).values).sum())  # k-means' objective, cosine form
            if spread < best_spread:
                best, best_spread = centres, spread
                usage = F.one_hot(similarity.argmax(-1), self.n_clusters).to(q.dtype).mean(0)
        self.centres.copy_(best)
        self.usage.copy_(usage)
        self.centres_ready.fill_(True)

    @torch.no_grad()
    def _seed_centres(self, q: torch.Tensor, max_tokens: int = 8192) -> None:
        flat = q.reshape(-1, q.shape[-1])
        self.fit_centres(flat[torch.randperm(len(flat), device=flat.device)[:max_tokens]])
        self._broadcast_state()

    def _broadcast_state(self) -> None:
        """Under DistributedDataParallel every process keeps rank 0's centres (seeding and
        re-seeding draw tokens from each process's own batch)."""
        if dist.is_available() and dist.is_initialized():
            for tensor in (self.centres, self.usage, self.centres_ready):
                dist.broadcast(tensor, 0)

    @torch.no_grad()
    def _update_centres(self, q: torch.Tensor, ids: torch.Tensor) -> None:
        flat = q.reshape(-1, q.shape[-1]).float()
        onehot = F.one_hot(ids.reshape(-1), self.n_clusters).to(flat.dtype)
        sums, counts = onehot.t() @ flat, onehot.sum(0)
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:  # the running means see every process's tokens
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        m = self.momentum
        used = counts > 0
        moved = F.normalize(m * self.centres + (1 - m) * F.normalize(sums, dim=-1), dim=-1)
        self.centres.copy_(torch.where(used[:, None], moved, self.centres))
        self.usage.mul_(m).add_((1 - m) * counts / counts.sum())
        dead = self.usage < 0.1 / self.n_clusters
        if dead.any():  # re-seed on random tokens: every centre stays in use
            picks = torch.randint(len(flat), (int(dead.sum()),), device=flat.device)
            self.centres[dead] = flat[picks]
            self.usage[dead] = 1.0 / self.n_clusters
            if distributed:
                self._broadcast_state()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Weights of the first router design (LayerNorm, 6-octave PE, gradient-trained
        prototypes) load with fresh, deterministic router state (fixed centres, a zero
        position term): its clusters were positional and carried no information the rest of
        the network used (issue 13); ``fit_centres`` or training seeds the centres from data."""
        if prefix + "prototypes" in state_dict:
            for key in ("prototypes", "norm.weight", "norm.bias", "pos_proj.weight", "pos_proj.bias"):
                state_dict.pop(prefix + key, None)
            for name, tensor in list(self.named_parameters(recurse=False)) + list(self.named_buffers(recurse=False)):
                if name != "tau":
                    state_dict.setdefault(prefix + name, tensor.detach().clone())
            for name, tensor in self.pos_proj.state_dict().items():  # the position term starts at zero
                state_dict.setdefault(prefix + "pos_proj." + name, torch.zeros_like(tensor))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SAMB(nn.Module):
    """Semantic-aware Mamba block on (B, C, H, W) feature maps (shape preserved)."""

    def __init__(self, dim: int, d_state: int = 16, expand: float = 1.5, n_clusters: int = 16,
                 directions: int = 2, mlp_ratio: float = 2.0, dt_rank: int | None = None,
                 normalize_bc: bool = False, router_smooth: int = 1):
        super().__init__()
        if directions not in (1, 2):
            raise ValueError(f"SAMB: directions must be 1 or 2, got {directions}")
        d_inner = int(round(expand * dim))
        self.d_inner, self.d_state, self.directions = d_inner, d_state, directions
        # RMS-normalized B and C (per token): the state's read-out C.h is then on the scale of
        # the input instead of a fraction of it that training must first grow (issue 13)
        self.normalize_bc = normalize_bc
        self.dt_rank = dt_rank or max(1, math.ceil(dim / 16))
        self.norm1 = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.dwconv = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner)
        self.router = SemanticRouter(d_inner, n_clusters, smooth=router_smooth)
        # One set of scan parameters per direction, stacked along the channel axis so that
        # both directions run in a single grouped scan (G = directions).
        self.x_proj = nn.Linear(d_inner, directions * (self.dt_rank + 2 * d_state), bias=False)
        self.dt_proj = nn.Parameter(torch.empty(directions, d_inner, self.dt_rank))
        self.dt_bias = nn.Parameter(torch.empty(directions * d_inner))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32))
                                  .repeat(directions * d_inner, 1))
        self.D = nn.Parameter(torch.ones(directions * d_inner))
        self.cluster_prompt = nn.Parameter(0.02 * torch.randn(n_clusters, d_state))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(round(mlp_ratio * dim))
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._init_dt()

    def _init_dt(self, dt_min: float = 1e-3, dt_max: float = 0.1):
        # Mamba's init: softplus(dt_bias) log-uniform in [dt_min, dt_max].
        nn.init.uniform_(self.dt_proj, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(self.dt_bias.shape) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x: torch.Tensor, return_intermediates: bool = False, scan: ScanSettings = DEFAULT_SCAN):
        """x (B, C, H, W) -> (B, C, H, W), plus SAMBIntermediates when asked (else None).

        ``scan`` picks the scan order, the state-less ablation and the scan backend."""
        batch, _, height, width = x.shape
        tokens = rearrange(x, "b c h w -> b (h w) c")
        xs, z = self.in_proj(self.norm1(tokens)).chunk(2, dim=-1)
        xs = self.dwconv(rearrange(xs, "b (h w) d -> b d h w", h=height))
        inplace = inplace_ok()  # inference: reuse own temporaries (same values, less memory)
        xs = rearrange(F.silu(xs, inplace=inplace), "b d h w -> b (h w) d")

        assignment, ids, probs = self.router(xs, height, width)
        order = scan_permutation(ids, scan)
        xs_sorted = xs.gather(1, order[..., None].expand(-1, -1, self.d_inner))
        prompt = assignment.gather(1, order[..., None].expand(-1, -1, assignment.shape[-1])) @ self.cluster_prompt

        y = self._scan(xs_sorted, prompt, scan)  # (B, L, Di) in scan order
        y = torch.empty_like(y).scatter_(1, order[..., None].expand(-1, -1, self.d_inner), y)
        if inplace:  # the same products and sums as below, in buffers this block made
            y = self.out_norm(y).mul_(F.silu(z))
            tokens = tokens + self.out_proj(y)  # takes x's (B, C, H, W) layout, kept below
            tokens = tokens.add_(self.ffn(self.norm2(tokens)))
        else:
            y = self.out_norm(y) * F.silu(z)
            tokens = tokens + self.out_proj(y)
            tokens = tokens + self.ffn(self.norm2(tokens))
        out = rearrange(tokens, "b (h w) c -> b c h w", h=height)
        if not return_intermediates:
            return out, None
        inter = SAMBIntermediates(assignment=ids.reshape(batch, height, width),
                                  probs=rearrange(probs, "b (h w) k -> b k h w", h=height),
                                  order=order)
        return out, inter

    def _scan(self, xs: torch.Tensor, prompt: torch.Tensor, scan: ScanSettings = DEFAULT_SCAN) -> torch.Tensor:
        """Selective scan of (B, L, Di) tokens, forward and (optionally) backward in sequence."""
        batch, length, _ = xs.shape
        n_dir, rank, n_state = self.directions, self.dt_rank, self.d_state
        if not scan.recurrence:  # state-less ablation: each direction's skip term D * u only
            return xs * self.D.view(n_dir, self.d_inner).sum(0) if scan.skip else torch.zeros_like(xs)
        seqs = [xs] if n_dir == 1 else [xs, xs.flip(1)]
        prompts = [prompt] if n_dir == 1 else [prompt, prompt.flip(1)]
        proj = self.x_proj(xs).view(batch, length, n_dir, rank + 2 * n_state)
        u, deltas, Bs, Cs = [], [], [], []
        for k in range(n_dir):
            p = proj[:, :, k] if k == 0 else proj[:, :, k].flip(1)
            dt, Bk, Ck = p.split([rank, n_state, n_state], dim=-1)
            deltas.append(dt @ self.dt_proj[k].t())
            u.append(seqs[k])
            if self.normalize_bc:
                Bk, Ck = F.rms_norm(Bk, (n_state,)), F.rms_norm(Ck, (n_state,))
            Bs.append(Bk)
            Cs.append(Ck + prompts[k])  # cluster prompt: a cluster-level summary read through C
        # (one direction: no cat, whose copy would only be copied again by contiguous())
        u = (u[0] if n_dir == 1 else torch.cat(u, dim=-1)).transpose(1, 2).contiguous()  # (B, dirs*Di, L)
        delta = (deltas[0] if n_dir == 1 else torch.cat(deltas, dim=-1)).transpose(1, 2).contiguous()
        Bg = torch.stack(Bs, dim=1).transpose(2, 3).contiguous()  # (B, dirs, N, L)
        Cg = torch.stack(Cs, dim=1).transpose(2, 3).contiguous()
        A = -torch.exp(self.A_log.to(u.dtype))
        y = selective_scan(u, delta, A, Bg, Cg, D=self.D, delta_bias=self.dt_bias, delta_softplus=True,
                           backend=scan.backend)
        y = y.transpose(1, 2)  # (B, L, dirs*Di)
        if n_dir == 1:
            return y
        fwd, bwd = y.chunk(2, dim=-1)
        return fwd + bwd.flip(1)
