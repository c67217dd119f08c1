"""DeepSpeech's CSV format (``wav_filename,wav_filesize,transcript``) and the rejects file beside it."""
import csv
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

from dstrain.pipeline.atomic import temporary_path

HEADER = ("wav_filename", "wav_filesize", "transcript")
REJECTS_HEADER = ("split", "source", "reason", "detail")


class Sample(NamedTuple):
    #: Relative to the CSV's own directory, as DeepSpeech resolves it.
    wav_filename: str
    wav_filesize: int
    transcript: str


class Reject(NamedTuple):
    split: str
    source: str
    reason: str
    detail: str


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> int:
    count = 0
    with temporary_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def write_samples(path: Path, samples: Iterable[Sample]) -> int:
    return write_rows(path, HEADER, samples)


def read_samples(path: Path) -> Iterator[Sample]:
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            yield Sample(row["wav_filename"], int(row["wav_filesize"]), row["transcript"])
