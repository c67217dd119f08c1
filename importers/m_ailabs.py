"""M-AILABS Speech Dataset: one tgz per language of LibriVox audiobooks.

Each book is ``<lang>/by_book/<female|male>/<speaker>/<book>/`` (or
``by_book/mix/<book>/`` when several people read it), holding ``wavs/<id>.wav``
(16 kHz mono) and ``metadata.csv``: no header, no quoting, one clip a line as
``id|original text|normalised text``; the normalised text has its numbers
spelled out, so it is the one used.  There is no official split: speakers are
split by hash (importers.split); a mixed book counts as one speaker.
"""
from pathlib import Path
from typing import Callable, Optional, Tuple

from pydantic import Field

from importers.archive import extract
from importers.assemble import Candidate, assemble, wav_name
from importers.deepspeech_csv import Reject
from importers.fetch import obtain
from importers.rows import labelled
from importers.split import SpeakerSplit, split_of
from pipeline.config import SHA256
from pipeline.errors import DstrainError
from pipeline.paths import ImportedDataset

VERSION = 1  # bump when the output of prepare changes for the same input
#: M-AILABS' own BSD-style licence; the LibriVox recordings are in the public domain.
LICENCE = "M-AILABS (BSD-3-Clause-like), audio public domain"
HOMEPAGE = "https://github.com/imdatceleste/m-ailabs-dataset"
DOWNLOADS = "https://data.solak.de/data/Training/stt_tts/"
_KNOWN_SPEAKER = ("female", "male")


class Params(SpeakerSplit):
    language: str = Field(pattern=r"^[a-z]{2}_[A-Z]{2}$", description="M-AILABS language tag, e.g. fr_FR")
    skip_books: Tuple[str, ...] = Field((), description="book directory names to leave out, e.g. monsieur_lecoq")
    archive: Optional[str] = Field(None, description="archive file name in sources/ (default <language>.tgz)")
    url: Optional[str] = Field(None, description=f"where to download the archive from (default: {DOWNLOADS})")
    sha256: Optional[str] = Field(None, pattern=SHA256)
    max_duration: float = Field(15.0, gt=0, description="longest clip kept, in seconds")


def archive_path(params: Params, sources: Path) -> Path:
    return Path(sources) / (params.archive or params.language + ".tgz")


def source_url(params: Params) -> str:
    return params.url or f"{DOWNLOADS}{params.language}.tgz"


def download(params: Params, sources: Path) -> str:
    return obtain(archive_path(params, sources), params.sha256, source_url(params), None,
                  f"Download it from {HOMEPAGE}.")


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


def prepare(archive: Path, sha256: str, out_dir: Path, normalize: Callable[[str], Optional[str]],
            params: Params, workers: int) -> dict:
    out = ImportedDataset(out_dir)
    extracted = extract(archive, out.extracted, sha256)
    candidates, rejects = [], []
    for metadata, speaker, book in _books(extracted, params, archive):
        split = split_of(speaker, params.split)
        where = metadata.relative_to(extracted).as_posix()
        for number, raw in enumerate(metadata.read_bytes().splitlines(), start=1):
            if not raw.strip():
                continue
            fields, problem = _fields(raw)
            source = f"{where}:{number} {fields[0]}"
            if book in params.skip_books:
                rejects.append(Reject(split, source, "skipped", f"book {book} is in skip_books"))
            elif problem:
                rejects.append(Reject(split, source, "unreadable_row", problem))
            else:
                label = labelled(split, source, fields[2], normalize, rejects)
                if label:
                    clip = metadata.parent / "wavs" / (fields[0] + ".wav")
                    candidates.append(Candidate(split, source, clip, wav_name(clip.name), label))
    return assemble(out, candidates, rejects, params.max_duration, workers, {
        "importer": "m_ailabs",
        "importer_version": VERSION,
        "source": {"archive": archive.name, "sha256": sha256, "url": source_url(params)},
        "language": params.language,
        "licence": LICENCE,
        "split": {"by": "speaker", "shares": list(params.split)},
    })
