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
from typing import List, Literal

from pydantic import Field

from dstrain.importers.kit.assemble import Candidate
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import CorpusParams
from dstrain.importers.kit.rows import labelled
from dstrain.importers.kit.tsv import MAX_LINE, read_lines
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.audio import external_decoder
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.paths import SPLITS

_UTTERANCE = re.compile(r"^([0-9]+)_([0-9]+)_[0-9]+$")


class Params(CorpusParams):
    language: str = Field(pattern=r"^[a-z]+$", description="MLS language name, e.g. german")
    format: Literal["opus", "flac"] = Field("opus", description="which of the two archives: opus (small) or flac")
    max_duration: float = Field(20.0, gt=0, description="longest clip kept, in seconds (MLS clips last 10 to 20 s)")


class MultilingualLibriSpeech(Corpus):
    Params = Params

    def archive_name(self, params: Params) -> str:
        return f"mls_{params.language}" + ("_opus" if params.format == "opus" else "") + ".tar.gz"

    def read(self, job: Job) -> Found:
        _check_decoder(job.params)
        suffix = "." + job.params.format
        extracted = job.extract(keep=lambda name: name.endswith(suffix) or name.endswith("/transcripts.txt"))
        found = sorted(extracted.glob("*/train/transcripts.txt"))
        if not found:
            raise DstrainError(f"{job.archive.name} holds no <root>/train/transcripts.txt; is it an MLS archive?")
        corpus = found[0].parent.parent
        candidates, rejects = [], []
        for split in SPLITS:
            table = corpus / split / "transcripts.txt"
            if not table.exists():
                raise DstrainError(f"{table.relative_to(extracted)} is missing from {job.archive.name}")
            candidates += _rows(table, split, corpus / split / "audio", suffix, job.normalize, rejects)
        return Found(candidates, rejects)


CORPUS = MultilingualLibriSpeech(licence="CC-BY-4.0", homepage="https://www.openslr.org/94/",
                                 downloads="https://dl.fbaipublicfiles.com/mls/", reported=("language", "format"),
                                 split={"by": "official"})


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
    for number, raw in read_lines(table):
        if raw is None:
            rejects.append(Reject(split, f"{split}/transcripts.txt:{number}", "unreadable_row",
                                  f"longer than {MAX_LINE} bytes"))
            continue
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
