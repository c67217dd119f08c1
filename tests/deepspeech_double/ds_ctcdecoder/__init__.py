"""A stand-in for DeepSpeech 0.9.3's decoder package, for dstrain's tests only: its version, which the check
stage's probe reads."""
__version__ = "0.9.3"
