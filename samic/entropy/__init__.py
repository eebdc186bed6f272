"""Entropy models (factorized prior, Gaussian conditional, ChARM)."""
from samic.entropy.models import ChannelARM, EntropyBottleneck, GaussianConditional, ste_round

__all__ = ["ChannelARM", "EntropyBottleneck", "GaussianConditional", "ste_round"]
