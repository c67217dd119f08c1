"""Splitting a corpus that has no official split: by speaker, reproducibly.

All of a speaker's clips go to one split, chosen from a hash of the speaker's
id.  The same input always gives the same split, and a later release of the
corpus leaves every known speaker where it was, so nobody heard in test ever
moves into train.
"""
import hashlib
from typing import Sequence, Tuple

from pydantic import Field, field_validator

from dstrain.importers.kit.contract import CorpusParams
from dstrain.pipeline.paths import SPLITS


class SpeakerSplit(CorpusParams):
    """The parameters of corpora that split by speaker."""

    split: Tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="shares of the speakers that go to train, dev and test, e.g. 0.8,0.1,0.1")

    @field_validator("split", mode="before")
    @classmethod
    def _from_text(cls, value):
        # From the environment it comes as text.
        return value.split(",") if isinstance(value, str) else value

    @field_validator("split")
    @classmethod
    def _shares(cls, value):
        if min(value) < 0 or abs(sum(value) - 1) > 1e-6:
            raise ValueError("give three shares >= 0 that add up to 1, e.g. [0.8, 0.1, 0.1]")
        return value


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
