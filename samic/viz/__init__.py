"""Visualization of what SAMIC does to one image (the app and the notebooks use this).

``inspect_image`` is the one typed call: real codec round trip, metrics and the network's
intermediates (see samic.viz.inspect); samic.viz.render turns the result into pictures.
"""
from samic.viz.inspect import (
    BlockClusters,
    Inspection,
    RDPoint,
    Spectrum,
    cached_inspect_image,
    cached_rd_curves,
    classical_rd_curves,
    inspect_image,
    prepare_image,
    rd_curve,
)

__all__ = ["BlockClusters", "Inspection", "RDPoint", "Spectrum", "cached_inspect_image", "cached_rd_curves",
           "classical_rd_curves", "inspect_image", "prepare_image", "rd_curve"]
