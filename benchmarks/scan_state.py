"""How much each SAMB's selective-scan state contributes, block by block (issue 13's diagnosis).

    python benchmarks/scan_state.py [--image ../shared/data/kodak/kodim04.png] [--quality 0.5] [--weights W]

For every SAMB of one forward pass: the step size dt = softplus(dt_bias) (median) and A (median),
which set the state's memory; |D·u| and |C·h| at the scan's output (C·h = scan output - D·u) and
the share of C·h that varies from token to token; and what removing the recurrence (state-less,
y = D·u) or the semantic order (raster) changes in the block's output, against the block's
whole residual update |out - x|. Each block is run on its own recorded input (forward hooks,
and a recording wrapper around one block instance's ``_scan`` while it runs: a diagnostic, not a
code path of the library).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from samic.codec.image_io import load_image
from samic.layers.samb import SAMB, ScanSettings
from samic.weights import load_model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default="../shared/data/kodak/kodim04.png")
    p.add_argument("--quality", type=float, default=0.5)
    p.add_argument("--weights", default=None, help="weights file (default: the shipped samic-lite)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    x = torch.from_numpy(np.require(load_image(args.image), requirements=("C", "W"))).permute(2, 0, 1)[None] / 255.0
    inputs, scans = {}, {}
    names = {module: name for name, module in model.named_modules() if isinstance(module, SAMB)}
    hooks = [m.register_forward_pre_hook(lambda m, a: inputs.setdefault(names[m], a[0])) for m in names]
    with torch.no_grad():
        model(x, quality=args.quality)
    for h in hooks:
        h.remove()
    print(f"| block | dt median | A median | abs(D u) | abs(C h) | token-varying share of C h | "
          f"abs(out - x) | abs(out - stateless) | abs(out - raster) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with torch.no_grad():
        for module, name in names.items():
            if name not in inputs:
                continue
            xi = inputs[name]
            full = module(xi)[0]
            stateless = module(xi, scan=ScanSettings(recurrence=False))[0]
            raster = module(xi, scan=ScanSettings(order="raster"))[0]
            captured = {}
            original = module._scan

            def recording(xs, prompt, scan=ScanSettings()):
                captured["u"], captured["y"] = xs, original(xs, prompt, scan)
                return captured["y"]

            module._scan = recording  # instance attribute, removed below
            try:
                module(xi)
            finally:
                del module._scan
            du = captured["u"] * module.D.view(module.directions, -1).sum(0)
            ch = captured["y"] - du
            varying = (ch - ch.mean(1, keepdim=True)).norm() / ch.norm()
            print(f"| {name} | {F.softplus(module.dt_bias).median():.4f} | {module.A_log.exp().median():.1f} | "
                  f"{du.norm():.1f} | {ch.norm():.1f} | {varying:.2f} | {(full - xi).norm():.1f} | "
                  f"{(full - stateless).norm():.2f} | {(full - raster).norm():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
