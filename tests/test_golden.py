"""Golden files: .samic files made by a stored, seeded samic-tiny model decode to the same
pixels with today's code, and today's encoder writes the same files.

The files, the model and manifest.json (sha256 of each file and of its decoded uint8
reconstruction) were written by scripts/make_golden.py; see its docstring for when they may
be regenerated (a change of the network), and when not (a change of the format: old files
must keep decoding).
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from samic.codec import bitstream
from samic.codec.api import compress_image, decompress_image, read_header
from samic.codec.image_io import load_image
from samic.weights import load_model

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
ENTRIES = MANIFEST["files"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def golden_model():
    return load_model(GOLDEN / MANIFEST["model"])  # verifies the weights' sha256 against the sidecar


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_golden_file_decodes_bit_exactly(golden_model, entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert sha256(data) == entry["sha256"], "the golden file itself changed on disk"
    assert read_header(data).quality == pytest.approx(entry["quality"], abs=1e-7)
    reconstruction = decompress_image(data, golden_model, "mse")
    assert list(reconstruction.shape) == entry["shape"]
    assert sha256(np.ascontiguousarray(reconstruction).tobytes()) == entry["reconstruction_sha256"], (
        f"{entry['file']} (format version {entry['format_version']}) no longer decodes to the same pixels")


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_encoder_writes_the_golden_file(golden_model, entry):
    """Same weights and input -> same bytes (while the format version is the golden one);
    after a version bump, the new file must still decode to the golden pixels."""
    rgb = load_image(GOLDEN / entry["source"])
    data = compress_image(rgb, entry["quality"], golden_model)
    if entry["format_version"] == bitstream.FORMAT_VERSION:
        assert sha256(data) == entry["sha256"]
    reconstruction = decompress_image(data, golden_model, "mse")
    assert sha256(np.ascontiguousarray(reconstruction).tobytes()) == entry["reconstruction_sha256"]
