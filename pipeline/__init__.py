"""dstrain: a containerised training pipeline for DeepSpeech models in any language."""

__version__ = "0.1.0"
