"""Low-level ops: the selective scan and its backends."""
from samic.ops.scan import BACKENDS, available_backends, select_backend, selective_scan

__all__ = ["selective_scan", "available_backends", "select_backend", "BACKENDS"]
