"""The corpus contract: what a module under ``importers/`` provides, and what every corpus shares.

A corpus module defines a ``Corpus`` subclass and exports one instance as
``CORPUS``; the pipeline finds it by the module's name (pipeline/registry.py)
and calls only what is declared here:

- ``Params``: its parameters, a ``CorpusParams`` subclass (unknown keys refused);
- ``archive_path(params, sources_dir)``: where its source lives in ``sources/``;
- ``download(params, sources_dir) -> sha256``: get the source and verify it;
- ``prepare(archive, sha256, out_dir, normalize, params, workers, clips) -> manifest``:
  write the train/dev/test sets (DeepSpeech CSVs of WAVs, or sample databases: ``clips``),
  ``rejects.csv`` and ``manifest.json`` into ``out_dir``;
- ``version``: bumped when ``prepare`` writes something else for the same input.

A corpus itself writes little more than ``read``: the rows of its source as
candidates (clip, label, split) and rejects (row, reason).  Converting,
judging and writing the outputs are the same for all (assemble.py).
docs/adding-a-corpus.md walks through writing one.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple, Type
from urllib.parse import quote

from dstrain.importers.kit.assemble import Candidate, Members, assemble
from dstrain.importers.kit.params import CorpusParams, SpeakerSplit
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.formats.payload import OPUS_COMPLEXITY
from dstrain.pipeline.paths import ImportedDataset, printable
from dstrain.pipeline.redaction import redact_url
from dstrain.pipeline.sources.archive import extract, refused_members
from dstrain.pipeline.sources.fetch import obtain

Normalize = Callable[[str], Optional[str]]


class Job(NamedTuple):
    """One import of a corpus: its verified source, where the outputs go, and the language's normalisation."""

    archive: Path
    sha256: str
    out: ImportedDataset
    normalize: Normalize
    params: Any
    workers: int

    def extract(self, keep: Callable[[str], bool] = lambda name: True) -> Path:
        """The archive's members that ``keep`` accepts, extracted under ``out`` once for this archive."""
        return extract(self.archive, self.out.extracted, self.sha256, keep)


class Found(NamedTuple):
    """What a corpus read in its source.

    ``candidates`` may be a generator that reads the source as it goes, so a corpus of a million rows is never
    held in memory: ``rejects`` and ``facts`` are then read only once it is exhausted, and may be filled by it.
    """

    #: The clips to convert and judge, with their labels and splits.
    candidates: Iterable[Candidate]
    #: The rows already refused, each with its reason.
    rejects: List[Reject]
    #: For a corpus whose clips are read straight from its archive, in one pass (Common Voice): each member's name
    #: (a candidate's ``audio``) and how to read it.  Otherwise each candidate's ``audio`` is a file.
    members: Optional[Members] = None
    #: What the manifest says besides ``describe``, learnt while reading (how Common Voice was re-split).
    facts: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class Corpus(ABC):
    """One corpus: how its source is named and fetched, and how it becomes DeepSpeech's CSVs.

    A subclass gives ``Params`` and ``read``; its module exports ``CORPUS = TheCorpus(licence=..., ...)``,
    whose name is the module's (``common_voice``), as languages name it in ``DatasetSpec``.
    """

    Params: ClassVar[Type[CorpusParams]] = CorpusParams

    #: What the manifest and the model card say of its licence.
    licence: str
    #: Where people read about the corpus and get it by hand.
    homepage: str
    #: The source's published file name, a format of its parameters ("{language}.tgz"); see archive_name.
    published: Optional[str] = None
    #: Where its archives are published, each under its ``archive_name``; None when only ``url`` says.
    downloads: Optional[str] = None
    #: The parameters the manifest repeats ("release", "language", ...).
    reported: Tuple[str, ...] = ()
    #: How the corpus is split, as the manifest says it ({"by": "speaker"}); a SpeakerSplit's shares are added.
    split: Optional[Mapping[str, str]] = None
    #: Bump when prepare writes something else for the same input: every import of the corpus is then redone.
    version: int = 1

    @property
    def name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    def archive_name(self, params) -> str:
        """The source's file name when ``params.archive`` is not set: ``published`` filled in from the parameters
        (a corpus whose ``Params`` gives ``archive`` a default needs neither)."""
        if self.published is None:
            raise NotImplementedError(f"{self.name}: archive is not set and the corpus names no default")
        return self.published.format(**params.model_dump())

    def archive_path(self, params, sources: Path) -> Path:
        return Path(sources) / (params.archive or self.archive_name(params))

    def source_url(self, params) -> Optional[str]:
        """Where ``download`` gets the source; None leaves it to the user."""
        if params.url or self.downloads is None:
            return params.url
        return self.downloads + quote(self.archive_name(params))

    def how_to_get(self, params) -> str:
        """What the user can do when the source cannot be downloaded."""
        return f"Download it from {self.homepage}."

    def by_hand(self, params) -> bool:
        """Whether the source can only be placed in sources/ by hand: with these parameters the corpus has nowhere
        to download it from.  A run that was not told which datasets to use goes on without such a source while
        it is not there (config.py)."""
        return self.source_url(params) is None

    def in_sources(self, params, sources: Path) -> bool:
        """Whether the source, or what ``download`` makes it from, is in ``sources``."""
        return self.archive_path(params, sources).exists()

    def download(self, params, sources: Path) -> str:
        """The verified sha256 of the source, downloaded first unless it is already in ``sources``."""
        return obtain(self.archive_path(params, sources), params.sha256, self.source_url(params), None,
                      self.how_to_get(params))

    def describe(self, params) -> Dict[str, Any]:
        """What the manifest says of this import besides its source and licence: ``reported``, ``split``, ..."""
        facts: Dict[str, Any] = {name: getattr(params, name) for name in self.reported}
        if self.split is not None:
            facts["split"] = dict(self.split, shares=list(params.split)) if isinstance(params, SpeakerSplit) \
                else dict(self.split)
        return facts

    def manifest(self, archive: Path, sha256: str, params) -> Dict[str, Any]:
        """The source, the licence and ``describe``; ``assemble`` adds the counts."""
        return dict(self.describe(params), importer=self.name, importer_version=self.version, licence=self.licence,
                    source={"archive": archive.name, "sha256": sha256,
                            "url": redact_url(self.source_url(params) or self.homepage)})

    def prepare(self, archive: Path, sha256: str, out_dir: Path, normalize: Normalize, params, workers: int,
                clips: Tuple[str, str, int] = ("wav", "opus", OPUS_COMPLEXITY)) -> dict:
        """Write the sets, ``rejects.csv`` and ``manifest.json`` into ``out_dir``; return the manifest.  ``clips``
        is (clips.format, clips.sdb_audio, clips.opus_complexity): WAVs and CSVs, or sample databases of Opus or
        WAV."""
        job = Job(archive, sha256, ImportedDataset(out_dir), normalize, params, workers)
        found = self.read(job)
        facts = found.facts if found.facts is not None else {}
        manifest = self.manifest(archive, sha256, params)
        candidates = _not_extracted(job.out, found.candidates, found.rejects)
        # The facts a lazy corpus learns while its candidates are read are added once assemble has read them.
        return assemble(job.out, candidates, found.rejects, params.max_duration, workers, manifest,
                        found.members, clips, facts)

    @abstractmethod
    def read(self, job: Job) -> Found:
        """Every row of the source: a candidate to convert, or a reject with its reason."""


def _not_extracted(out: ImportedDataset, candidates: Iterable[Candidate], rejects: List[Reject]
                   ) -> Iterator[Candidate]:
    """The candidates whose audio was extracted, as they come; those of members the extraction left out (their
    names clash, or cannot be files here) go to ``rejects`` with its reason, rather than as missing."""
    refused: Optional[Dict[str, List[str]]] = None
    for cand in candidates:
        if refused is None:  # read once the corpus has extracted what it reads
            refused = refused_members(out.extracted)
        try:
            within = printable(cand.audio.relative_to(out.extracted).as_posix())
        except ValueError:  # not an extracted file
            within = None
        if within in refused:
            rejects.append(Reject(cand.split, cand.source, *refused[within]))
        else:
            yield cand
