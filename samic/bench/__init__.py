"""Benchmark engines: the measurements behind ``samic bench ...`` and ``benchmarks/``.

Engines live here and return plain data (dicts, NamedTuples); their command-line front ends
live in ``samic.commands`` (argument parsing, one-line user errors, printing). One module per
benchmark family, e.g. ``codec`` (speed/memory against size, presets side by side),
``clusters``, ``scan_ablation``, ``train``. Engines pick SAMB's scan backend and trace hooks
through explicit parameters, never by replacing module attributes.
"""
