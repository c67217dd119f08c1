"""A test double of DeepSpeech 0.9.3's training package, for dstrain's tests only (see train.py)."""
