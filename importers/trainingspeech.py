"""TrainingSpeech: a zip of French audiobook fragments aligned with their text.

The zip holds the clips at its root, named ``<source>_<NNNN>.wav`` (16 kHz,
16-bit, mono; a source is one chapter of one audiobook), and ``data.csv``, a
comma-separated file with a header and quoted fields: ``path,duration,text``.
It names no speakers (a handful of narrators read it all), so there is no
speaker split to keep: chapters are split by hash (kit/split.py), which
keeps the text and voice of one chapter in one split.
"""
import csv
import re
from pathlib import Path

from pydantic import Field

from dstrain.importers.kit.assemble import Candidate, wav_name
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import SpeakerSplit
from dstrain.importers.kit.rows import labelled, plain_name
from dstrain.importers.kit.split import split_of
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.deepspeech_csv import Reject

_FRAGMENT = re.compile(r"_[0-9]+$")


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
        candidates, rejects = [], []
        # Undecodable bytes become lone surrogates, so one bad row does not stop the others.
        with table.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "text"} - set(reader.fieldnames or ())
            if missing:
                raise DstrainError(f"{job.archive.name}: data.csv has no column {sorted(missing)[0]} "
                                   f"(it has: {', '.join(reader.fieldnames or ())})")
            for row in reader:
                path, text = row["path"] or "", row["text"]
                split = split_of(_chapter(path), job.params.split)
                source = f"data.csv:{reader.line_num} {_readable(path)}"
                if text is None:
                    rejects.append(Reject(split, source, "unreadable_row", "too few fields: no text"))
                elif _readable(path + text) != path + text:
                    rejects.append(Reject(split, source, "unreadable_row", "not valid UTF-8"))
                elif plain_name(split, source, path, rejects):
                    label = labelled(split, source, text, job.normalize, rejects)
                    if label:
                        candidates.append(Candidate(split, source, extracted / path, wav_name(path), label))
        return Found(candidates, rejects)


CORPUS = TrainingSpeech(
    # Audio from audiocite.net under Art Libre or CC licences, texts in the public domain (the project's sources.json).
    licence="Art-Libre-1.3 / CC (audio, per source), public domain (texts)",
    homepage="https://github.com/wasertech/TrainingSpeech", published="{release}.zip", reported=("release",),
    # The mirror DeepSpeech 0.9.3's importer downloads from.
    downloads="https://deepspeech-storage-mirror.s3.fr-par.scw.cloud/", split={"by": "chapter"},
    version=2)  # 2: a path that is not a plain file name is rejected (invalid_path)


def _chapter(path: str) -> str:
    return _FRAGMENT.sub("", Path(path).stem)


def _readable(text: str) -> str:
    """``text`` with each undecodable byte shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
