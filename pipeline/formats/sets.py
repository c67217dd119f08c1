"""A set of clips (train, dev or test) as DeepSpeech reads it, in either format (settings' clips.format).

- wav: DeepSpeech's CSV (``train.csv``), naming WAV files relative to itself;
- sdb: a sample database (``train.sdb``, sdb.py) holding every clip and its transcript, and beside it its
  listing (``train.sdb.csv``): DeepSpeech's three CSV columns, one row per sample in the database's order,
  where ``wav_filename`` says where the clip came from (it names no file) and ``wav_filesize`` is the size
  its WAV would have, so lengths compare as in a CSV.

What needs only transcripts or lengths (the alphabet, the language model, the train stage's checks) reads
the listing, whatever the format; ``paths.ClipSet`` names both files.  DeepSpeech names a sample of a
database ``<path>.sdb:<number>`` (its ``sample_id``): :func:`reference` and :func:`referenced` read it.
"""
import csv
import re
from pathlib import Path
from typing import Dict, Iterator, NamedTuple, Optional, Tuple

from dstrain.pipeline.atomic import temporary_path
from dstrain.pipeline.formats import payload
from dstrain.pipeline.formats.deepspeech_csv import HEADER, Sample, read_samples
from dstrain.pipeline.formats.sdb import SdbReader, SdbWriter
from dstrain.pipeline.paths import ClipSet, clip_set

_REFERENCE = re.compile(r"^(.*\.sdb):([0-9]+)$")


def reference(database: Path, number: int) -> str:
    """How DeepSpeech names sample ``number`` of ``database`` (in its test output, for one)."""
    return f"{database}:{number}"


def referenced(name: str) -> Optional[Tuple[Path, int]]:
    """The database and sample number a DeepSpeech sample name gives; None for a WAV's path."""
    found = _REFERENCE.match(name)
    return (Path(found.group(1)), int(found.group(2))) if found else None


class SetWriter:
    """Writes one set, listing included, under temporary names renamed when it is closed (the listing last).

    For a sample database, ``add`` takes the clip's payload (``audio`` says its encoding); one in another
    encoding than the database's is decoded and encoded again.  For a CSV, the sample names its WAV."""

    def __init__(self, clip_set: ClipSet, audio: str = "opus"):
        self.set = clip_set
        self.audio = audio
        self.count = 0
        self._listing = temporary_path(clip_set.listing)
        tmp = self._listing.__enter__()
        self._handle = tmp.open("w", encoding="utf-8", newline="")
        self._rows = csv.writer(self._handle, lineterminator="\n")
        self._rows.writerow(HEADER)
        self._database = SdbWriter(clip_set.data, audio) if clip_set.format == "sdb" else None

    def add(self, sample: Sample, data: bytes = b"", audio: str = "") -> None:
        if self._database is not None:
            if audio != self.audio:
                data = payload.encode(payload.decode(data, audio)[1], self.audio)
            self._database.add(data, sample.transcript)
        self._rows.writerow(sample)
        self.count += 1

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
        self._handle.close()
        self._listing.__exit__(None, None, None)

    def abandon(self, error: BaseException) -> None:
        if self._database is not None:
            self._database.abandon()
        self._handle.close()
        self._listing.__exit__(type(error), error, None)

    def __enter__(self) -> "SetWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon(value)


def present(directory_set: ClipSet) -> bool:
    """Whether a set of this format was written there (both files of a database)."""
    return directory_set.data.is_file() and directory_set.listing.is_file()


def samples(clip_set: ClipSet) -> Iterator[Sample]:
    """The listing's rows: for a database, in its order."""
    return read_samples(clip_set.listing)


def empty(clip_set: ClipSet) -> bool:
    return not any(True for _ in samples(clip_set))


def write_wav(database_path: Path, number: int, target: Path) -> Path:
    """Sample ``number`` of a database as a WAV file at ``target`` (the report's players, the smoke training)."""
    with SdbReader(database_path) as database:
        data, _ = database.read(number)
        wav = payload.to_wav(data, database.audio)
    target.parent.mkdir(parents=True, exist_ok=True)
    with temporary_path(target) as tmp:
        tmp.write_bytes(wav)
    return target


class Origins:
    """Where each clip DeepSpeech tested came from: its dataset, and a file a player can play."""

    def __init__(self, clip_set: ClipSet, dataset_of):
        self.set = clip_set
        self._dataset_of = dataset_of
        self._listed: Optional[Dict[int, str]] = None

    def _listing(self) -> Dict[int, str]:
        if self._listed is None:
            self._listed = {number: sample.wav_filename for number, sample in enumerate(samples(self.set))}
        return self._listed

    def dataset(self, name: str) -> Optional[str]:
        found = referenced(name)
        if found is None:
            return self._dataset_of(name)
        origin = self._listing().get(found[1], "")
        return origin.split("/", 1)[0] if "/" in origin else None

    def playable(self, name: str, directory: Path) -> str:
        """A WAV of the clip: the clip itself, or (from a database) extracted into ``directory``."""
        found = referenced(name)
        if found is None:
            return name
        origin = self._listing().get(found[1], "clip")
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", origin.replace("/", "-"))
        if not base.endswith(".wav"):
            base += ".wav"
        return str(write_wav(self.set.data, found[1], directory / f"{found[1]:06d}-{base}"))


class Entry(NamedTuple):
    """One clip of a set, with its audio: a WAV file, or (from a database) its payload."""

    #: The listing's row; for a CSV ``wav_filename`` is relative to the set's directory.
    sample: Sample
    #: The sample's number in its database, or None.
    number: Optional[int]
    #: The WAV file, or None.
    wav: Optional[Path]
    #: The payload and its encoding ("opus", "wav"), from a database.
    data: bytes = b""
    audio: str = ""


def entries(directory: Path, split: str) -> Iterator[Entry]:
    """The clips of the set ``split`` in ``directory``, in whichever format it was written (a database first)."""
    database = clip_set(directory, split, "sdb")
    if present(database):
        with SdbReader(database.data) as reader:
            for number, sample in enumerate(samples(database)):
                data, _ = reader.read(number)
                yield Entry(sample, number, None, data, reader.audio)
        return
    for sample in read_samples(clip_set(directory, split, "wav").data):
        yield Entry(sample, None, directory / sample.wav_filename)
