"""SAMIC models and presets."""
from samic.models.presets import DEFAULT_MODEL, PRESETS, ModelConfig, get_config
from samic.models.samic import SAMIC, SAMICIntermediates, SAMICOutput

__all__ = ["SAMIC", "SAMICOutput", "SAMICIntermediates", "ModelConfig", "PRESETS", "DEFAULT_MODEL", "get_config"]
