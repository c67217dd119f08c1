"""The corpus contract: what a module under ``importers/`` provides, and what every corpus shares.

A corpus module defines a ``Corpus`` subclass and exports one instance as
``CORPUS``; the pipeline finds it by the module's name (pipeline/registry.py)
and calls only what is declared here:

- ``Params``: its parameters, a ``CorpusParams`` subclass (unknown keys refused);
- ``archive_path(params, sources_dir)``: where its source lives in ``sources/``;
- ``download(params, sources_dir) -> sha256``: get the source and verify it;
- ``prepare(archive, sha256, out_dir, normalize, params, workers) -> manifest``:
  write DeepSpeech CSVs, ``rejects.csv`` and ``manifest.json`` into ``out_dir``;
- ``version``: bumped when ``prepare`` writes something else for the same input.

docs/adding-a-corpus.md walks through writing one.
"""
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Type

from pydantic import BaseModel, ConfigDict, Field

from dstrain.pipeline.settings import SHA256
from dstrain.pipeline.sources.fetch import obtain

Normalize = Callable[[str], Optional[str]]


class CorpusParams(BaseModel):
    """The parameters every corpus has.  A corpus's own ``Params`` adds its fields, and declares one of these
    again only to give it another default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archive: Optional[str] = Field(None, description="the source's file name in sources/ (default: as published)")
    url: Optional[str] = Field(None, description="where to download the source from (default: where it is published)")
    sha256: Optional[str] = Field(None, pattern=SHA256, description="the source's sha256, as sha256sum prints it")
    max_duration: float = Field(10.0, gt=0, description="longest clip kept, in seconds")


class Corpus(ABC):
    """One corpus: how its source is named and fetched, and how it becomes DeepSpeech's CSVs.

    Its name is its module's (``common_voice``), as languages name it in ``DatasetSpec``.
    """

    Params: ClassVar[Type[CorpusParams]] = CorpusParams
    #: Bump when prepare writes something else for the same input: every import of the corpus is then redone.
    version: ClassVar[int] = 1
    #: What the manifest and the model card say of its licence.
    licence: ClassVar[str]
    #: Where people read about the corpus and get it by hand.
    homepage: ClassVar[str]

    @property
    def name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    def archive_name(self, params) -> str:
        """The source's file name when ``params.archive`` is not set (a corpus whose ``Params`` gives
        ``archive`` a default needs none)."""
        raise NotImplementedError(f"{self.name}: archive is not set and the corpus names no default")

    def archive_path(self, params, sources: Path) -> Path:
        return Path(sources) / (params.archive or self.archive_name(params))

    def source_url(self, params) -> Optional[str]:
        """Where ``download`` gets the source; None leaves it to the user."""
        return params.url

    def how_to_get(self, params) -> str:
        """What the user can do when the source cannot be downloaded."""
        return f"Download it from {self.homepage}."

    def download(self, params, sources: Path) -> str:
        """The verified sha256 of the source, downloaded first unless it is already in ``sources``."""
        return obtain(self.archive_path(params, sources), params.sha256, self.source_url(params), None,
                      self.how_to_get(params))

    def manifest(self, archive: Path, sha256: str, params, **facts: Any) -> Dict[str, Any]:
        """The manifest's common part (the source, the licence), plus what this corpus says of itself;
        ``assemble`` adds the counts."""
        return dict(facts, importer=self.name, importer_version=self.version, licence=self.licence,
                    source={"archive": archive.name, "sha256": sha256, "url": self.source_url(params) or self.homepage})

    @abstractmethod
    def prepare(self, archive: Path, sha256: str, out_dir: Path, normalize: Normalize, params, workers: int) -> dict:
        """Write DeepSpeech CSVs, ``rejects.csv`` and ``manifest.json`` into ``out_dir``; return the manifest."""
