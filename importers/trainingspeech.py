"""TrainingSpeech: a zip of French audiobook fragments aligned with their text.

The zip holds the clips at its root, named ``<source>_<NNNN>.wav`` (16 kHz,
16-bit, mono; a source is one chapter of one audiobook), and ``data.csv``, a
comma-separated file with a header and quoted fields: ``path,duration,text``.
The zip names no speakers, but a handful of narrators read it all, each many
chapters: splitting by chapter would put one voice in train, dev and test.  So
the split is by narrator (kit/split.py), each book's narrator taken from
TrainingSpeech's own sources.json (NARRATORS).  A book it does not list is
taken as a narrator of its own, and the log names it.  With this few
narrators a split may get none of them: the corpus then adds nothing to it,
which is better than a test that has heard its speakers.
"""
import csv
import logging
import re
from pathlib import Path
from typing import Iterator, List

from pydantic import Field

from dstrain.importers.kit.assemble import Candidate, wav_name
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import SpeakerSplit
from dstrain.importers.kit.rows import labelled, plain_name
from dstrain.importers.kit.split import split_of
from dstrain.importers.kit.tsv import MAX_LINE, lines
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.deepspeech_csv import Reject

log = logging.getLogger("dstrain")
_FRAGMENT = re.compile(r"_[0-9]+$")
#: What follows a book's name in a source's: tome, part, chapter ("T1Chap2", "T1P1C3").
_CHAPTER = re.compile(r"(?:T[0-9]+)?(?:P[0-9]+)?(?:Chap|C)[0-9]+$")
#: Who reads each book, as TrainingSpeech's sources.json says (its "speaker" field).
NARRATORS = {
    "LeComteDeMonteCristo": "Saphir",
    "LesMysteresDeParis": "Jean-François Ricou",
    "LaGloireDuComacchio": "Eric",
    "LeDernierJourDunCondamne": "Ka00",
    "MemoiresDuSergentBourgogne": "Raminagrobis",
}


class Params(SpeakerSplit):
    release: str = Field("2019-04-11_fr_FR", pattern=r"^[A-Za-z0-9._-]+$", description="release name")
    max_duration: float = Field(15.0, gt=0, description="longest clip kept, in seconds")


class TrainingSpeech(Corpus):
    Params = Params

    def read(self, job: Job) -> Found:
        extracted = job.extract()
        table = extracted / "data.csv"
        if not table.exists():
            raise DstrainError(f"{job.archive.name} holds no data.csv at its root; is it a TrainingSpeech release?")
        candidates, rejects, unknown = [], [], set()
        with table.open("rb") as handle:
            too_long: List[int] = []
            reader = csv.DictReader(_text_lines(handle, too_long))
            missing = {"path", "text"} - set(reader.fieldnames or ())
            if missing:
                raise DstrainError(f"{job.archive.name}: data.csv has no column {sorted(missing)[0]} "
                                   f"(it has: {', '.join(reader.fieldnames or ())})")
            for row in _rows(reader, rejects):
                path, text = row["path"] or "", row["text"]
                book = _book(path)
                if book not in NARRATORS:
                    unknown.add(book)
                split = split_of(NARRATORS.get(book, book), job.params.split)
                source = f"data.csv:{reader.line_num} {_readable(path)}"
                if text is None:
                    rejects.append(Reject(split, source, "unreadable_row", "too few fields: no text"))
                elif _readable(path + text) != path + text:
                    rejects.append(Reject(split, source, "unreadable_row", "not valid UTF-8"))
                elif plain_name(split, source, path, rejects):
                    label = labelled(split, source, text, job.normalize, rejects)
                    if label:
                        candidates.append(Candidate(split, source, extracted / path, wav_name(path), label))
        rejects += [Reject("train", f"data.csv:{number}", "unreadable_row", f"longer than {MAX_LINE} bytes")
                    for number in too_long]
        if unknown:
            log.warning("trainingspeech: no narrator known for %s; each is split as a narrator of its own",
                        ", ".join(sorted(unknown)))
        return Found(candidates, rejects)


CORPUS = TrainingSpeech(
    # Audio from audiocite.net under Art Libre or CC licences, texts in the public domain (the project's sources.json).
    licence="Art-Libre-1.3 / CC (audio, per source), public domain (texts)",
    homepage="https://github.com/wasertech/TrainingSpeech", published="{release}.zip", reported=("release",),
    # The mirror DeepSpeech 0.9.3's importer downloads from.
    downloads="https://deepspeech-storage-mirror.s3.fr-par.scw.cloud/", split={"by": "narrator"},
    version=2)  # 2: split by narrator; a path that is not a plain file name is rejected (invalid_path)


def _text_lines(handle, too_long: List[int]) -> Iterator[str]:
    """The file's lines for the csv module, undecodable bytes as lone surrogates so that one bad row does not
    stop the others; a line longer than any row is read past, its number noted, and given as an empty line."""
    for number, raw in lines(handle):
        if raw is None:
            too_long.append(number)
            yield "\n"
        else:
            yield raw.decode("utf-8", "surrogateescape") + "\n"


def _rows(reader: csv.DictReader, rejects: List[Reject]) -> Iterator[dict]:
    """The rows the csv module can read; one it cannot (a field over its limit, a NUL) is one rejected row."""
    while True:
        line = reader.line_num
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            rejects.append(Reject("train", f"data.csv:{line + 1}", "unreadable_row", str(exc)))


def _book(path: str) -> str:
    """The book of a clip: its source (one chapter) without the chapter."""
    return _CHAPTER.sub("", _FRAGMENT.sub("", Path(path).stem))


def _readable(text: str) -> str:
    """``text`` with each undecodable byte shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
