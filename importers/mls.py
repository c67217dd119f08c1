"""Multilingual LibriSpeech (OpenSLR 94): LibriVox audiobooks in eight languages, one archive per language.

``mls_<language>_opus.tar.gz`` (Ogg Opus) or ``mls_<language>.tar.gz`` (FLAC)
holds ``mls_<language>[_opus]/{train,dev,test}/``, each with
``transcripts.txt`` (``<speaker>_<book>_<utterance>``, a tab, the text; no
header) and ``audio/<speaker>/<book>/<id>.opus|.flac``.  The transcripts are
already lower-case words without punctuation or digits.  MLS's own split is
kept: its speakers are disjoint and published results are measured on it.
Beside them the archive has ``metainfo.txt``, ``segments.txt`` and the
``limited_supervision`` lists, which are not needed here.
"""
import re
from pathlib import Path
from typing import Callable, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from importers.archive import extract
from importers.assemble import Candidate, assemble
from importers.audio import external_decoder
from importers.deepspeech_csv import Reject
from importers.fetch import obtain
from importers.rows import labelled
from pipeline.config import SHA256
from pipeline.errors import DstrainError
from pipeline.paths import SPLITS, ImportedDataset

VERSION = 1  # bump when the output of prepare changes for the same input
LICENCE = "CC-BY-4.0"
HOMEPAGE = "https://www.openslr.org/94/"
DOWNLOADS = "https://dl.fbaipublicfiles.com/mls/"
_UTTERANCE = re.compile(r"^([0-9]+)_([0-9]+)_[0-9]+$")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str = Field(pattern=r"^[a-z]+$", description="MLS language name, e.g. german")
    format: Literal["opus", "flac"] = Field("opus", description="which of the two archives: opus (small) or flac")
    archive: Optional[str] = Field(None, description="archive file name in sources/ (default the published name)")
    url: Optional[str] = Field(None, description=f"where to download the archive from (default: {DOWNLOADS})")
    sha256: Optional[str] = Field(None, pattern=SHA256)
    max_duration: float = Field(20.0, gt=0, description="longest clip kept, in seconds (MLS clips last 10 to 20 s)")


def _name(params: Params) -> str:
    return f"mls_{params.language}" + ("_opus" if params.format == "opus" else "")


def archive_path(params: Params, sources: Path) -> Path:
    return Path(sources) / (params.archive or _name(params) + ".tar.gz")


def source_url(params: Params) -> str:
    return params.url or f"{DOWNLOADS}{_name(params)}.tar.gz"


def download(params: Params, sources: Path) -> str:
    return obtain(archive_path(params, sources), params.sha256, source_url(params), None,
                  f"Download it from {HOMEPAGE}.")


def _check_decoder(params: Params) -> None:
    """Fail before converting thousands of clips that could not be decoded."""
    import soundfile

    if params.format == "opus" and "OPUS" not in soundfile.available_subtypes("OGG") and not external_decoder():
        raise DstrainError(
            f"libsndfile {soundfile.__libsndfile_version__} cannot read Opus (it needs 1.0.29 or later) and there "
            "is no ffmpeg or sox to try instead: install ffmpeg, or set format = \"flac\" for this dataset")


def _rows(table: Path, split: str, audio: Path, suffix: str, normalize, rejects: List[Reject]):
    """The candidates of one split's transcripts.txt; the rejects go to ``rejects``."""
    candidates, seen = [], set()
    for number, raw in enumerate(table.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        ident, _, text = raw.partition(b"\t")
        source = f"{split}/transcripts.txt:{number} " + ident.decode("utf-8", errors="replace")
        match = _UTTERANCE.match(ident.decode("ascii", errors="replace"))
        if not match:
            rejects.append(Reject(split, source, "unreadable_row", "the id is not <speaker>_<book>_<utterance>"))
            continue
        if ident in seen:
            rejects.append(Reject(split, source, "duplicate", "this id is listed twice"))
            continue
        seen.add(ident)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
            rejects.append(Reject(split, source, "unreadable_row", problem))
            continue
        label = labelled(split, source, text, normalize, rejects)
        if label:
            name = match.group()
            clip = audio / match.group(1) / match.group(2) / (name + suffix)
            candidates.append(Candidate(split, source, clip, name + ".wav", label))
    return candidates


def prepare(archive: Path, sha256: str, out_dir: Path, normalize: Callable[[str], Optional[str]],
            params: Params, workers: int) -> dict:
    _check_decoder(params)
    out = ImportedDataset(out_dir)
    suffix = "." + params.format
    extracted = extract(archive, out.extracted, sha256,
                        keep=lambda name: name.endswith(suffix) or name.endswith("/transcripts.txt"))
    found = sorted(extracted.glob("*/train/transcripts.txt"))
    if not found:
        raise DstrainError(f"{archive.name} holds no <root>/train/transcripts.txt; is it an MLS archive?")
    corpus = found[0].parent.parent
    candidates, rejects = [], []
    for split in SPLITS:
        table = corpus / split / "transcripts.txt"
        if not table.exists():
            raise DstrainError(f"{table.relative_to(extracted)} is missing from {archive.name}")
        candidates += _rows(table, split, corpus / split / "audio", suffix, normalize, rejects)
    return assemble(out, candidates, rejects, params.max_duration, workers, {
        "importer": "mls",
        "importer_version": VERSION,
        "source": {"archive": archive.name, "sha256": sha256, "url": source_url(params)},
        "language": params.language,
        "format": params.format,
        "licence": LICENCE,
        "split": {"by": "official"},
    })
