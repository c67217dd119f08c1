"""M-AILABS Speech Dataset: one tgz per language of LibriVox audiobooks.

Each book is ``<lang>/by_book/<female|male>/<speaker>/<book>/`` (or
``by_book/mix/<book>/`` when several people read it), holding ``wavs/<id>.wav``
(16 kHz mono) and ``metadata.csv``: no header, no quoting, one clip a line as
``id|original text|normalised text``; the normalised text has its numbers
spelled out, so it is the one used.  There is no official split: speakers are
split by hash (kit/split.py); a mixed book counts as one speaker.
"""
from pathlib import Path
from typing import Tuple

from pydantic import Field

from dstrain.importers.kit.assemble import Candidate, wav_name
from dstrain.importers.kit.contract import Corpus, Found, Job
from dstrain.importers.kit.params import SpeakerSplit
from dstrain.importers.kit.rows import labelled, plain_name
from dstrain.importers.kit.split import split_of
from dstrain.importers.kit.tsv import MAX_LINE, read_lines
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.formats.deepspeech_csv import Reject

_KNOWN_SPEAKER = ("female", "male")


class Params(SpeakerSplit):
    language: str = Field(pattern=r"^[a-z]{2}_[A-Z]{2}$", description="M-AILABS language tag, e.g. fr_FR")
    skip_books: Tuple[str, ...] = Field((), description="book directory names to leave out, e.g. monsieur_lecoq")
    max_duration: float = Field(15.0, gt=0, description="longest clip kept, in seconds")


class MAilabs(Corpus):
    Params = Params

    def read(self, job: Job) -> Found:
        extracted = job.extract()
        candidates, rejects = [], []
        for metadata, speaker, book in _books(extracted, job.params, job.archive):
            split = split_of(speaker, job.params.split)
            where = metadata.relative_to(extracted).as_posix()
            for number, raw in read_lines(metadata):
                if raw is not None and not raw.strip():
                    continue
                fields, problem = _fields(raw) if raw is not None else ([""], f"longer than {MAX_LINE} bytes")
                source = f"{where}:{number} {fields[0]}"
                if book in job.params.skip_books:
                    rejects.append(Reject(split, source, "skipped", f"book {book} is in skip_books"))
                elif problem:
                    rejects.append(Reject(split, source, "unreadable_row", problem))
                elif plain_name(split, source, fields[0], rejects):
                    label = labelled(split, source, fields[2], job.normalize, rejects)
                    if label:
                        clip = metadata.parent / "wavs" / (fields[0] + ".wav")
                        candidates.append(Candidate(split, source, clip, wav_name(clip.name), label))
        return Found(candidates, rejects)


CORPUS = MAilabs(
    # M-AILABS' own BSD-style licence; the LibriVox recordings are in the public domain.
    licence="M-AILABS (BSD-3-Clause-like), audio public domain",
    homepage="https://github.com/imdatceleste/m-ailabs-dataset", published="{language}.tgz",
    downloads="https://data.solak.de/data/Training/stt_tts/", reported=("language",), split={"by": "speaker"},
    version=2)  # 2: an id that is not a plain file name is rejected (invalid_path)


def _books(extracted: Path, params: Params, archive: Path):
    """(metadata.csv, speaker, book) for every book, in a stable order."""
    found = []
    for metadata in sorted(extracted.glob(f"**/{params.language}/by_book/**/metadata.csv")):
        parts = metadata.parent.relative_to(extracted).parts
        within = parts[parts.index("by_book") + 1:]
        speaker = within[1] if within[0] in _KNOWN_SPEAKER and len(within) == 3 else "/".join(within)
        found.append((metadata, speaker, within[-1]))
    if not found:
        raise DstrainError(f"{archive.name} holds no {params.language}/by_book/.../metadata.csv; "
                           f"is it the M-AILABS archive for {params.language}?")
    return found


def _fields(raw: bytes):
    """The line's fields, and why it cannot be used (or None)."""
    try:
        fields = [field.strip() for field in raw.decode("utf-8").split("|")]
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace").split("|"), f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    return fields, None if len(fields) >= 3 else "too few fields: no normalised text"
