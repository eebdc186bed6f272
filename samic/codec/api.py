"""compress_image / decompress_image: images <-> .samic bytes.

    image ─► load_image (uint8 RGB) ─► pad ─► g_a, h_a (model's device/dtype) ─► y, z
          ─► LatentCodec.compress (float64 CPU entropy parameters, range coder) ─► header + streams

    bytes ─► unpack (validated header) ─► LatentCodec.decompress (same float64 path, checksums)
          ─► y_hat ─► g_s (model's device/dtype) ─► crop, clamp, round ─► uint8 (H, W, 3)

``encode_traced`` / ``decode_traced`` run exactly the same code and also return what it did
(EncodeTrace / DecodeTrace: SAMB clusters and scan orders, the SVD-RRM spectrum, the bits of
every latent position, phase timings); compress_image / decompress_image are them without it.
"""
from __future__ import annotations

import contextlib
import functools
import math
import numbers

from typing import NamedTuple

import numpy as np
import torch

from samic.codec import bitstream
from samic.codec.errors import FormatError
from samic.codec.image_io import load_image
from samic.codec.memory import reusing_large_buffers
from samic.entropy.latent_codec import LatentStreams, LatentTrace, PhaseTimer, model_digest
from samic.layers.samb import SAMBIntermediates, ScanSettings
from samic.layers.svd_rrm import SpectrumIntermediates
from samic.models.samic import DECODERS, PAD_MULTIPLE, SAMIC, pad_to_multiple


class EncodeTrace(NamedTuple):
    """What one compress did (batch 1; y on an h x w grid, h = H'/16 for the padded H', z on h/4 x w/4)."""

    samb: dict[str, SAMBIntermediates]  # "g_a.stage2", "h_a.samb" (model's device), "h_s.samb" (float64 coding copy)
    spectrum: SpectrumIntermediates | None  # SVD-RRM on y, None for presets without it
    latents: LatentTrace  # y_hat, symbols, scale indices, bits_y (h, w), bits_z (h/4, w/4)
    z_bytes: int  # length of the z stream
    y_bytes: int  # length of the y stream
    seconds: dict[str, float]  # per phase: analysis, entropy_parameters, entropy_coding
    padded_size: tuple[int, int]  # (H', W')


class DecodeTrace(NamedTuple):
    """What one decompress did (shapes as in EncodeTrace)."""

    samb: dict[str, SAMBIntermediates]  # "h_s.samb" (float64 coding copy), "g_s.stage3", ... (the chosen decoder)
    latents: LatentTrace
    decoder: str  # "mse" or "perceptual"
    seconds: dict[str, float]  # per phase: entropy_parameters, entropy_coding, synthesis


@functools.lru_cache(maxsize=None)
def default_model(name: str | None = None) -> SAMIC:
    """The shipped weights for preset ``name`` (None: the default preset), via samic.weights;
    loaded once per process (loading verifies a sha256 and the codec caches per model)."""
    from samic.weights import load_model  # lazy: needs safetensors and the weights files

    return load_model(name)


@contextlib.contextmanager
def _eval_mode(model: SAMIC):
    """Run ``model`` in eval mode (training mode adds Gumbel noise to SAMB), then restore it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _model_device_dtype(model: SAMIC) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def _check_quality(quality) -> float:
    """A real number in [0, 1] -> its float32 value (what the header stores and g_a/g_s use)."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real):
        raise TypeError(f"quality must be a number in [0, 1], got {type(quality).__name__}")
    if not (math.isfinite(quality) and 0.0 <= quality <= 1.0):
        raise ValueError(f"quality must be in [0, 1], got {quality}")
    return float(np.float32(quality))


def to_tensor(rgb: np.ndarray, device, dtype) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) in [0, 1]."""
    return torch.tensor(rgb, device=device).permute(2, 0, 1)[None].to(dtype) / 255


def to_uint8(x_hat: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) -> uint8 (H, W, 3): clamp to [0, 1], scale, round half to even."""
    return torch.round(x_hat[0].float().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
@reusing_large_buffers  # flat time per pixel: see samic/codec/memory.py
def _encode(image, quality: float, model: SAMIC | None, timer: PhaseTimer | None,
            record: dict | None, scan_backend: str = "auto",
            scan_order: str = "semantic") -> tuple[bytes, EncodeTrace]:
    timer = timer or PhaseTimer()
    quality = _check_quality(quality)
    scan = ScanSettings(order=scan_order, backend=scan_backend).validated()
    rgb = load_image(image)
    model = default_model() if model is None else model
    device, dtype = _model_device_dtype(model)
    height, width = rgb.shape[:2]
    with _eval_mode(model), timer.phase("analysis"):
        x = pad_to_multiple(to_tensor(rgb, device, dtype))
        y, z, spectrum = model.analysis(x, model.quality_tensor(quality, 1, device).to(dtype), record, scan)
    # the float64 entropy path picks its own scan backend; the order must be the file's
    streams, latents = model.latent_codec.compress(y, z, timer, record, ScanSettings(order=scan_order))
    header = bitstream.Header(model_name=model.config.name, weights_digest=model_digest(model),
                              height=height, width=width, quality=quality, scan_order=scan_order,
                              z_length=len(streams.z_stream), y_length=len(streams.y_stream),
                              z_checksum=streams.z_checksum, y_checksum=streams.y_checksum)
    trace = EncodeTrace(samb=record, spectrum=spectrum, latents=latents, z_bytes=len(streams.z_stream),
                        y_bytes=len(streams.y_stream), seconds=timer.seconds, padded_size=tuple(x.shape[-2:]))
    return bitstream.pack(header, streams.z_stream, streams.y_stream), trace


def compress_image(image, quality: float, model: SAMIC | None = None, timer: PhaseTimer | None = None,
                   scan_backend: str = "auto", scan_order: str = "semantic") -> bytes:
    """Compress an image to .samic bytes.

    image: a path, a PIL image or a uint8 (H, W, 3) array (conversion rule: samic.codec.image_io).
    quality: rate knob in [0, 1] (higher: more bits). model: a SAMIC (None: shipped default).
    ``timer`` accumulates seconds per phase ("analysis", "entropy_parameters", "entropy_coding").
    ``scan_backend``: the selective-scan backend of g_a/h_a's SAMBs on the model's device
    (samic.ops.scan; the float64 CPU entropy path always uses "auto").
    ``scan_order``: every SAMB's scan order, "semantic" (the paper's), "raster" or "random";
    stored in the file, so the decoder follows it.
    """
    return _encode(image, quality, model, timer, None, scan_backend, scan_order)[0]


def encode_traced(image, quality: float, model: SAMIC | None = None,
                  scan_order: str = "semantic") -> tuple[bytes, EncodeTrace]:
    """compress_image, plus the EncodeTrace of that very encode."""
    return _encode(image, quality, model, None, {}, scan_order=scan_order)


def read_header(data: bytes) -> bitstream.Header:
    """The validated header of .samic bytes (FormatError if they are not a valid file)."""
    return bitstream.unpack(data)[0]


def _check_model(header: bitstream.Header, model: SAMIC) -> None:
    if model.config.name != header.model_name or model_digest(model) != header.weights_digest:
        raise FormatError(
            f"this file needs the {header.model_name} model with weights digest {header.weights_digest.hex()}; "
            f"the given model is {model.config.name} with digest {model_digest(model).hex()}")


def choose_decoder(model: SAMIC, decoder: str | None) -> str:
    """The decoder to use: ``decoder`` if the model has it (ValueError if not); for None,
    perceptual when the model has it and mse otherwise."""
    if decoder is None:  # the caller did not choose: the best the model has
        return "perceptual" if "perceptual" in model.decoders else "mse"
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose {' or '.join(map(repr, DECODERS))}")
    if decoder not in model.decoders:
        raise ValueError(f"the {model.config.name} weights have no {decoder!r} decoder (they have: "
                         f"{', '.join(model.decoders)})")
    return decoder


def hyper_latent_shape(model: SAMIC, height: int, width: int) -> tuple[int, int, int, int]:
    """Shape of z (batch 1) for an image of height x width; y's follows from h_s (4x larger)."""
    padded_h, padded_w = (-(-side // PAD_MULTIPLE) * PAD_MULTIPLE for side in (height, width))
    return 1, model.config.Nz, padded_h // PAD_MULTIPLE, padded_w // PAD_MULTIPLE


@torch.no_grad()
@reusing_large_buffers
def _decode(data: bytes, model: SAMIC | None, decoder: str | None, timer: PhaseTimer | None,
            record: dict | None, scan_backend: str = "auto") -> tuple[np.ndarray, DecodeTrace]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    timer = timer or PhaseTimer()
    header, z_stream, y_stream = bitstream.unpack(data)
    model = default_model(header.model_name) if model is None else model
    _check_model(header, model)
    decoder = choose_decoder(model, decoder)
    streams = LatentStreams(z_stream=z_stream, y_stream=y_stream, z_checksum=header.z_checksum,
                            y_checksum=header.y_checksum)
    latents = model.latent_codec.decompress(hyper_latent_shape(model, header.height, header.width), streams,
                                            timer, record, ScanSettings(order=header.scan_order))
    device, dtype = _model_device_dtype(model)
    with _eval_mode(model), timer.phase("synthesis"):
        quality = model.quality_tensor(header.quality, 1, device).to(dtype)
        x_hat = model.synthesis(latents.y_hat.to(device, dtype), quality, decoder, record,
                                ScanSettings(order=header.scan_order, backend=scan_backend))
        rgb = to_uint8(x_hat[:, :, :header.height, :header.width])
    return rgb, DecodeTrace(samb=record, latents=latents, decoder=decoder, seconds=timer.seconds)


def decompress_image(data: bytes, model: SAMIC | None = None, decoder: str | None = None,
                     timer: PhaseTimer | None = None, scan_backend: str = "auto") -> np.ndarray:
    """Decode .samic bytes -> uint8 (H, W, 3).

    model: a SAMIC with the weights that made the file (None: the shipped weights of the
    preset named in the header). decoder: "mse", "perceptual", or None for perceptual when
    the model has it and mse otherwise. Raises FormatError for corrupt or incompatible data.
    ``scan_backend``: as in compress_image, for g_s.
    """
    return _decode(data, model, decoder, timer, None, scan_backend)[0]


def decode_traced(data: bytes, model: SAMIC | None = None, decoder: str | None = None) -> tuple[np.ndarray, DecodeTrace]:
    """decompress_image, plus the DecodeTrace of that very decode."""
    return _decode(data, model, decoder, None, {})
