"""Random mutations of a valid .samic file, for robustness tests (tests/test_codec.py and
benchmarks/fuzz_codec.py): the decoder must return an image or raise FormatError, nothing else.

Most mutations are caught by the CRC; the kinds ending in ``_fixed_crc`` recompute it, so
that the header validation, the entropy decoder and the latent checksums are exercised too.
"""
from __future__ import annotations

import random
import struct

from samic.codec.bitstream import field_offsets, payload_crc

EDGE_U32 = (0, 1, 2, 3, 4, 7, 8, 64, 65, 1000, 6324, 6325, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1)
EDGE_QUALITY = (float("nan"), float("inf"), -float("inf"), -0.0, -1e-30, 1.0000001, 2.0, 0.0, 1.0, 0.25)


def _fix_crc(data: bytes) -> bytes:
    offset = field_offsets(data)["crc"][0]
    return data[:offset] + struct.pack("<I", payload_crc(data)) + data[offset + 4:]


def _payload_start(data: bytes) -> int:
    return field_offsets(data)["crc"][0] + 4


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _bit_flips(data: bytes, rng: random.Random, start: int = 0) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(start, len(out))
        out[position] ^= 1 << rng.randrange(8)
    return bytes(out)


def _field_edit(data: bytes, rng: random.Random) -> bytes:
    offsets = field_offsets(data)
    field = rng.choice([f for f in offsets if f not in ("magic", "crc")])
    offset, fmt = offsets[field]
    size = struct.calcsize("<" + fmt)
    if fmt == "f":
        value = struct.pack("<f", rng.choice(EDGE_QUALITY)) if rng.random() < 0.5 else _random_bytes(rng, 4)
    elif fmt == "I":
        (old,) = struct.unpack_from("<I", data, offset)
        choices = EDGE_U32 + (old + 1, old - 1 if old else 0, old * 2 % 2 ** 32, old // 2, rng.getrandbits(32))
        value = struct.pack("<I", rng.choice(choices))
    elif fmt == "B":
        value = bytes([rng.choice((0, 1, 2, 9, 10, 11, 63, 64, 65, 255, rng.getrandbits(8)))])
    else:  # name or digest bytes
        value = bytearray(data[offset:offset + size])
        value[rng.randrange(size)] = rng.choice((0, 0x2E, 0x41, 0x7A, rng.getrandbits(8)))
    return _fix_crc(data[:offset] + bytes(value) + data[offset + size:])


def _swap_streams(data: bytes, rng: random.Random) -> bytes:
    offsets = field_offsets(data)
    (z_length,) = struct.unpack_from("<I", data, offsets["z_length"][0])
    start = _payload_start(data)
    z, y = data[start:start + z_length], data[start + z_length:]
    head = bytearray(data[:start])
    struct.pack_into("<II", head, offsets["z_length"][0], len(y), len(z))
    return _fix_crc(bytes(head) + y + z)


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of ``data``: (kind, mutated bytes)."""
    kind = rng.choice(("bit_flips", "truncate", "insert", "delete", "overwrite", "append",
                       "header_field_fixed_crc", "payload_bit_flips_fixed_crc",
                       "payload_overwrite_fixed_crc", "swap_streams_fixed_crc"))
    n = len(data)
    if kind.startswith("payload") and _payload_start(data) >= n:
        kind = "bit_flips"  # nothing to mutate in an empty payload
    if kind == "bit_flips":
        return kind, _bit_flips(data, rng)
    if kind == "truncate":
        return kind, data[:rng.randrange(n)]
    if kind == "insert":
        position = rng.randrange(n + 1)
        return kind, data[:position] + _random_bytes(rng, rng.randint(1, 16)) + data[position:]
    if kind == "delete":
        start = rng.randrange(n)
        return kind, data[:start] + data[start + rng.randint(1, 16):]
    if kind == "overwrite":
        start = rng.randrange(n)
        chunk = _random_bytes(rng, rng.randint(1, 32))
        return kind, (data[:start] + chunk + data[start + len(chunk):])[:n]
    if kind == "append":
        return kind, data + _random_bytes(rng, rng.randint(1, 64))
    if kind == "header_field_fixed_crc":
        return kind, _field_edit(data, rng)
    if kind == "payload_bit_flips_fixed_crc":
        return kind, _fix_crc(_bit_flips(data, rng, start=_payload_start(data)))
    if kind == "payload_overwrite_fixed_crc":
        start = rng.randrange(_payload_start(data), n)
        chunk = _random_bytes(rng, rng.randint(1, 32))
        return kind, _fix_crc((data[:start] + chunk + data[start + len(chunk):])[:n])
    return kind, _swap_streams(data, rng)
