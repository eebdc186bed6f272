"""Entropy coding of integer symbols with constriction's range coder.

Every symbol is coded with a *table*: integer frequencies summing to 2**PROB_BITS for the
values ``low..high`` plus one escape entry. A value outside ``[low, high]`` is coded as the
escape entry, and the value itself follows later in the same stream (Elias-gamma style), so
every integer within +-VALUE_LIMIT round-trips exactly. Tables hold integers computed once
from float64 probabilities, so the encoder and the decoder hand constriction identical tables.

A *block* (all of z, or one slice of y) is coded grouped by table: first the symbols that use
table 0 in raster order, then those of table 1, ..., then the escaped values of the block in
the same order. The decoder knows every symbol's table before it decodes the block (that is
what the hyperprior and ChARM provide), so it reproduces the order exactly.

Gaussian tables: y symbols are coded with one of SCALE_LEVELS tables, discretized zero-mean
Gaussians whose scales are log-spaced from SCALE_MIN to SCALE_MAX (see samic.entropy.latent_codec
for how a predicted scale picks its table).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import constriction
import numpy as np

from samic.codec.errors import FormatError

PROB_BITS = 20  # table precision; constriction's categorical models hold 24 bits
VALUE_LIMIT = 2 ** 28  # coded values are clamped to +-VALUE_LIMIT (docs/bitstream.md)
MAX_TABLE_ENTRIES = 2 ** 16
ESCAPE_LENGTHS = 30  # an escape's magnitude has 0..29 bits after its leading one

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
LOG_SCALE_MIN = math.log(SCALE_MIN)
LOG_SCALE_STEP = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
# Scalar libm arithmetic (not numpy's SIMD paths), so the table is the same on every machine.
SCALE_TABLE = tuple(math.exp(LOG_SCALE_MIN + k * LOG_SCALE_STEP) for k in range(SCALE_LEVELS))
TAIL_SIGMAS = 5.0  # a Gaussian table covers +-ceil(5 sigma); the mass beyond is the escape's


def quantize_probabilities(probs: np.ndarray) -> np.ndarray:
    """Float probabilities (n,) -> int64 frequencies, each >= 1, summing to 2**PROB_BITS.

    Deterministic integer rounding: one unit for every entry, floor of the rest, and the
    remainder to the most probable entry.
    """
    probs = np.asarray(probs, dtype=np.float64)
    total = 1 << PROB_BITS
    if probs.ndim != 1 or not 2 <= probs.size <= MAX_TABLE_ENTRIES:
        raise ValueError(f"a coding table needs 2..{MAX_TABLE_ENTRIES} entries, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or probs.sum() <= 0:
        raise ValueError("a coding table needs finite, non-negative probabilities with a positive sum")
    freqs = 1 + np.floor(probs / probs.sum() * (total - probs.size)).astype(np.int64)
    freqs[np.argmax(freqs)] += total - freqs.sum()
    return freqs


class SymbolTable:
    """Integer frequencies for the values low..high (in order) and a final escape entry."""

    def __init__(self, low: int, freqs: np.ndarray):
        self.low = int(low)
        self.freqs = freqs
        self.high = self.low + len(freqs) - 2
        self.escape_entry = len(freqs) - 1
        # Dyadic floats: constriction rescales them identically in encoder and decoder.
        self.model = constriction.stream.model.Categorical(freqs / float(1 << PROB_BITS), perfect=False)

    @classmethod
    def from_probabilities(cls, low: int, probs: np.ndarray, escape_mass: float) -> "SymbolTable":
        """probs (n,): probabilities of low..low+n-1; escape_mass: of everything else."""
        return cls(low, quantize_probabilities(np.append(probs, max(escape_mass, 0.0))))


@functools.lru_cache(maxsize=None)
def gaussian_tables() -> tuple[SymbolTable, ...]:
    """The SCALE_LEVELS discretized zero-mean Gaussian tables, index k for SCALE_TABLE[k]."""
    tables = []
    for scale in SCALE_TABLE:
        half_width = math.ceil(TAIL_SIGMAS * scale)
        values = range(-half_width, half_width + 1)
        # P(v) = Phi((0.5 - |v|)/s) - Phi((-0.5 - |v|)/s), evaluated in the lower tail.
        probs = np.array([0.5 * (math.erfc((abs(v) - 0.5) / (scale * math.sqrt(2)))
                                 - math.erfc((abs(v) + 0.5) / (scale * math.sqrt(2)))) for v in values])
        escape_mass = math.erfc((half_width + 0.5) / (scale * math.sqrt(2)))
        tables.append(SymbolTable.from_probabilities(-half_width, probs, escape_mass))
    return tuple(tables)


def _group_by_table(table_ids: np.ndarray, n_tables: int):
    """Flat positions sorted by table id (raster order inside a table) and each table's range."""
    order = np.argsort(table_ids, kind="stable")
    counts = np.bincount(table_ids, minlength=n_tables)
    stops = np.cumsum(counts)
    return order, list(zip((stops - counts).tolist(), stops.tolist()))


def _bit_length_minus_one(magnitudes: np.ndarray) -> np.ndarray:
    """floor(log2(m)) for int64 m >= 1, exactly (frexp is exact below 2**53)."""
    return np.frexp(magnitudes.astype(np.float64))[1].astype(np.int64) - 1


def symbol_bits(values: np.ndarray, table_ids: np.ndarray, tables: Sequence[SymbolTable]) -> np.ndarray:
    """Information content in bits of every value under its table, escapes included: what the
    range coder spends on it, up to the coder's own rounding and the stream's final flush.
    float64, shaped like ``values``."""
    values = np.asarray(values, dtype=np.int64)
    table_ids = np.asarray(table_ids)
    flat = values.ravel()
    bits = np.empty(flat.size, dtype=np.float64)
    order, ranges = _group_by_table(table_ids.ravel(), len(tables))
    for table, (start, stop) in zip(tables, ranges):
        if start == stop:
            continue
        positions = order[start:stop]
        group = flat[positions]
        above, below = group > table.high, group < table.low
        entries = np.where(above | below, table.escape_entry, group - table.low)
        cost = PROB_BITS - np.log2(table.freqs[entries].astype(np.float64))
        escaped = above | below
        if escaped.any():  # side bit, length (uniform over ESCAPE_LENGTHS), the bits after the leading one
            distance = np.where(above, group - table.high, table.low - group)[escaped]
            cost[escaped] += 1 + math.log2(ESCAPE_LENGTHS) + _bit_length_minus_one(distance)
        bits[positions] = cost
    return bits.reshape(values.shape)


class SymbolWriter:
    """Range-codes blocks of integer values (see the module docstring for the order)."""

    def __init__(self):
        self._encoder = constriction.stream.queue.RangeEncoder()

    def write_block(self, values: np.ndarray, table_ids: np.ndarray, tables: Sequence[SymbolTable]) -> None:
        """values, table_ids: integer arrays of one shape; table_ids index ``tables``."""
        values = np.asarray(values, dtype=np.int64).ravel()
        if np.any(np.abs(values) > VALUE_LIMIT):
            raise ValueError(f"symbol values must lie within +-{VALUE_LIMIT}")
        order, ranges = _group_by_table(np.asarray(table_ids).ravel(), len(tables))
        escaped, lows, highs = [], [], []
        for table, (start, stop) in zip(tables, ranges):
            if start == stop:
                continue
            group = values[order[start:stop]]
            outside = (group < table.low) | (group > table.high)
            entries = np.where(outside, table.escape_entry, group - table.low)
            self._encoder.encode(entries.astype(np.int32), table.model)
            if outside.any():
                escaped.append(group[outside])
                lows.append(np.full(int(outside.sum()), table.low))
                highs.append(np.full(int(outside.sum()), table.high))
        if escaped:
            self._write_escapes(np.concatenate(escaped), np.concatenate(lows), np.concatenate(highs))

    def _write_escapes(self, values: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> None:
        # Side (below/above the table), then Elias-gamma of the distance d >= 1 beyond the
        # table's edge: the bit length of d, then d's bits below its leading one, 16 at a time.
        above = values > highs
        distance = np.where(above, values - highs, lows - values)
        n_bits = _bit_length_minus_one(distance)
        uniform = constriction.stream.model.Uniform
        self._encoder.encode(above.astype(np.int32), uniform(2))
        self._encoder.encode(n_bits.astype(np.int32), uniform(ESCAPE_LENGTHS))
        remainder = distance - (np.int64(1) << n_bits)
        for shift in (0, 16):
            chunk_bits = np.clip(n_bits - shift, 0, 16)
            has_chunk = chunk_bits > 0
            if has_chunk.any():
                chunks = (remainder[has_chunk] >> shift) & ((np.int64(1) << chunk_bits[has_chunk]) - 1)
                sizes = np.int64(1) << chunk_bits[has_chunk]
                self._encoder.encode(chunks.astype(np.int32), uniform(), sizes.astype(np.int32))

    def finish(self) -> bytes:
        """The compressed stream (a whole number of little-endian 32-bit words)."""
        return self._encoder.get_compressed().astype("<u4").tobytes()


class SymbolReader:
    """Decodes what a SymbolWriter wrote, given the same table ids and tables."""

    def __init__(self, data: bytes):
        if len(data) % 4:
            raise ValueError("a compressed stream is a whole number of 32-bit words")
        self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def _decode(self, model, amount_or_params) -> np.ndarray:
        try:
            return self._decoder.decode(model, amount_or_params).astype(np.int64)
        except AssertionError:  # constriction's report of data impossible under the model
            raise FormatError("corrupt file: invalid entropy-coded data") from None

    def read_block(self, table_ids: np.ndarray, tables: Sequence[SymbolTable]) -> np.ndarray:
        """Values (int64, shaped like table_ids). Garbage input mostly decodes to some values,
        which the checksums in the container catch; the rest raises FormatError here."""
        table_ids = np.asarray(table_ids)
        order, ranges = _group_by_table(table_ids.ravel(), len(tables))
        values = np.empty(table_ids.size, dtype=np.int64)
        escaped_positions, lows, highs = [], [], []
        for table, (start, stop) in zip(tables, ranges):
            if start == stop:
                continue
            entries = self._decode(table.model, stop - start)
            positions = order[start:stop]
            values[positions] = entries + table.low
            escaped = entries == table.escape_entry
            if escaped.any():
                escaped_positions.append(positions[escaped])
                lows.append(np.full(int(escaped.sum()), table.low))
                highs.append(np.full(int(escaped.sum()), table.high))
        if escaped_positions:
            values[np.concatenate(escaped_positions)] = self._read_escapes(np.concatenate(lows),
                                                                           np.concatenate(highs))
        return values.reshape(table_ids.shape)

    def _read_escapes(self, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
        uniform = constriction.stream.model.Uniform
        count = len(lows)
        above = self._decode(uniform(2), count).astype(bool)
        n_bits = self._decode(uniform(ESCAPE_LENGTHS), count)
        distance = np.int64(1) << n_bits
        for shift in (0, 16):
            chunk_bits = np.clip(n_bits - shift, 0, 16)
            has_chunk = chunk_bits > 0
            if has_chunk.any():
                sizes = (np.int64(1) << chunk_bits[has_chunk]).astype(np.int32)
                chunks = self._decode(uniform(), sizes)
                distance[has_chunk] += chunks << shift
        return np.where(above, highs + distance, lows - distance)
