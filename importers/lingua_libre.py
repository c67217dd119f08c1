"""Lingua Libre: one zip per language of single-word OGG recordings, ``Q21-fra-French/<speaker>/<word>.ogg``.

The word is the file name.  The speaker directory is the Lingua Libre user,
followed by " (<locutor>)" when the user recorded someone else; a word with a
"/" in it makes deeper directories.  A qualifier that tells homographs apart
ends the word in parentheses, "vers (préposition)", and is not spoken.
There is no official split: speakers are split by hash (kit/split.py).
"""
import hashlib
import re
import zipfile
from typing import Tuple

from pydantic import Field, field_validator

from dstrain.importers.kit.assemble import Candidate
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import SpeakerSplit
from dstrain.importers.kit.rows import labelled
from dstrain.importers.kit.split import split_of
from dstrain.pipeline.formats.deepspeech_csv import Reject

_LANGUAGE_DIR = re.compile(r"^Q[0-9]+-")
_QUALIFIER = re.compile(r"\s*\([^()]*\)$")


class Params(SpeakerSplit):
    qid: str = Field(pattern=r"^Q[0-9]+$", description="Lingua Libre's item for the language, e.g. Q21 (French)")
    iso639_3: str = Field(pattern=r"^[a-z]{3}$", description="ISO 639-3 code, e.g. fra")
    english_name: str = Field(min_length=1, description="the language's English name in the zip's name, e.g. French")
    skip: Tuple[str, ...] = Field(
        (), description="regexes for bogus records, matched at the start of '<speaker>/<word>.ogg'")

    @field_validator("skip")
    @classmethod
    def _regexes(cls, value):
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class LinguaLibre(Corpus):
    Params = Params

    def describe(self, params: Params) -> dict:
        language = {"qid": params.qid, "iso639_3": params.iso639_3, "english_name": params.english_name}
        return dict(super().describe(params), language=language)

    def read(self, job: Job) -> Found:
        # Every recording is extracted, skipped or not, so a changed skip list needs no new extraction.
        extracted = job.extract(keep=lambda name: name.endswith(".ogg"))
        skip = [re.compile(pattern) for pattern in job.params.skip]
        with zipfile.ZipFile(str(job.archive)) as zip_file:
            members = sorted((i for i in zip_file.infolist() if i.filename.endswith(".ogg")),
                             key=lambda i: i.filename)
        candidates, rejects = [], []
        for info in members:
            record = _record(info.filename)
            speaker, _, word = record.partition("/")
            split = split_of(speaker, job.params.split)
            source = info.filename
            if not word:
                rejects.append(Reject(split, source, "unreadable_row", "not in a speaker's directory"))
                continue
            matched = next((p.pattern for p in skip if p.match(record)), None)
            if matched is not None:
                rejects.append(Reject(split, source, "skipped", f"matches skip pattern {matched!r}"))
                continue
            label = labelled(split, source, _QUALIFIER.sub("", word[:-len(".ogg")]), job.normalize, rejects)
            if label:
                candidates.append(Candidate(split, source, extracted / info.filename, _wav_name(info), label))
        return Found(candidates, rejects)


CORPUS = LinguaLibre(
    # Lingua Libre's licence for recordings; each file's own is on its Wikimedia Commons page.
    licence="CC-BY-SA-4.0", homepage="https://lingualibre.org/datasets/",
    published="{qid}-{iso639_3}-{english_name}.zip", downloads="https://lingualibre.org/datasets/",
    split={"by": "speaker"})


def _record(member: str) -> str:
    """``<speaker>/<word>.ogg``, the name skip lists are written against."""
    parts = member.split("/")
    return "/".join(parts[1:] if len(parts) > 2 and _LANGUAGE_DIR.match(parts[0]) else parts)


def _wav_name(info: zipfile.ZipInfo) -> str:
    # Words repeat across speakers, so the name comes from the path.  The CRC is in it because the
    # zip is rebuilt as people re-record: a new recording must not reuse the WAV of the old one.
    return hashlib.sha256(f"{info.filename}\0{info.CRC}".encode()).hexdigest()[:20] + ".wav"
