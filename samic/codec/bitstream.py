"""The .samic container (docs/bitstream.md is the normative description).

    offset  size  field (integers little-endian)
    0       4     magic b"\\x89SMC"
    4       1     format version (2; version 1 files are still read)
    5       1     n = length of the model name (1..64)
    6       n     model name (preset), ASCII [a-z0-9._-]
    6+n     8     weights digest (samic.entropy.latent_codec.model_digest)
    14+n    4     height (u32)
    18+n    4     width (u32)
    22+n    4     quality (float32, in [0, 1])
    26+n    1     SAMB scan order: 0 semantic, 1 raster, 2 random (seed 0)    [version 2 only]
    27+n    4     z stream length in bytes (u32, multiple of 4)
    31+n    4     y stream length in bytes (u32, multiple of 4)
    35+n    4     z checksum: CRC32 of the z symbols
    39+n    4     y checksum: CRC32 of y_hat in units of 2**-8
    43+n    4     CRC32 of every byte before this field and of the payload
    47+n          payload: z stream, then y stream

Version 1 had no scan-order byte (every field after the quality one byte earlier); its
files were made with the semantic order and decode as such. Every field is validated, and
the lengths checked against the size of the data, before the decoder allocates anything
that depends on them.
"""
from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass

from samic.codec.errors import FormatError

MAGIC = b"\x89SMC"  # 0x89 catches transfers that strip the high bit, as in PNG
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# The scan order's code in the file; h_s's SAMB runs in the entropy model's path, so a
# decoder must scan as the encoder did. The random order always uses seed 0.
SCAN_ORDER_CODES = {"semantic": 0, "raster": 1, "random": 2}
MAX_NAME_LENGTH = 64
NAME_PATTERN = re.compile(rb"[a-z0-9._-]+")
MAX_PIXELS = 40_000_000
MAX_PADDED_PIXELS = 2 * MAX_PIXELS  # bounds thin strips, which padding to 64 inflates
PAD = 64  # = samic.models.samic.PAD_MULTIPLE, not imported: this module stays free of torch

_PREFIX = struct.Struct("<4sBB")  # magic, version, name length
# The fixed-size fields between the model name and the CRC, in file order (names as in Header).
FIELD_FORMATS = (("weights_digest", "8s"), ("height", "I"), ("width", "I"), ("quality", "f"),
                 ("scan_order", "B"), ("z_length", "I"), ("y_length", "I"), ("z_checksum", "I"),
                 ("y_checksum", "I"))
FIELD_FORMATS_BY_VERSION = {2: FIELD_FORMATS, 1: tuple(f for f in FIELD_FORMATS if f[0] != "scan_order")}
_FIELDS_BY_VERSION = {v: struct.Struct("<" + "".join(fmt for _, fmt in formats))
                      for v, formats in FIELD_FORMATS_BY_VERSION.items()}
_FIELDS = _FIELDS_BY_VERSION[FORMAT_VERSION]
_CRC = struct.Struct("<I")


def dimension_problem(height: int, width: int) -> str | None:
    """Why an image of height x width cannot be coded, or None if it can."""
    if height < 1 or width < 1:
        return f"an image needs at least one pixel, got {width}x{height}"
    padded = (-(-height // PAD) * PAD) * (-(-width // PAD) * PAD)
    if height * width > MAX_PIXELS or padded > MAX_PADDED_PIXELS:
        return (f"{width}x{height} is too large: SAMIC codes at most {MAX_PIXELS / 1e6:.0f} megapixels "
                f"(and at most {MAX_PADDED_PIXELS / 1e6:.0f} once each side is padded to a multiple of {PAD})")
    return None


@dataclass(frozen=True)
class Header:
    model_name: str
    weights_digest: bytes
    height: int
    width: int
    quality: float
    z_length: int
    y_length: int
    z_checksum: int
    y_checksum: int
    scan_order: str = "semantic"  # SAMB scan order (samic.layers.samb.SCAN_ORDERS)
    version: int = FORMAT_VERSION  # of the file this header was read from (pack writes the current one)

    @property
    def size(self) -> int:
        """Bytes of the header (everything before the payload)."""
        return _PREFIX.size + len(self.model_name) + _FIELDS_BY_VERSION[self.version].size + _CRC.size


def pack(header: Header, z_stream: bytes, y_stream: bytes) -> bytes:
    """Header and streams -> file bytes (header.z_length/y_length must match the streams)."""
    name = header.model_name.encode("ascii")
    if not (len(name) <= MAX_NAME_LENGTH and NAME_PATTERN.fullmatch(name)):
        raise ValueError(f"model name {header.model_name!r} cannot be stored (1-{MAX_NAME_LENGTH} of [a-z0-9._-])")
    if (header.z_length, header.y_length) != (len(z_stream), len(y_stream)):
        raise ValueError("header stream lengths do not match the streams")
    problem = dimension_problem(header.height, header.width)
    if problem:
        raise ValueError(problem)
    if header.scan_order not in SCAN_ORDER_CODES:
        raise ValueError(f"scan order {header.scan_order!r} cannot be stored (one of {', '.join(SCAN_ORDER_CODES)})")
    values = {**vars(header), "scan_order": SCAN_ORDER_CODES[header.scan_order]}
    fields = _FIELDS.pack(*(values[field] for field, _ in FIELD_FORMATS))
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)) + name + fields
    crc = zlib.crc32(y_stream, zlib.crc32(z_stream, zlib.crc32(head)))
    return head + _CRC.pack(crc) + z_stream + y_stream


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    """File bytes -> (header, z stream, y stream). Raises FormatError on anything invalid."""
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise FormatError(f"not a SAMIC file: {len(data)} bytes is too short for a header")
    magic, version, name_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise FormatError("not a SAMIC file (wrong magic bytes)")
    if version not in READABLE_VERSIONS:
        raise FormatError(f"this file uses SAMIC format version {version}; this samic reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))} (install a samic release that supports "
                          f"version {version})")
    field_formats, fields_struct = FIELD_FORMATS_BY_VERSION[version], _FIELDS_BY_VERSION[version]
    header_size = _PREFIX.size + name_length + fields_struct.size + _CRC.size
    if len(data) < header_size:
        raise FormatError(f"corrupt or truncated file: {len(data)} bytes, the header alone needs {header_size}")
    name = data[_PREFIX.size:_PREFIX.size + name_length]
    if not (1 <= name_length <= MAX_NAME_LENGTH and NAME_PATTERN.fullmatch(name)):
        raise FormatError("corrupt file: invalid model name in the header")
    values = dict(zip((field for field, _ in field_formats), fields_struct.unpack_from(data, _PREFIX.size + name_length)))
    orders = {code: order for order, code in SCAN_ORDER_CODES.items()}
    if values.setdefault("scan_order", SCAN_ORDER_CODES["semantic"]) not in orders:
        raise FormatError(f"corrupt file: unknown scan order code {values['scan_order']}")
    values["scan_order"] = orders[values["scan_order"]]
    header = Header(model_name=name.decode("ascii"), version=version, **values)
    (crc,) = _CRC.unpack_from(data, header_size - _CRC.size)
    problem = dimension_problem(header.height, header.width)
    if problem:
        raise FormatError(f"corrupt file: {problem}")
    if not (math.isfinite(header.quality) and 0.0 <= header.quality <= 1.0):
        raise FormatError(f"corrupt file: quality {header.quality} is not in [0, 1]")
    if header.z_length % 4 or header.y_length % 4:
        raise FormatError("corrupt file: stream lengths must be multiples of 4")
    expected = header_size + header.z_length + header.y_length
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise FormatError(f"corrupt file: {what} ({len(data)} bytes, the header says {expected})")
    if payload_crc(data) != crc:
        raise FormatError("corrupt file: CRC32 mismatch")
    z_end = header_size + header.z_length
    return header, data[header_size:z_end], data[z_end:]


def field_offsets(data: bytes) -> dict[str, tuple[int, str]]:
    """Offset and struct format of every header field of ``data`` (for tools and tests);
    the model name's offset depends on its length, read from ``data``."""
    name_length = data[_PREFIX.size - 1]
    offsets = {"magic": (0, "4s"), "version": (4, "B"), "name_length": (5, "B"),
               "model_name": (_PREFIX.size, f"{name_length}s")}
    offset = _PREFIX.size + name_length
    for field, fmt in FIELD_FORMATS_BY_VERSION.get(data[4], FIELD_FORMATS) + (("crc", "I"),):
        offsets[field] = (offset, fmt)
        offset += struct.calcsize("<" + fmt)
    return offsets


def payload_crc(data: bytes) -> int:
    """The CRC32 that ``data`` should carry, whatever it carries now (for tools and tests)."""
    offset = field_offsets(data)["crc"][0]
    return zlib.crc32(data[offset + _CRC.size:], zlib.crc32(data[:offset]))
