"""Visualization of what SAMIC does to one image (the app and the notebooks use this).

``inspect_image`` is the one typed call: real codec round trip, metrics and the network's
intermediates (see samic.viz.inspect); samic.viz.render turns the result into pictures;
samic.viz.scan compares the scan orders and shows a router's spatial prior.
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
from samic.viz.scan import (
    PositionPrior,
    ScanOrderPoint,
    compare_scan_orders,
    pick_cluster,
    position_only_clusters,
    router_gates,
    scan_order_summary,
)

__all__ = ["BlockClusters", "Inspection", "PositionPrior", "RDPoint", "ScanOrderPoint", "Spectrum",
           "cached_inspect_image", "cached_rd_curves", "classical_rd_curves", "compare_scan_orders",
           "inspect_image", "pick_cluster", "position_only_clusters", "prepare_image", "rd_curve", "router_gates",
           "scan_order_summary"]
