"""The parameters corpora share: the source (archive, url, sha256), the longest clip, and speaker shares."""
from typing import Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dstrain.pipeline.settings import SHA256


class CorpusParams(BaseModel):
    """The parameters every corpus has.  A corpus's own ``Params`` adds its fields, and declares one of these
    again only to give it another default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archive: Optional[str] = Field(None, description="the source's file name in sources/ (default: as published)")
    url: Optional[str] = Field(None, description="where to download the source from (default: where it is published)")
    sha256: Optional[str] = Field(None, pattern=SHA256, description="the source's sha256, as sha256sum prints it")
    max_duration: float = Field(10.0, gt=0, description="longest clip kept, in seconds")


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
