"""OpenSLR 57, African Accented French: ``African_Accented_French/{speech,transcripts}/<split>/...``.

The audio is ``speech/<split>/<subcorpus>/<speaker>/<clip>.wav``.  Each
subcorpus has one transcript file under ``transcripts/<split>/`` (listed
below), one clip a line: an id, whitespace, the text.  Subcorpora write the id
differently (the clip's name without ``.wav``, the same ending in ``.tdf``, or
a path on the creators' machine); its base name names the clip.

The official split is kept, with devtest joining dev.  A train speaker also
heard in dev or test is left out of train, so speakers stay apart.
"""
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from pydantic import Field

from dstrain.importers.kit.assemble import Candidate, wav_name
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import CorpusParams
from dstrain.importers.kit.rows import labelled
from dstrain.importers.kit.tsv import MAX_LINE, read_lines
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.deepspeech_csv import Reject

#: The transcripts of each subcorpus, as the corpus ships them.
TRANSCRIPTS = (
    "transcripts/train/yaounde/fn_text.txt",
    "transcripts/train/ca16_conv/transcripts.txt",
    "transcripts/train/ca16_read/conditioned.txt",
    "transcripts/dev/niger_west_african_fr/transcripts.txt",
    "transcripts/devtest/ca16_read/conditioned.txt",
    "transcripts/test/ca16/prompts.txt",
)
#: The corpus' split directories, and the split each feeds.
SPLIT_OF = {"train": "train", "dev": "dev", "devtest": "dev", "test": "test"}


class Params(CorpusParams):
    archive: str = Field("African_Accented_French.tar.gz", description="archive file name in sources/")
    url: Optional[str] = Field("https://www.openslr.org/resources/57/African_Accented_French.tar.gz",
                               description="where to download the archive from")
    max_duration: float = Field(15.0, gt=0, description="longest clip kept, in seconds")


class AfricanAccentedFrench(Corpus):
    Params = Params

    def read(self, job: Job) -> Found:
        corpus = job.extract() / "African_Accented_French"
        if not corpus.is_dir():
            raise DstrainError(f"{job.archive.name} holds no African_Accented_French/; is it the OpenSLR 57 archive?")
        candidates, rejects = [], []
        rows = _rows(corpus, job.archive, rejects)
        heard_in_eval = {row.speaker for row in rows if row.split != "train" and row.speaker}
        for row in rows:
            if row.split == "train" and row.speaker in heard_in_eval:
                rejects.append(Reject(row.split, row.source, "speaker_overlap",
                                      f"speaker {row.speaker} is also in dev or test"))
                continue
            label = labelled(row.split, row.source, row.text, job.normalize, rejects)
            if label:
                # Prefixed with the corpus' split: base names are only unique within one.
                wav = wav_name(row.wav.relative_to(corpus / "speech").parts[0] + "-" + row.wav.name)
                candidates.append(Candidate(row.split, row.source, row.wav, wav, label))
        return Found(candidates, rejects)


CORPUS = AfricanAccentedFrench(licence="Apache-2.0", homepage="https://www.openslr.org/57/", split={
    "by": "official", "devtest": "dev", "speakers": "train loses speakers heard in dev or test"})


class Row(NamedTuple):
    split: str
    source: str
    wav: Path
    #: The clip's directory under ``speech/<split>/``; None when the clip is missing.
    speaker: Optional[str]
    text: str


def _clip_name(ident: str) -> str:
    base = ident.rsplit("/", 1)[-1]
    if base.endswith(".tdf"):
        return base[:-len(".tdf")] + ".wav"
    return base if base.endswith(".wav") else base + ".wav"


def _rows(corpus: Path, archive: Path, rejects: List[Reject]):
    """Every transcript line, and every clip no line names, as a ``no_transcript`` reject."""
    speech = corpus / "speech"
    clips: Dict[Tuple[str, str], Path] = {}
    #: Clip names found in two speakers' folders of one split: a transcript line cannot say which it is.
    ambiguous: Dict[Tuple[str, str], List[str]] = {}
    for official in SPLIT_OF:
        for wav in sorted((speech / official).glob("**/*.wav")):
            first = clips.setdefault((official, wav.name), wav)
            if first != wav:
                ambiguous.setdefault((official, wav.name), [first.relative_to(corpus).as_posix()]).append(
                    wav.relative_to(corpus).as_posix())
    rows, named = [], {}
    for name in TRANSCRIPTS:
        path = corpus / name
        if not path.exists():
            raise DstrainError(f"{name} is missing from {archive.name}; is it the OpenSLR 57 archive?")
        official = name.split("/")[1]
        split = SPLIT_OF[official]
        for number, raw in read_lines(path):
            if raw is None:
                rejects.append(Reject(split, f"{name}:{number}", "unreadable_row", f"longer than {MAX_LINE} bytes"))
                continue
            if not raw.strip():
                continue
            ident, *rest = raw.split(None, 1)
            key = (official, _clip_name(ident.decode("utf-8", errors="replace")))
            source = f"{name}:{number} {key[1]}"
            if key in named:
                rejects.append(Reject(split, source, "duplicate", "clip already listed at " + named[key]))
                continue
            named[key] = source
            try:
                text = b"".join(rest).decode("utf-8")
            except UnicodeDecodeError as exc:
                rejects.append(Reject(split, source, "unreadable_row",
                                      f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            if key in ambiguous:
                rejects.append(Reject(split, source, "name_clash", "more than one clip has this name: "
                                      + ", ".join(ambiguous[key])))
                continue
            wav = clips.get(key)
            speaker = wav.parent.relative_to(speech / official).as_posix() if wav else None
            rows.append(Row(split, source, wav or speech / official / key[1], speaker, text))
    for key, wav in sorted(clips.items()):
        if key not in named:
            rejects.append(Reject(SPLIT_OF[key[0]], wav.relative_to(corpus).as_posix(), "no_transcript",
                                  "no transcript line names this clip"))
    return rows
