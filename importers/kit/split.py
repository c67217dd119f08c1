"""Splitting a corpus that has no official split: by speaker, reproducibly.

All of a speaker's clips go to one split, chosen from a hash of the speaker's
id.  The same input always gives the same split, and a later release of the
corpus leaves every known speaker where it was, so nobody heard in test ever
moves into train.
"""
import hashlib
from typing import Sequence

from dstrain.pipeline.paths import SPLITS


def split_of(speaker: str, shares: Sequence[float]) -> str:
    """The split of every clip of ``speaker``."""
    digest = hashlib.sha256(speaker.encode("utf-8")).digest()
    point = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    bound = 0.0
    for split, share in zip(SPLITS, shares):
        bound += share
        if point < bound:
            return split
    return [split for split, share in zip(SPLITS, shares) if share > 0][-1]  # shares summing to 0.9999999
