"""A stand-in for optuna, for dstrain's tests only: its version, which the check stage's probe reads (the
DeepSpeech double's lm_optimizer.py prints optuna's lines itself)."""
__version__ = "2.10.1"
