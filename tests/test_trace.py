"""EncodeTrace / DecodeTrace come from the real encode and decode, and the app's inspection
is built on them: no second forward pass, bits that add up to the streams."""
from pathlib import Path

import numpy as np
import pytest
import torch

from samic.codec.api import compress_image, decode_traced, decompress_image, encode_traced
from samic.codec.image_io import load_image
from samic.models.samic import SAMIC
from samic.weights import load_model

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
FLUSH_BITS = 64  # constriction's range coder ends its stream with at most two 32-bit words
REQUANTIZATION = 1e-3  # constriction re-quantizes our 20-bit tables to 24 bits (perfect=False)


@pytest.fixture(scope="module")
def model() -> SAMIC:
    return load_model(GOLDEN / "samic-tiny.safetensors")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_image(EXAMPLES / "kitten.jpg")[:130, :190]  # padded to 192 x 192: y 12 x 12, z 3 x 3


@pytest.mark.parametrize("quality", [0.0, 0.6, 1.0])
def test_per_position_bits_add_up_to_the_streams(model, image, quality):
    data, enc = encode_traced(image, quality, model)
    _, dec = decode_traced(data, model)
    for trace in (enc.latents, dec.latents):
        for bits, stream_bytes in ((trace.bits_y, enc.y_bytes), (trace.bits_z, enc.z_bytes)):
            information = float(bits.sum())
            assert torch.all(bits >= 0)
            assert abs(8 * stream_bytes - information) <= FLUSH_BITS + REQUANTIZATION * information, (
                quality, stream_bytes, information)
    assert enc.latents.bits_y.shape == (12, 12) and enc.latents.bits_z.shape == (3, 3)
    # the decoder rebuilds exactly the encoder's symbols, tables and hence bits
    assert torch.equal(enc.latents.bits_y, dec.latents.bits_y) and torch.equal(enc.latents.bits_z, dec.latents.bits_z)
    assert torch.equal(enc.latents.y_hat, dec.latents.y_hat)
    assert torch.equal(enc.latents.scale_indices, dec.latents.scale_indices)


def test_traces_are_those_of_the_real_encode_and_decode(model, image):
    data, enc = encode_traced(image, 0.6, model)
    assert data == compress_image(image, 0.6, model)
    rgb, dec = decode_traced(data, model)
    assert np.array_equal(rgb, decompress_image(data, model))
    assert set(enc.samb) == {"g_a.stage3", "h_a.samb", "h_s.samb"}
    assert set(dec.samb) == {"h_s.samb", "g_s.stage3"} and dec.decoder == "mse"
    # h_s runs on the decoded z in both: the same clusters and scan order
    for field in ("assignment", "order"):
        assert torch.equal(getattr(enc.samb["h_s.samb"], field), getattr(dec.samb["h_s.samb"], field))
    block = enc.samb["g_a.stage3"]  # 192 / 8 = 24 tokens a side
    assert block.assignment.shape == (1, 24, 24) and block.order.shape == (1, 576)
    assert torch.equal(block.assignment, block.probs.argmax(1))
    spectrum = enc.spectrum
    assert spectrum.singular_values.shape == spectrum.thresholded.shape == (1, model.config.M)
    assert torch.all(spectrum.thresholded <= spectrum.singular_values + 1e-6)
    assert enc.padded_size == (192, 192)
    assert {"analysis", "entropy_parameters", "entropy_coding"} <= set(enc.seconds)
    assert {"entropy_parameters", "entropy_coding", "synthesis"} <= set(dec.seconds)
    assert all(v >= 0 for v in {**enc.seconds, **dec.seconds}.values())


def test_inspection_runs_no_second_forward_pass(model, image, monkeypatch):
    from samic.viz.inspect import inspect_image

    def forbidden(*args, **kwargs):
        raise AssertionError("inspect_image ran SAMIC.forward")

    monkeypatch.setattr(SAMIC, "forward", forbidden)
    ins = inspect_image(image, 0.6, "mse", model)
    data, enc = encode_traced(image, 0.6, model)
    assert ins.data == data
    assert np.array_equal(ins.bits_y, enc.latents.bits_y.float().numpy())
    assert np.array_equal(ins.blocks["g_a.stage3"].assignment, enc.samb["g_a.stage3"].assignment[0].numpy())
    assert ins.estimated_bpp == pytest.approx(ins.bpp, rel=0.5)
