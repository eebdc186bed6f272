"""The latent codec: hyperprior + ChARM, between the latents (y, z) and bits.

    forward(y, z)     -> y_hat and likelihoods          training and rate estimation (model's device/dtype)
    compress(y, z)    -> streams + LatentTrace           real coding, bit-exact (float64 CPU mode)
    decompress(...)   -> LatentTrace (y_hat inside)

All three run ChARM's one slice loop (``ChannelARM.run``). Real coding is that loop's float64
mode: the decoder must rebuild exactly the probabilities the encoder used, so both compute
the entropy parameters with the same float64 CPU copies of the parameter networks (h_s and
ChARM's mean/scale/LRP transforms) and snap their outputs to coarse grids before use:

- scales  -> an index into coder.SCALE_TABLE (log-spaced; the coder uses the table's scale),
- means   -> multiples of MEAN_STEP = 2**-8,
- LRP     -> multiples of MEAN_STEP.

Float64 results that differ in the last bits (another CPU, thread count or BLAS) land on the
same grid point unless a value falls within ~1e-12 of a grid boundary. Every y_hat value is
``symbol + mean + lrp``, an exact multiple of 2**-8, so the decoded slices fed back into ChARM
are identical in encoder and decoder. Checksums of the z symbols and of y_hat (stored in the
container) turn a divergence, however unlikely, into a FormatError instead of garbage.

The analysis transform (g_a, h_a) runs wherever the model lives: it only decides which
symbols are written, never how they are decoded.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import time
import weakref
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from samic.codec.coder import (LOG_SCALE_MIN, LOG_SCALE_STEP, MAX_TABLE_ENTRIES, SCALE_LEVELS, SCALE_MIN,
                               VALUE_LIMIT, SymbolReader, SymbolTable, SymbolWriter, gaussian_tables,
                               symbol_bits)
from samic.codec.errors import FormatError
from samic.entropy.models import ste_round
from samic.layers.samb import DEFAULT_SCAN, ScanSettings

MEAN_STEP = 2.0 ** -8
DIGEST_BYTES = 8
OPTIONAL_DECODER_PREFIX = "g_s_perceptual."  # chosen at decode time: not part of the digest


@dataclass
class PhaseTimer:
    """Accumulates wall seconds per phase ("analysis", "entropy_parameters", "entropy_coding",
    "synthesis"); benchmarks subclass ``clock`` for CPU time."""

    seconds: dict[str, float] = field(default_factory=dict)
    clock = staticmethod(time.perf_counter)

    @contextlib.contextmanager
    def phase(self, name: str):
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - start


# ----------------------------------------------------------------------------- the float64 coding mode
def snap_to_mean_grid(values: torch.Tensor) -> torch.Tensor:
    """Clamp to +-VALUE_LIMIT and round to multiples of MEAN_STEP (exact: a power of two)."""
    return torch.round(values.clamp(-VALUE_LIMIT, VALUE_LIMIT) / MEAN_STEP) * MEAN_STEP


def scale_indices(raw_scales: torch.Tensor) -> torch.Tensor:
    """Raw ChARM scales -> int64 indices into SCALE_TABLE (nearest in log space).

    The lower bound is GaussianConditional's; scales beyond SCALE_MAX use the widest table.
    """
    positions = (torch.log(raw_scales.clamp_min(SCALE_MIN)) - LOG_SCALE_MIN) / LOG_SCALE_STEP
    return torch.round(positions).clamp(0, SCALE_LEVELS - 1).long()


def _require_finite(*tensors: torch.Tensor) -> None:
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise FloatingPointError("the entropy parameter networks produced non-finite values")


class CodingNets(nn.Module):
    """Float64 CPU copies of h_s and ChARM, and the snapping of their outputs: the ``snap``
    argument of ChannelARM.run (see the module docstring)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.h_s = copy.deepcopy(model.h_s).to("cpu", torch.float64).eval()
        self.charm = copy.deepcopy(model.charm).to("cpu", torch.float64).eval()
        self._hyper_synthesis = type(model).hyper_synthesis  # the model's own code; it reads only .h_s

    def hyper(self, z_hat: torch.Tensor, record: dict | None = None, scan: ScanSettings = DEFAULT_SCAN):
        """z_hat (1, Nz, h', w') float64 -> hyper means, hyper scales, each (1, M, 4h', 4w')."""
        hyper_means, hyper_scales = self._hyper_synthesis(self, z_hat, record, scan)
        _require_finite(hyper_means, hyper_scales)
        return hyper_means, hyper_scales

    def params(self, mean: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw mean, scale (1, M/S, h, w) -> snapped mean (float64), scale index (int64)."""
        _require_finite(mean, scale)
        return snap_to_mean_grid(mean), scale_indices(scale)

    def residual(self, lrp: torch.Tensor) -> torch.Tensor:
        """Raw latent residual prediction -> snapped."""
        _require_finite(lrp)
        return snap_to_mean_grid(lrp)


@dataclass
class EntropyCoding:
    """Everything a model contributes to real coding, built once per set of weights."""

    digest: bytes  # DIGEST_BYTES of sha256 over the weights (see model_digest)
    nets: CodingNets
    z_tables: list[SymbolTable]  # one per z channel; values are round(z - median)
    z_medians: torch.Tensor  # (Nz,) float64


def _weights_version(model: nn.Module) -> tuple:
    # Storage address and in-place version counter of every tensor: changes whenever the
    # weights are trained, loaded or moved, and costs microseconds to compute.
    return tuple((name, t.device.type, t.dtype, t.data_ptr(), t._version)
                 for name, t in model.state_dict().items())


def _digest(model: nn.Module) -> bytes:
    """sha256 over (name, shape, float32 little-endian bytes) of every tensor, sorted by name."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(OPTIONAL_DECODER_PREFIX):
            continue
        t = tensor.detach().cpu()
        array = (t.to(torch.float32) if t.is_floating_point() else t).contiguous().numpy()
        sha.update(f"{name}:{tuple(array.shape)}:".encode())
        sha.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return sha.digest()[:DIGEST_BYTES]


def _z_tables(model: nn.Module) -> tuple[list[SymbolTable], torch.Tensor]:
    bottleneck = model.entropy_bottleneck
    quantiles = bottleneck.quantiles.detach().double().cpu()[:, 0]
    span = quantiles[:, 2] - quantiles[:, 0]
    # pmf_table covers up to span + 3 values; one more entry is the escape.
    if not bool(torch.isfinite(quantiles).all()) or float(span.max()) > MAX_TABLE_ENTRIES - 4:
        raise ValueError("the entropy bottleneck's quantiles are not finite or span more than "
                         f"{MAX_TABLE_ENTRIES - 4} values; train its auxiliary loss")
    offsets, pmfs, medians = bottleneck.pmf_table()
    tables = [SymbolTable.from_probabilities(int(low), pmf, 1.0 - float(pmf.sum()))
              for low, pmf in zip(offsets, pmfs)]
    return tables, torch.from_numpy(np.array(medians, dtype=np.float64))


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, EntropyCoding]]" = weakref.WeakKeyDictionary()


def entropy_coding(model: nn.Module) -> EntropyCoding:
    """The model's EntropyCoding, cached until its weights change."""
    version = _weights_version(model)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == version:
        return cached[1]
    with torch.no_grad():
        z_tables, z_medians = _z_tables(model)
        coding = EntropyCoding(digest=_digest(model), nets=CodingNets(model), z_tables=z_tables, z_medians=z_medians)
    _CACHE[model] = (version, coding)
    return coding


def model_digest(model: nn.Module) -> bytes:
    """8-byte digest of the weights that define a bitstream (all but the perceptual decoder),
    as float32 values: the same for a model on CPU or GPU, in float32 or float64."""
    return entropy_coding(model).digest


def checksum(values: torch.Tensor) -> int:
    """CRC32 of integer-valued latents (z symbols, or y_hat in units of MEAN_STEP) as int64 LE."""
    return zlib.crc32(values.to(torch.int64).numpy().astype("<i8").tobytes())


def _z_table_ids(shape: tuple[int, ...]) -> np.ndarray:
    channels, height, width = shape[1:]
    return np.broadcast_to(np.arange(channels)[:, None, None], (channels, height, width))


# ----------------------------------------------------------------------------- outputs
class LatentOutput(NamedTuple):
    """forward(): the latents as the synthesis and the rate see them (B, M, h, w; z: B, Nz, h/4, w/4)."""

    y_hat: torch.Tensor  # (B, M, h, w) rounded around ChARM's means (straight-through), plus LRP
    z_hat: torch.Tensor  # (B, Nz, h/4, w/4) what h_s saw
    likelihoods: dict[str, torch.Tensor]  # "y": (B, M, h, w), "z": (B, Nz, h/4, w/4)
    means: torch.Tensor  # (B, M, h, w) ChARM's predicted means
    scales: torch.Tensor  # (B, M, h, w) ChARM's raw predicted scales


@dataclass
class LatentStreams:
    """compress(): the two range-coded streams and the checksums the container stores."""

    z_stream: bytes
    y_stream: bytes
    z_checksum: int
    y_checksum: int


class LatentTrace(NamedTuple):
    """What real coding did, position by position (batch 1; y on an h x w grid, z on h/4 x w/4)."""

    y_hat: torch.Tensor  # (1, M, h, w) float64, exact multiples of MEAN_STEP: the decoder's y_hat
    z_symbols: torch.Tensor  # (1, Nz, h/4, w/4) int64, round(z - median)
    scale_indices: torch.Tensor  # (1, M, h, w) int64 index into coder.SCALE_TABLE of every y symbol
    bits_y: torch.Tensor  # (h, w) float64 information content of y's symbols, summed over channels
    bits_z: torch.Tensor  # (h/4, w/4) float64 the same for z


# ----------------------------------------------------------------------------- the codec
class LatentCodec:
    """Hyperprior + ChARM of a SAMIC model (a view on its entropy_bottleneck, h_s, charm and
    gaussian_conditional; holds no weights of its own)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def forward(self, y: torch.Tensor, z: torch.Tensor, record: dict | None = None,
                scan: ScanSettings = DEFAULT_SCAN) -> LatentOutput:
        """y (B, M, h, w), z (B, Nz, h/4, w/4) from the analysis. Training: noise for the rate,
        straight-through rounding for the decoders ("mixed" quantization)."""
        model = self.model
        z_hat, z_likelihoods = model.entropy_bottleneck(z)
        if model.training:  # the rate sees noise, the hyper-decoder sees rounding
            medians = model.entropy_bottleneck.medians[None, :, None, None]
            z_hat = ste_round(z - medians) + medians
        hyper_means, hyper_scales = model.hyper_synthesis(z_hat, record, scan)
        y_hat, y_likelihoods, means, scales = model.charm(y, hyper_means, hyper_scales, model.gaussian_conditional)
        return LatentOutput(y_hat=y_hat, z_hat=z_hat, likelihoods={"y": y_likelihoods, "z": z_likelihoods},
                            means=means, scales=scales)

    @torch.no_grad()
    def compress(self, y: torch.Tensor, z: torch.Tensor, timer: PhaseTimer | None = None,
                 record: dict | None = None, scan: ScanSettings = DEFAULT_SCAN) -> tuple[LatentStreams, LatentTrace]:
        """y (1, M, h, w) and z (1, Nz, h/4, w/4), any device/dtype -> streams and trace.
        ``record`` collects the SAMB intermediates of the float64 h_s."""
        timer = timer or PhaseTimer()
        coding = entropy_coding(self.model)
        y, z = y.detach().to("cpu", torch.float64), z.detach().to("cpu", torch.float64)
        if not (bool(torch.isfinite(y).all()) and bool(torch.isfinite(z).all())):
            raise ValueError("the analysis transform produced non-finite latents; are the weights broken?")
        medians = coding.z_medians[None, :, None, None]
        z_symbols = torch.round(z - medians).clamp(-VALUE_LIMIT, VALUE_LIMIT)
        tables = gaussian_tables()
        z_writer, y_writer = SymbolWriter(), SymbolWriter()
        with timer.phase("entropy_coding"):
            z_writer.write_block(z_symbols[0].numpy(), _z_table_ids(z.shape), coding.z_tables)
        y_slices = y.chunk(coding.nets.charm.num_slices, 1)
        symbols, indices = [], []

        def write_slice(i, mean, scale_index):
            slice_symbols = torch.round(y_slices[i] - mean).clamp(-VALUE_LIMIT, VALUE_LIMIT)
            y_writer.write_block(slice_symbols[0].numpy(), scale_index[0].numpy(), tables)
            symbols.append(slice_symbols.long())
            indices.append(scale_index)
            return slice_symbols + mean

        try:
            with timer.phase("entropy_parameters"):
                hyper_means, hyper_scales = coding.nets.hyper(z_symbols + medians, record, scan)
            y_hat = coding.nets.charm.run(hyper_means, hyper_scales, write_slice, coding.nets, timer)
        except FloatingPointError as exc:
            raise ValueError(f"{exc}; are the weights broken?") from None
        with timer.phase("entropy_coding"):
            z_stream, y_stream = z_writer.finish(), y_writer.finish()
        streams = LatentStreams(z_stream=z_stream, y_stream=y_stream, z_checksum=checksum(z_symbols),
                                y_checksum=checksum(y_hat / MEAN_STEP))
        return streams, _trace(coding, y_hat, z_symbols.long(), torch.cat(symbols, 1), torch.cat(indices, 1))

    @torch.no_grad()
    def decompress(self, z_shape: tuple[int, int, int, int], streams: LatentStreams,
                   timer: PhaseTimer | None = None, record: dict | None = None,
                   scan: ScanSettings = DEFAULT_SCAN) -> LatentTrace:
        """Streams of a (1, Nz, h', w') z -> LatentTrace (y_hat: (1, M, 4h', 4w') float64 CPU).
        Raises FormatError when a checksum fails."""
        timer = timer or PhaseTimer()
        coding = entropy_coding(self.model)
        tables = gaussian_tables()
        z_reader, y_reader = SymbolReader(streams.z_stream), SymbolReader(streams.y_stream)
        with timer.phase("entropy_coding"):
            z_symbols = torch.from_numpy(z_reader.read_block(_z_table_ids(z_shape), coding.z_tables))[None]
        # Checked before the expensive part, so a damaged file cannot make us run ChARM on garbage.
        if checksum(z_symbols) != streams.z_checksum:
            raise FormatError("corrupt file: the decoded hyper-latents do not match their checksum")
        symbols, indices = [], []

        def read_slice(i, mean, scale_index):
            slice_symbols = torch.from_numpy(y_reader.read_block(scale_index[0].numpy(), tables))[None]
            symbols.append(slice_symbols)
            indices.append(scale_index)
            return slice_symbols.to(torch.float64) + mean

        try:
            with timer.phase("entropy_parameters"):
                hyper_means, hyper_scales = coding.nets.hyper(
                    z_symbols.to(torch.float64) + coding.z_medians[None, :, None, None], record, scan)
            y_hat = coding.nets.charm.run(hyper_means, hyper_scales, read_slice, coding.nets, timer)
        except FloatingPointError:
            raise FormatError("corrupt file: the decoded latents give non-finite entropy parameters") from None
        if checksum(y_hat / MEAN_STEP) != streams.y_checksum:
            raise FormatError("corrupt file, or decoded on a machine whose float64 arithmetic disagrees: "
                              "the decoded latents do not match their checksum")
        return _trace(coding, y_hat, z_symbols, torch.cat(symbols, 1), torch.cat(indices, 1))


def _trace(coding: EntropyCoding, y_hat, z_symbols, y_symbols, y_scale_indices) -> LatentTrace:
    """Per-position information content of what was coded (the same on both sides)."""
    bits_z = symbol_bits(z_symbols[0].numpy(), _z_table_ids(z_symbols.shape), coding.z_tables)
    bits_y = symbol_bits(y_symbols[0].numpy(), y_scale_indices[0].numpy(), gaussian_tables())
    return LatentTrace(y_hat=y_hat, z_symbols=z_symbols, scale_indices=y_scale_indices,
                       bits_y=torch.from_numpy(bits_y.sum(0)), bits_z=torch.from_numpy(bits_z.sum(0)))
