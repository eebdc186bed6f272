"""Latents <-> bytes, decodable bit-exactly on any machine.

The decoder must rebuild exactly the probabilities the encoder used. Both therefore compute
the entropy parameters with the same float64 CPU copies of the parameter networks (h_s and
ChARM's mean/scale/LRP transforms), and snap their outputs to coarse grids before use:

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

import copy
import hashlib
import time
import weakref
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from samic.codec.coder import (LOG_SCALE_MIN, LOG_SCALE_STEP, MAX_TABLE_ENTRIES, SCALE_LEVELS, SCALE_MIN,
                               VALUE_LIMIT, SymbolReader, SymbolTable, SymbolWriter, gaussian_tables)
from samic.codec.errors import FormatError
from samic.models.samic import PAD_MULTIPLE, SAMIC

MEAN_STEP = 2.0 ** -8
DIGEST_BYTES = 8
OPTIONAL_DECODER_PREFIX = "g_s_perceptual."  # chosen at decode time: not part of the digest


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


class EntropyParameterNets(nn.Module):
    """Float64 CPU copies of h_s and ChARM, with snapped outputs (see the module docstring)."""

    def __init__(self, model: SAMIC):
        super().__init__()
        self.h_s = copy.deepcopy(model.h_s).to("cpu", torch.float64).eval()
        self.charm = copy.deepcopy(model.charm).to("cpu", torch.float64).eval()
        self.num_slices = model.charm.num_slices

    # The model's own code path, run on the float64 copies (it only reads self.h_s).
    hyper_synthesis = SAMIC.hyper_synthesis

    def hyper(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_hat (1, Nz, h', w') float64 -> hyper means, hyper scales, each (1, M, 4h', 4w')."""
        hyper_means, hyper_scales = self.hyper_synthesis(z_hat)
        _require_finite(hyper_means, hyper_scales)
        return hyper_means, hyper_scales

    def slice_params(self, i: int, hyper_means, hyper_scales, decoded: list[torch.Tensor]):
        """Snapped mean (float64) and scale index (int64) of slice i, each (1, M/S, h, w)."""
        mean, scale = self.charm.slice_params(i, hyper_means, hyper_scales, decoded)
        _require_finite(mean, scale)
        return snap_to_mean_grid(mean), scale_indices(scale)

    def residual(self, i: int, hyper_means, decoded: list[torch.Tensor], y_hat_slice) -> torch.Tensor:
        """Snapped latent residual prediction of slice i."""
        lrp = self.charm.residual(i, hyper_means, decoded, y_hat_slice)
        _require_finite(lrp)
        return snap_to_mean_grid(lrp)


@dataclass
class EntropyCoding:
    """Everything a model contributes to entropy coding, built once per set of weights."""

    digest: bytes  # DIGEST_BYTES of sha256 over the weights (see model_digest)
    nets: EntropyParameterNets
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


def _z_tables(model: SAMIC) -> tuple[list[SymbolTable], torch.Tensor]:
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


_CACHE: "weakref.WeakKeyDictionary[SAMIC, tuple[tuple, EntropyCoding]]" = weakref.WeakKeyDictionary()


def entropy_coding(model: SAMIC) -> EntropyCoding:
    """The model's EntropyCoding, cached until its weights change."""
    version = _weights_version(model)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == version:
        return cached[1]
    with torch.no_grad():
        z_tables, z_medians = _z_tables(model)
        coding = EntropyCoding(digest=_digest(model), nets=EntropyParameterNets(model),
                               z_tables=z_tables, z_medians=z_medians)
    _CACHE[model] = (version, coding)
    return coding


def model_digest(model: SAMIC) -> bytes:
    """8-byte digest of the weights that define a bitstream (all but the perceptual decoder),
    as float32 values: the same for a model on CPU or GPU, in float32 or float64."""
    return entropy_coding(model).digest


def hyper_latent_shape(model: SAMIC, height: int, width: int) -> tuple[int, int, int, int]:
    """Shape of z (batch 1) for an image of height x width; y's follows from h_s (4x larger)."""
    padded_h, padded_w = (-(-side // PAD_MULTIPLE) * PAD_MULTIPLE for side in (height, width))
    return 1, model.config.Nz, padded_h // PAD_MULTIPLE, padded_w // PAD_MULTIPLE


def checksum(values: torch.Tensor) -> int:
    """CRC32 of integer-valued latents (z symbols, or y_hat in units of MEAN_STEP) as int64 LE."""
    return zlib.crc32(values.to(torch.int64).numpy().astype("<i8").tobytes())


@dataclass
class PhaseTimer:
    """Accumulates seconds per phase (used by benchmarks/codec_speed.py)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class LatentStreams:
    z_stream: bytes
    y_stream: bytes
    z_checksum: int
    y_checksum: int
    y_hat: torch.Tensor  # (1, M, h, w) float64: what the decoder will reconstruct


def _z_table_ids(shape: tuple[int, ...]) -> np.ndarray:
    channels, height, width = shape[1:]
    return np.broadcast_to(np.arange(channels)[:, None, None], (channels, height, width))


def _reconstruct_y(nets: EntropyParameterNets, hyper_means, hyper_scales,
                   code_slice: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
                   timer: PhaseTimer) -> torch.Tensor:
    """ChARM slice by slice; ``code_slice(i, mean, scale_index)`` writes or reads slice i's
    symbols and returns them (int64). Encoder and decoder share this loop, so they agree."""
    decoded: list[torch.Tensor] = []
    for i in range(nets.num_slices):
        with timer.phase("entropy_parameters"):
            mean, scale_index = nets.slice_params(i, hyper_means, hyper_scales, decoded)
        with timer.phase("entropy_coding"):
            symbols = code_slice(i, mean, scale_index)
        with timer.phase("entropy_parameters"):
            y_hat_slice = symbols.to(torch.float64) + mean
            decoded.append(y_hat_slice + nets.residual(i, hyper_means, decoded, y_hat_slice))
    return torch.cat(decoded, 1)


@torch.no_grad()
def encode_latents(model: SAMIC, y: torch.Tensor, z: torch.Tensor, timer: PhaseTimer | None = None) -> LatentStreams:
    """y (1, M, h, w) and z (1, Nz, h/4, w/4) from the analysis transform, any device/dtype."""
    timer = timer or PhaseTimer()
    coding = entropy_coding(model)
    y, z = y.detach().to("cpu", torch.float64), z.detach().to("cpu", torch.float64)
    if not (bool(torch.isfinite(y).all()) and bool(torch.isfinite(z).all())):
        raise ValueError("the analysis transform produced non-finite latents; are the weights broken?")
    medians = coding.z_medians[None, :, None, None]
    z_symbols = torch.round(z - medians).clamp(-VALUE_LIMIT, VALUE_LIMIT)
    tables = gaussian_tables()
    z_writer, y_writer = SymbolWriter(), SymbolWriter()
    with timer.phase("entropy_coding"):
        z_writer.write_block(z_symbols[0].numpy(), _z_table_ids(z.shape), coding.z_tables)
    y_slices = y.chunk(coding.nets.num_slices, 1)

    def write_slice(i, mean, scale_index):
        symbols = torch.round(y_slices[i] - mean).clamp(-VALUE_LIMIT, VALUE_LIMIT)
        y_writer.write_block(symbols[0].numpy(), scale_index[0].numpy(), tables)
        return symbols

    try:
        with timer.phase("entropy_parameters"):
            hyper_means, hyper_scales = coding.nets.hyper(z_symbols + medians)
        y_hat = _reconstruct_y(coding.nets, hyper_means, hyper_scales, write_slice, timer)
    except FloatingPointError as exc:
        raise ValueError(f"{exc}; are the weights broken?") from None
    with timer.phase("entropy_coding"):
        z_stream, y_stream = z_writer.finish(), y_writer.finish()
    return LatentStreams(z_stream=z_stream, y_stream=y_stream, z_checksum=checksum(z_symbols),
                         y_checksum=checksum(y_hat / MEAN_STEP), y_hat=y_hat)


@torch.no_grad()
def decode_latents(model: SAMIC, height: int, width: int, z_stream: bytes, y_stream: bytes,
                   z_checksum: int, y_checksum: int, timer: PhaseTimer | None = None) -> torch.Tensor:
    """Streams -> y_hat (1, M, h, w) float64 CPU. Raises FormatError when a checksum fails."""
    timer = timer or PhaseTimer()
    coding = entropy_coding(model)
    z_shape = hyper_latent_shape(model, height, width)
    tables = gaussian_tables()
    z_reader, y_reader = SymbolReader(z_stream), SymbolReader(y_stream)
    with timer.phase("entropy_coding"):
        z_symbols = torch.from_numpy(z_reader.read_block(_z_table_ids(z_shape), coding.z_tables))[None]
    # Checked before the expensive part, so a damaged file cannot make us run ChARM on garbage.
    if checksum(z_symbols) != z_checksum:
        raise FormatError("corrupt file: the decoded hyper-latents do not match their checksum")

    def read_slice(i, mean, scale_index):
        return torch.from_numpy(y_reader.read_block(scale_index[0].numpy(), tables))[None]

    try:
        with timer.phase("entropy_parameters"):
            hyper_means, hyper_scales = coding.nets.hyper(z_symbols.to(torch.float64)
                                                          + coding.z_medians[None, :, None, None])
        y_hat = _reconstruct_y(coding.nets, hyper_means, hyper_scales, read_slice, timer)
    except FloatingPointError:
        raise FormatError("corrupt file: the decoded latents give non-finite entropy parameters") from None
    if checksum(y_hat / MEAN_STEP) != y_checksum:
        raise FormatError("corrupt file, or decoded on a machine whose float64 arithmetic disagrees: "
                          "the decoded latents do not match their checksum")
    return y_hat
