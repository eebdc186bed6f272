"""Tests of samic.codec: entropy coding, the container, the API, input images and robustness.

The model is "samic-tiny" with a fixed seed: the weights do not matter to the codec's
correctness, only to how many bits it spends.
"""
import copy
import hashlib
import io
import random
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samic
from samic.codec import FormatError, bitstream
from samic.codec.api import compress_image, decompress_image, read_header, to_tensor, to_uint8
from samic.codec.coder import (SCALE_LEVELS, SCALE_MAX, SCALE_TABLE, TAIL_SIGMAS, VALUE_LIMIT, SymbolReader,
                               SymbolTable, SymbolWriter, gaussian_tables)
from samic.codec.fuzzing import mutate
from samic.codec.image_io import ImageError, load_image
from samic.entropy.latent_codec import MEAN_STEP, entropy_coding, model_digest
from samic.models import SAMIC
from samic.models.samic import PAD_MULTIPLE, pad_to_multiple

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"
QUALITY = 0.7


def kodak_crop(name: str = "kodim01.png", height: int = 96, width: int = 128, top: int = 200, left: int = 300):
    path = KODAK / name
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    return np.array(Image.open(path).convert("RGB"))[top:top + height, left:left + width].copy()


def tiny_model(seed: int = 0) -> SAMIC:
    torch.manual_seed(seed)
    return SAMIC("samic-tiny").eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def crop():
    return kodak_crop()


@pytest.fixture(scope="module")
def encoded(model, crop):
    return compress_image(crop, QUALITY, model)


@pytest.fixture(scope="module")
def decoded(model, encoded):
    return decompress_image(encoded, model)


def sha(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def with_field(data: bytes, field: str, value, fix_crc: bool = True) -> bytes:
    """``data`` with one header field replaced (and the CRC recomputed)."""
    offset, fmt = bitstream.field_offsets(data)[field]
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    if fix_crc:
        struct.pack_into("<I", out, bitstream.field_offsets(out)["crc"][0], bitstream.payload_crc(bytes(out)))
    return bytes(out)


# ----------------------------------------------------------------------------- entropy coder
def test_coder_round_trips_any_value_including_escapes():
    rng = np.random.default_rng(0)
    tables = gaussian_tables()
    ids = rng.integers(0, SCALE_LEVELS, 5000)
    values = np.round(rng.standard_normal(5000) * np.array(SCALE_TABLE)[ids] * 3).astype(np.int64)
    values[:8] = [VALUE_LIMIT, -VALUE_LIMIT, 70000, -70000, 1 << 16, (1 << 16) + 1, 0, -1]
    z_table = SymbolTable.from_probabilities(-3, np.array([0.1, 0.2, 0.4, 0.2, 0.05]), 0.05)
    writer = SymbolWriter()
    writer.write_block(values, ids, tables)
    writer.write_block(np.array([], dtype=np.int64), np.array([], dtype=np.int64), tables)
    writer.write_block(np.array([[-3, 1, 2, -4, 9]]), np.zeros((1, 5), dtype=np.int64), [z_table])
    reader = SymbolReader(writer.finish())
    assert np.array_equal(reader.read_block(ids, tables), values)
    assert reader.read_block(np.array([], dtype=np.int64), tables).size == 0
    assert np.array_equal(reader.read_block(np.zeros((1, 5), dtype=np.int64), [z_table]), [[-3, 1, 2, -4, 9]])
    with pytest.raises(ValueError):
        SymbolWriter().write_block(np.array([VALUE_LIMIT + 1]), np.array([0]), tables)


def test_gaussian_tables_are_the_same_on_every_machine():
    # The decoder rebuilds these integer tables; a platform whose libm rounds differently
    # would change this checksum (and could not decode files from other machines).
    tables = gaussian_tables()
    assert len(tables) == SCALE_LEVELS and SCALE_TABLE[0] == pytest.approx(0.11) and SCALE_TABLE[-1] == pytest.approx(256)
    crc = 0
    for table in tables:
        crc = zlib.crc32(struct.pack("<i", table.low) + table.freqs.astype("<i8").tobytes(), crc)
    assert crc == 0xDAA40841


# ----------------------------------------------------------------------------- round trip and determinism
def test_round_trip_gives_the_synthesis_of_the_encoders_latents(model, crop, encoded, decoded):
    height, width = crop.shape[:2]
    assert decoded.shape == (height, width, 3) and decoded.dtype == np.uint8
    with torch.no_grad():
        quality = model.quality_tensor(QUALITY, 1)
        y, z, _ = model.analysis(pad_to_multiple(to_tensor(crop, "cpu", torch.float32)), quality)
        _, latents = model.latent_codec.compress(y, z)
        expected = to_uint8(model.synthesis(latents.y_hat.float(), quality)[:, :, :height, :width])
    assert np.array_equal(decoded, expected)
    header = read_header(encoded)
    assert (header.model_name, header.height, header.width) == ("samic-tiny", height, width)
    assert header.quality == np.float32(QUALITY) and header.weights_digest == model_digest(model)
    assert len(encoded) == header.size + header.z_length + header.y_length
    assert bitstream.PAD == PAD_MULTIPLE


def test_encoding_and_decoding_are_repeatable(model, crop, encoded, decoded):
    for _ in range(3):
        assert compress_image(crop, QUALITY, model) == encoded
    for _ in range(10):
        assert np.array_equal(decompress_image(encoded, model), decoded)


def test_thread_count_changes_nothing(model, crop, encoded, decoded):
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert compress_image(crop, QUALITY, model) == encoded
            assert np.array_equal(decompress_image(encoded, model), decoded)
    finally:
        torch.set_num_threads(threads)


def test_fresh_process_encodes_and_decodes_identically(encoded, decoded, tmp_path):
    (tmp_path / "in.samic").write_bytes(encoded)
    script = f"""
import hashlib, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_codec import kodak_crop, tiny_model, QUALITY
from samic.codec import compress_image, decompress_image
model = tiny_model()
data = compress_image(kodak_crop(), QUALITY, model)
theirs = decompress_image(Path({str(tmp_path / "in.samic")!r}).read_bytes(), model)
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(theirs.tobytes()).hexdigest())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [sha(encoded), sha(decoded.tobytes())]


@pytest.fixture(scope="module")
def shipped_model():
    from samic.weights import default_weights_path, load_model

    if not default_weights_path().is_file():
        pytest.skip("no shipped weights in samic/assets/weights")
    return load_model()


@pytest.mark.parametrize("quality", [0.0, 0.5, 1.0])
def test_file_size_matches_the_likelihood_estimate(shipped_model, quality):
    """A trained entropy model: a random one at a high gain puts many latents in the likelihood
    floor, where the estimate over-counts what the escape codes actually spend."""
    image = kodak_crop("kodim23.png", 256, 256, top=100, left=200)
    data = compress_image(image, quality, shipped_model)
    with torch.no_grad():
        out = shipped_model(to_tensor(image, "cpu", torch.float32), quality)
    estimate = sum(float(-torch.log2(lik).sum()) for lik in out.likelihoods.values())
    header = read_header(data)
    payload_bits = 8 * (header.z_length + header.y_length)
    # Range-coder termination (<= 2 words per stream) plus ~1 % for snapped scales.
    assert abs(payload_bits - estimate) <= 0.02 * estimate + 128


def test_extreme_latents_are_escaped_losslessly(crop):
    model = tiny_model()
    with torch.no_grad():  # a large gain puts y far outside every predicted scale
        model.gain_units.log_gain.add_(9.0)
        model.gain_units.log_inverse_gain.sub_(9.0)
    data = compress_image(crop, QUALITY, model)
    assert decompress_image(data, model).shape == crop.shape  # the y checksum matched
    with torch.no_grad():
        y, _, _ = model.analysis(pad_to_multiple(to_tensor(crop, "cpu", torch.float32)), model.quality_tensor(QUALITY, 1))
    assert float(y.abs().max()) > TAIL_SIGMAS * SCALE_MAX + 1  # beyond even the widest Gaussian table


@pytest.mark.parametrize("method", ["params", "residual"])
def test_a_diverging_decoder_fails_loudly(model, encoded, monkeypatch, method):
    """If the decoder's entropy parameters ever differ from the encoder's (another machine's
    arithmetic), the latent checksums turn that into a FormatError, never a wrong image."""
    nets = entropy_coding(model).nets
    original = getattr(nets, method)

    def nudged(tensor):  # one value one grid step off
        tensor = tensor.clone()
        tensor.view(-1)[0] += MEAN_STEP
        return tensor

    def diverged(*args):
        result = original(*args)
        if method == "params":  # (mean, scale index): nudge the mean
            return nudged(result[0]), result[1]
        return nudged(result)

    monkeypatch.setattr(nets, method, diverged)
    with pytest.raises(FormatError, match="checksum|invalid entropy-coded data"):
        decompress_image(encoded, model)


@pytest.mark.slow  # loads samic-lite: several seconds, more while numba's and torch's threads contend
def test_default_model_is_the_shipped_one(crop):
    from samic.weights import default_weights_path

    if not default_weights_path().is_file():
        pytest.skip("no shipped weights in samic/assets/weights")
    data = samic.compress_image(crop[:64, :64], 0.5)
    assert read_header(data).model_name == "samic-lite"
    assert samic.decompress_image(data).shape == (64, 64, 3)


# ----------------------------------------------------------------------------- models and versions
def test_model_digest_follows_the_weights_not_their_dtype():
    model = tiny_model()
    digest = model_digest(model)
    assert len(digest) == 8
    assert model_digest(copy.deepcopy(model).double()) == digest
    with_perceptual = copy.deepcopy(model)
    with_perceptual.add_perceptual_decoder()
    assert model_digest(with_perceptual) == digest  # the perceptual decoder is a decode-time choice
    with torch.no_grad():
        model.charm.mean_transforms[0][0].bias[0] += 1e-3  # in place: the cache must notice
    assert model_digest(model) != digest


def test_wrong_weights_are_refused_with_the_needed_model(encoded):
    with pytest.raises(FormatError, match=f"samic-tiny.*{read_header(encoded).weights_digest.hex()}"):
        decompress_image(encoded, tiny_model(seed=1))
    with pytest.raises(FormatError, match="needs the samic-tiny model"):
        decompress_image(encoded, SAMIC("samic-lite").eval())


def test_other_format_versions_are_refused_with_the_needed_version(encoded):
    with pytest.raises(FormatError, match="format version 3; this samic reads versions 1, 2"):
        decompress_image(with_field(encoded, "version", 3), tiny_model())


@pytest.mark.parametrize("order", ["semantic", "raster", "random"])
def test_the_scan_order_is_stored_and_the_decoder_follows_it(model, crop, order):
    """h_s's SAMB is in the entropy model's path: a file made in raster or random order
    decodes only if the decoder scans the same way, so the order is a header field."""
    data = compress_image(crop, QUALITY, model, scan_order=order)
    header = read_header(data)
    assert header.scan_order == order and header.version == bitstream.FORMAT_VERSION == 2
    rgb = decompress_image(data, model)
    assert rgb.shape == crop.shape
    if order != "semantic":  # a different order is a different file and picture
        semantic = compress_image(crop, QUALITY, model)
        assert data != semantic
        assert not np.array_equal(rgb, decompress_image(semantic, model))


def test_unknown_scan_orders_are_refused(model, crop, encoded):
    with pytest.raises(ValueError, match="unknown scan order 'zigzag'"):
        compress_image(crop, QUALITY, model, scan_order="zigzag")
    corrupt = with_field(encoded, "scan_order", 7)
    with pytest.raises(FormatError, match="unknown scan order code 7"):
        decompress_image(corrupt, model)


def test_version_1_files_decode_as_semantic_order(model, crop, encoded):
    """A version-1 file (no scan-order byte) is the same file without that byte."""
    offset = bitstream.field_offsets(encoded)["scan_order"][0]
    v1 = bytearray(encoded[:offset] + encoded[offset + 1:])
    v1[4] = 1
    v1 = with_field(bytes(v1), "crc", 0)  # (with_field recomputes the CRC)
    header = read_header(v1)
    assert header.version == 1 and header.scan_order == "semantic" and header.size == read_header(encoded).size - 1
    assert np.array_equal(decompress_image(v1, model), decompress_image(encoded, model))


@pytest.mark.parametrize("edit, message", [
    (lambda d: b"", "too short"),
    (lambda d: b"GIF89a not a samic file", "wrong magic"),
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\0", "trailing bytes"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "CRC32"),
    (lambda d: with_field(d, "name_length", 0), "model name"),
    (lambda d: with_field(d, "height", 0), "at least one pixel"),
    (lambda d: with_field(d, "width", 2 ** 32 - 1), "too large"),
    (lambda d: with_field(with_field(d, "height", 10_000), "width", 5_000), "too large"),
    (lambda d: with_field(d, "width", 1_000_000), "too large"),  # 1M x 96 is < 40 MP, but padded 64 MP x 2
    (lambda d: with_field(d, "quality", float("nan")), "quality"),
    (lambda d: with_field(d, "z_length", read_header(d).z_length + 1), "multiples of 4"),
    (lambda d: with_field(d, "z_length", read_header(d).z_length + 4), "trailing|truncated"),
    (lambda d: with_field(d, "z_checksum", read_header(d).z_checksum ^ 1), "hyper-latents do not match"),
    (lambda d: with_field(d, "y_checksum", read_header(d).y_checksum ^ 1), "latents do not match"),
])
def test_invalid_headers_are_refused_clearly(model, encoded, edit, message):
    with pytest.raises(FormatError, match=message):
        decompress_image(edit(encoded), model)


def test_decoder_choice(model, encoded, decoded):
    assert np.array_equal(decompress_image(encoded, model, decoder="mse"), decoded)
    with pytest.raises(ValueError, match="no 'perceptual' decoder"):
        decompress_image(encoded, model, decoder="perceptual")
    with pytest.raises(ValueError, match="unknown decoder"):
        decompress_image(encoded, model, decoder="sharp")
    two_decoders = copy.deepcopy(model)
    with torch.no_grad():
        for p in two_decoders.add_perceptual_decoder().parameters():
            p.add_(0.05)
    perceptual = decompress_image(encoded, two_decoders, decoder="perceptual")
    assert np.array_equal(decompress_image(encoded, two_decoders), perceptual)  # default: perceptual
    assert not np.array_equal(perceptual, decoded)


@pytest.mark.parametrize("quality", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_invalid_quality_is_refused(model, crop, quality):
    with pytest.raises((ValueError, TypeError)):
        compress_image(crop, quality, model)


def test_package_exports_are_lazy():
    code = ("import sys, samic, samic.codec; assert 'torch' not in sys.modules; "
            "assert samic.compress_image is samic.codec.compress_image; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert samic.decompress_image is decompress_image


# ----------------------------------------------------------------------------- input images
def png_bytes(array: np.ndarray, bit_depth: int, color_type: int, size: tuple[int, int] | None = None) -> bytes:
    """A minimal PNG (Pillow cannot write 16-bit colour); ``size`` overrides the IHDR (w, h)."""
    height, width = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + array[row].astype(dtype).tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", *(size or (width, height)), bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_unreadable_files_raise_image_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    (tmp_path / "cut.png").write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8) + 77, 8, 2)[:-40])
    for name, message in (("empty.png", "empty"), ("notes.png", "not an image"), ("cut.png", "damaged or truncated")):
        with pytest.raises(ImageError, match=message):
            load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(TypeError):
        load_image(b"\x89PNG")


def test_huge_images_are_refused_before_decoding_their_pixels(tmp_path):
    pixels = np.zeros((1, 1, 3), np.uint8)
    (tmp_path / "64mp.png").write_bytes(png_bytes(pixels, 8, 2, size=(8000, 8000)))  # over our limit
    (tmp_path / "bomb.png").write_bytes(png_bytes(pixels, 8, 2, size=(30000, 30000)))  # over Pillow's
    memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "64mp.png")
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory_before < 50_000  # KiB: nothing allocated


@pytest.mark.parametrize("height, width", [(1, 1), (13, 7), (7, 13), (1, 70), (65, 1)])
def test_tiny_and_odd_sizes_round_trip(model, height, width):
    image = kodak_crop(height=height, width=width)
    assert decompress_image(compress_image(image, QUALITY, model), model).shape == (height, width, 3)


def test_16_bit_pngs_are_rounded_to_8_bits(tmp_path, model):
    gray = np.array([[0, 128, 129, 385, 386, 25800, 65535, 65407]], dtype=np.uint16)
    (tmp_path / "gray16.png").write_bytes(png_bytes(gray, 16, 0))
    loaded = load_image(tmp_path / "gray16.png")
    expected = np.array([0, 0, 1, 1, 2, 100, 255, 255], dtype=np.uint8)  # round(v / 257)
    assert np.array_equal(loaded, np.repeat(expected[None, :, None], 3, axis=2))
    color = np.random.default_rng(0).integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    (tmp_path / "rgb16.png").write_bytes(png_bytes(color, 16, 2))
    loaded = load_image(tmp_path / "rgb16.png")  # Pillow gives the high byte of 16-bit colour
    assert loaded.shape == (9, 11, 3) and np.abs(loaded.astype(int) - np.rint(color / 257)).max() <= 1
    assert decompress_image(compress_image(tmp_path / "rgb16.png", QUALITY, model), model).shape == (9, 11, 3)
    assert np.array_equal(load_image(gray), np.repeat(expected[None, :, None], 3, axis=2))  # uint16 arrays too


def test_palette_and_alpha_images(tmp_path, model):
    image = Image.fromarray(kodak_crop(height=20, width=30))
    image.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.gif")
    expected = np.array(Image.open(tmp_path / "palette.gif").convert("RGB"))
    assert np.array_equal(load_image(tmp_path / "palette.gif"), expected)
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0] = [[255, 0, 0, 255], [255, 0, 0, 128], [0, 0, 255, 0]]
    rgba[1] = [[10, 20, 30, 1], [200, 100, 50, 254], [0, 0, 0, 128]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    over_white = [[[255, 0, 0], [255, 127, 127], [255, 255, 255]], [[254, 254, 254], [200, 101, 51], [127, 127, 127]]]
    assert np.array_equal(load_image(tmp_path / "alpha.png"), np.array(over_white, np.uint8))
    assert np.array_equal(load_image(rgba), np.array(over_white, np.uint8))
    Image.fromarray(rgba[..., [0, 3]].copy(), "LA").save(tmp_path / "gray_alpha.png")
    assert load_image(tmp_path / "gray_alpha.png")[0, 2].tolist() == [255, 255, 255]
    Image.fromarray(kodak_crop(height=16, width=16)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").shape == (16, 16, 3)
    for name in ("palette.gif", "alpha.png", "cmyk.jpg"):
        data = compress_image(tmp_path / name, QUALITY, model)
        assert decompress_image(data, model).shape[2] == 3


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((10, 20, 3), np.uint8)  # left half red, right half blue, as stored
    stored[:, :10] = [255, 0, 0]
    stored[:, 10:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer must rotate 90 degrees clockwise: left becomes top
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "rotated.jpg")
    assert upright.shape == (20, 10, 3)
    assert upright[2, 5, 0] > 200 and upright[2, 5, 2] < 60  # top: red
    assert upright[17, 5, 2] > 200 and upright[17, 5, 0] < 60  # bottom: blue


# ----------------------------------------------------------------------------- robustness
def test_sampled_mutations_decode_or_raise_format_error(model, encoded):
    """200 random mutations (benchmarks/fuzz_codec.py runs thousands)."""
    rng = random.Random(1234)
    outcomes = {"decoded": 0, "format_error": 0}
    for _ in range(200):
        kind, data = mutate(encoded, rng)
        start = time.perf_counter()
        try:
            image = decompress_image(data, model)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, kind
            outcomes["decoded"] += 1
        except FormatError:
            outcomes["format_error"] += 1
        assert time.perf_counter() - start < 10, kind
    assert outcomes["format_error"] > 150


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_encoded_on_gpu_decodes_on_cpu():
    rows, cols = np.mgrid[0:96, 0:128]  # synthetic: the shared data set may be absent on GPU hosts
    noise = np.random.default_rng(0).integers(0, 40, (96, 128, 3))
    crop = np.clip(np.stack([rows * 2, cols * 2, 255 - rows - cols], -1) + noise, 0, 255).astype(np.uint8)
    cpu_model = tiny_model()
    gpu_model = copy.deepcopy(cpu_model).cuda()
    assert model_digest(gpu_model) == model_digest(cpu_model)
    on_gpu = compress_image(crop, QUALITY, gpu_model)
    decoded_on_cpu = decompress_image(on_gpu, cpu_model)  # passes the latent checksums
    decoded_on_gpu = decompress_image(on_gpu, gpu_model)
    # Same latents; only g_s's float32 arithmetic differs between the devices.
    assert np.abs(decoded_on_cpu.astype(int) - decoded_on_gpu.astype(int)).max() <= 2
    on_cpu = compress_image(crop, QUALITY, cpu_model)
    assert abs(len(on_gpu) - len(on_cpu)) <= 0.05 * len(on_cpu) + 8
