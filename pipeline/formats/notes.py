"""What C libraries write on the console while they decode: caught, to be logged with the clip it is about."""
import contextlib
import os
import sys
import tempfile
from typing import List

#: Of what a decoder writes on the console about one clip, what is kept in its notes.
NOTES_BYTES = 1 << 16


@contextlib.contextmanager
def console_notes():
    """Catch what C libraries write on file descriptor 2 meanwhile: libmpg123, inside libsndfile, prints its
    notes on damaged MP3s there, past Python, where they would fill the console during an import."""
    if sys.stderr is not None:  # what Python holds for the console goes there, not into the notes
        sys.stderr.flush()
    saved = os.dup(2)
    notes: List[str] = []
    with _in_memory() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield notes
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            notes.append(" / ".join(line.strip() for line in sink.read(NOTES_BYTES).decode(errors="replace")
                                    .splitlines() if line.strip()))


def _in_memory():
    """An anonymous file in memory: nothing of an import is written to a /tmp outside the data root."""
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("dstrain-notes"), "w+b")
    return tempfile.TemporaryFile()  # pragma: no cover - not Linux
