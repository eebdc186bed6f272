"""Grids of SAMIC's rate knob ``quality`` in [0, 1]: the one home of every SAMIC sweep.

Imports nothing, so that command-line parsers can show the defaults without loading torch.
The classical codecs' sweeps are in their own units and live with them (samic.eval.classical,
samic.commands.eval, samic.viz.inspect).
"""

VALIDATION_QUALITIES = (0.0, 0.25, 0.5, 0.75, 1.0)  # training validation, bench train, the app's RD curve
RD_QUALITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # samic eval's sweep, the scan ablation's curves
MIDDLE_QUALITY = 0.5  # the single reported point: scan ablation's own row, bench clusters' default
