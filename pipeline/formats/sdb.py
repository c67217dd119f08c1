"""DeepSpeech 0.9.3's Sample Database (``.sdb``): every clip of a set, with its transcript, in one file.

DeepSpeech reads one wherever it reads a CSV (``--train_files``, ``--dev_files``, ``--test_files``), with
the audio inside as Opus or as a WAV file (payload.py).  The layout, all integers unsigned big-endian:

- ``SAMPLEDB``;
- the length of the metadata (8 bytes), then the metadata, JSON: ``{"schema": [column, ...]}``, each
  column ``{"content": "speech" | "transcript", "mime-type": ...}``;
- the length of the samples part (8 bytes), counted from after this field: the sample count (8 bytes),
  then each sample;
- a sample: its length (4 bytes), then for each column of the schema, its length (4 bytes) and its bytes;
- the index: its length (8 bytes), counted from after this field, the sample count (8 bytes), and the
  offset of each sample (8 bytes each) from the start of the file.

DeepSpeech reads the samples in the order of the index and, unlike a CSV, does not sort them: the
trainer expects them shortest first, so the writer's callers add them in that order.  Neither the writer
nor the reader holds the index in memory: the writer spills the offsets to a temporary file, the reader
reads each offset when it needs it.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, List, Optional, Tuple

from dstrain.pipeline.atomic import temporary_path
from dstrain.pipeline.errors import DstrainError

MAGIC = b"SAMPLEDB"
#: The mime types DeepSpeech's reader knows for the speech column, by the name dstrain's settings give them.
AUDIO_TYPES = {"opus": "application/vnd.mozilla.opus", "wav": "audio/wav"}
TEXT = "text/plain"
LONG, SHORT = 8, 4
#: Read and write buffers: a sample of Common Voice is a few kilobytes.
BUFFER = 1 << 20


class SdbError(DstrainError):
    """A file that is not a sample database dstrain can read, named with what is wrong."""


def _long(value: int) -> bytes:
    return value.to_bytes(LONG, "big")


def _short(value: int) -> bytes:
    return value.to_bytes(SHORT, "big")


class SdbWriter:
    """Writes a sample database under a temporary name, renamed into place by :meth:`close`; with ``with``, an
    error leaves nothing behind.  ``audio`` is ``"opus"`` or ``"wav"``, the payloads' encoding (payload.py)."""

    def __init__(self, path: Path, audio: str):
        self.path = Path(path)
        self._rename = temporary_path(self.path)
        self._tmp = self._rename.__enter__()
        self._file = self._tmp.open("wb", buffering=BUFFER)
        self._offsets = tempfile.TemporaryFile(dir=str(self.path.parent))
        self.count = 0
        schema = [{"content": "speech", "mime-type": AUDIO_TYPES[audio]}, {"content": "transcript", "mime-type": TEXT}]
        meta = json.dumps({"schema": schema}).encode()
        self._file.write(MAGIC + _long(len(meta)) + meta)
        self._samples_at = self._file.tell()
        self._file.write(_long(0) + _long(0))  # the samples' length and count, known at the end

    def add(self, audio: bytes, transcript: str) -> int:
        """Append one sample; returns its number in the index."""
        text = transcript.encode("utf-8")
        self._offsets.write(_long(self._file.tell()))
        self._file.write(b"".join([_short(2 * SHORT + len(audio) + len(text)), _short(len(audio)), audio,
                                   _short(len(text)), text]))
        self.count += 1
        return self.count - 1

    def close(self) -> None:
        index_at = self._file.tell()
        self._file.write(_long(LONG + LONG * self.count) + _long(self.count))
        self._offsets.seek(0)
        shutil.copyfileobj(self._offsets, self._file, BUFFER)
        self._file.seek(self._samples_at)
        self._file.write(_long(index_at - self._samples_at - LONG) + _long(self.count))
        self._file.close()
        self._offsets.close()
        self._rename.__exit__(None, None, None)

    def abandon(self) -> None:
        self._file.close()
        self._offsets.close()
        self._rename.__exit__(SdbError, SdbError("abandoned"), None)

    def __enter__(self) -> "SdbWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


class SdbReader:
    """Reads a sample database by index number, as DeepSpeech does: sample ``i`` is the ``i``-th of the index."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: BinaryIO = self.path.open("rb", buffering=BUFFER)
        try:
            self._open()
        except (SdbError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.close()
            raise SdbError(f"{self.path} is not a sample database dstrain can read: {exc}") from None

    def _open(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        if self._file.read(len(MAGIC)) != MAGIC:
            raise SdbError("it does not start with SAMPLEDB")
        meta = json.loads(self._read(self._number(LONG), size))
        schema: List[dict] = meta["schema"]
        speech = [i for i, c in enumerate(schema) if c["content"] == "speech" and c["mime-type"] in
                  AUDIO_TYPES.values()]
        text = [i for i, c in enumerate(schema) if c["content"] == "transcript" and c["mime-type"] == TEXT]
        if not speech or not text:
            raise SdbError("its schema has no speech or no transcript column")
        self.columns = len(schema)
        self._speech, self._text = speech[0], text[0]
        self.audio = next(name for name, mime in AUDIO_TYPES.items() if mime == schema[self._speech]["mime-type"])
        samples = self._number(LONG)
        self._index = self._file.tell() + samples
        self._file.seek(self._index + LONG)
        self.count = self._number(LONG)
        if self._index + 2 * LONG + LONG * self.count > size:
            raise SdbError("its index runs past the end of the file (is it whole?)")

    def _number(self, width: int) -> int:
        data = self._file.read(width)
        if len(data) != width:
            raise SdbError("it ends early (is it whole?)")
        return int.from_bytes(data, "big")

    def _read(self, length: int, limit: int) -> bytes:
        if length > limit:
            raise SdbError("a length runs past the end of the file (is it whole?)")
        data = self._file.read(length)
        if len(data) != length:
            raise SdbError("it ends early (is it whole?)")
        return data

    def __len__(self) -> int:
        return self.count

    def offset(self, number: int) -> int:
        if not 0 <= number < self.count:
            raise IndexError(f"{self.path} has {self.count} samples, no number {number}")
        self._file.seek(self._index + 2 * LONG + LONG * number)
        return self._number(LONG)

    def read(self, number: int) -> Tuple[bytes, str]:
        """Sample ``number``'s audio payload and transcript."""
        self._file.seek(self.offset(number))
        entry = self._number(SHORT)
        found: List[Optional[bytes]] = [None, None]
        for column in range(self.columns):
            data = self._read(self._number(SHORT), entry)
            if column == self._speech:
                found[0] = data
            elif column == self._text:
                found[1] = data
        return found[0] or b"", (found[1] or b"").decode("utf-8")

    def __iter__(self) -> Iterator[Tuple[bytes, str]]:
        for number in range(self.count):
            yield self.read(number)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SdbReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
