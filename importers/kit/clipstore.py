"""Where an import puts the clips it converts, and how it writes its sets: the one place the format is chosen.

- ``WavClips`` (clips.format = "wav"): each clip is a WAV file in ``clips/``, written by the worker that
  converted it; the sets are DeepSpeech CSVs naming them, in the order of the rows.  A rerun after a crash
  finds the WAVs already there.
- ``SdbClips`` ("sdb"): each clip is encoded (Opus or WAV, payload.py) by its worker and appended by the
  importer to one spool file, ``spool/clips.bin``, indexed in ``spool/index.sqlite``; what is committed
  there survives a kill -9, and the rest is converted again.  At the end ``train.sdb``, ``dev.sdb`` and
  ``test.sdb`` are written from the spool, shortest clip first (ties in the order of the rows), so the same
  rows give the same bytes however often the import was interrupted; then the spool is deleted.

A store is tied to its source archive (and for a database to its audio encoding and Opus's complexity): a
store of another one is emptied first, so no clip of another archive is ever reused.
"""
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Tuple

from dstrain.pipeline.atomic import read_json, write_json, write_text
from dstrain.pipeline.formats.audio import Clip, convert
from dstrain.pipeline.formats.deepspeech_csv import Sample
from dstrain.pipeline.formats.payload import OPUS_COMPLEXITY, Encoding
from dstrain.pipeline.formats.sets import SetWriter
from dstrain.pipeline.paths import SPLITS, ImportedDataset

log = logging.getLogger("dstrain")
#: (clip name, WAV size, transcript, source) of one kept row, as ledger.kept() gives them.
Row = Tuple[str, int, str, str]
#: The spool's index is committed at least this often (seconds), and every COMMIT_CLIPS clips.
COMMIT_SECONDS = 2.0
COMMIT_CLIPS = 2000


def claim_clips(out: ImportedDataset, source_sha256: str) -> None:
    """Keep converted WAVs across a crash, but never reuse those of another source archive."""
    marker = out.clips / ".source-sha256"
    if out.clips.exists() and (not marker.exists() or marker.read_text() != source_sha256):
        shutil.rmtree(str(out.clips))
    if not marker.exists():
        write_text(marker, source_sha256)


def _remove_sets(out: ImportedDataset, clip_format: str) -> None:
    for split in SPLITS:
        found = out.set(split, clip_format)
        for path in {found.data, found.listing}:
            path.unlink(missing_ok=True)


class WavClips:
    format = "wav"
    #: What the workers are asked for: a WAV file at the destination.
    encoding: Optional[Encoding] = None
    by_length = False

    def __init__(self, out: ImportedDataset, sha256: str):
        self.out = out
        claim_clips(out, sha256)
        if out.set("train", "sdb").data.exists():
            log.info("%s: imported as sample databases before; now as WAVs (clips.format = wav): the databases "
                     "are removed", out.dir.name)
        shutil.rmtree(str(out.spool), ignore_errors=True)  # of an import to sample databases
        _remove_sets(out, "sdb")

    def forget_others(self, named: Callable[[str], bool]) -> None:
        """Delete the WAVs no candidate names now: those of an earlier import named otherwise (``x.wav`` before
        the extension was kept), or of rows since rejected."""
        if not self.out.clips.is_dir():
            return
        with os.scandir(str(self.out.clips)) as entries:
            stale = [entry.path for entry in entries if entry.name.endswith(".wav") and not named(entry.name)]
        for path in stale:
            os.unlink(path)

    def done(self, clip: str) -> Optional[Clip]:
        wav = str(self.destination(clip))
        # Reads the WAV's header only.  None when there is none, or when the file system refuses its name: the
        # conversion says why (invalid_path).
        found = convert((wav, wav))
        return found if found.ok else None

    def destination(self, clip: str) -> Path:
        return self.out.clips / clip

    def put(self, clip: str, result: Clip) -> Clip:
        return result

    def discard(self, clips: Iterable[str]) -> None:
        for clip in clips:
            self.destination(clip).unlink(missing_ok=True)

    def write_set(self, split: str, rows: Iterable[Row]) -> int:
        with SetWriter(self.out.set(split, self.format)) as writer:
            for clip, size, transcript, _ in rows:
                writer.add(Sample("clips/" + clip, size, transcript))
        return writer.count

    def finish(self) -> None:
        pass


class SdbClips:
    format = "sdb"
    by_length = True

    def __init__(self, out: ImportedDataset, sha256: str, audio: str, complexity: int):
        self.out = out
        self.audio = audio
        self.encoding = Encoding(audio, complexity)
        if out.csv("train").exists():
            log.info("%s: imported as WAVs before; now as sample databases (clips.format = sdb): the WAVs are "
                     "removed once the databases are written", out.dir.name)
        spool = out.spool
        identity = {"sha256": sha256, "audio": audio, **({"complexity": complexity} if audio == "opus" else {})}
        if read_json(spool / "source.json") != identity:
            shutil.rmtree(str(spool), ignore_errors=True)
        (spool / "scratch").mkdir(parents=True, exist_ok=True)
        write_json(spool / "source.json", identity)
        # Asked by the converting pool's feeder thread (done), written by the importer (put): one lock.
        self._index = sqlite3.connect(str(spool / "index.sqlite"), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._index.executescript("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                                  "CREATE TABLE IF NOT EXISTS clips (clip TEXT PRIMARY KEY, at INTEGER, length INTEGER,"
                                  " seconds REAL, size INTEGER)")
        # Bytes appended after the last commit belong to no clip: a kill -9 came between.
        end = self._index.execute("SELECT coalesce(max(at + length), 0) FROM clips").fetchone()[0]
        data = spool / "clips.bin"
        data.touch()
        self._data = data.open("r+b")
        self._data.truncate(end)
        self._data.seek(end)
        self._pending, self._committed = 0, time.monotonic()
        held = self._index.execute("SELECT count(*) FROM clips").fetchone()[0]
        if held:
            log.info("%s: %d clips converted before the stop are kept", out.dir.name, held)
        self._index.execute("BEGIN")

    def done(self, clip: str) -> Optional[Clip]:
        with self._lock:
            found = self._index.execute("SELECT seconds, size FROM clips WHERE clip = ?", (clip,)).fetchall()
        found = found[0] if found else None
        return Clip(True, seconds=found[0], size=found[1]) if found else None

    def forget_others(self, named: Callable[[str], bool]) -> None:
        """Clips of the spool no candidate names are never written to a database, and go with the spool."""

    def destination(self, clip: str) -> Path:
        """Where sox or ffmpeg may write the clip while it is converted; never kept."""
        return self.out.spool / "scratch" / clip

    def put(self, clip: str, result: Clip) -> Clip:
        """Append a converted clip to the spool; the result comes back without its payload."""
        if result.ok:
            at = self._data.tell()
            self._data.write(result.payload)
            with self._lock:
                self._index.execute("INSERT OR REPLACE INTO clips VALUES (?,?,?,?,?)",
                                    (clip, at, len(result.payload), result.seconds, result.size))
            self._pending += 1
            if self._pending >= COMMIT_CLIPS or time.monotonic() - self._committed > COMMIT_SECONDS:
                self._commit()
        return result._replace(payload=b"")

    def _commit(self) -> None:
        self._data.flush()  # the bytes reach the system before the index that names them
        with self._lock:
            self._index.execute("COMMIT")
            self._index.execute("BEGIN")
        self._pending, self._committed = 0, time.monotonic()

    def discard(self, clips: Iterable[str]) -> None:
        """A clip judged unfit stays in the spool until it is deleted."""

    def payloads(self, rows: Iterable[Row]) -> Iterator[Tuple[Row, bytes]]:
        for row in rows:
            at, length = self._index.execute("SELECT at, length FROM clips WHERE clip = ?", (row[0],)).fetchone()
            self._data.seek(at)
            yield row, self._data.read(length)

    def write_set(self, split: str, rows: Iterable[Row]) -> int:
        self._commit()
        with SetWriter(self.out.set(split, self.format), self.audio) as writer:
            for (clip, size, transcript, _), data in self.payloads(rows):
                writer.add(Sample(clip, size, transcript), data, self.audio)
        self._data.seek(0, 2)
        return writer.count

    def finish(self) -> None:
        """The sets are written: the spool goes, and with it what an import to WAVs left (clips/, its CSVs), and
        the WAVs a corpus cut for this import (CCPMF)."""
        self._index.execute("COMMIT")
        self._index.close()
        self._data.close()
        shutil.rmtree(str(self.out.spool))
        shutil.rmtree(str(self.out.clips), ignore_errors=True)
        _remove_sets(self.out, "wav")


def clip_store(out: ImportedDataset, sha256: str, clip_format: str, audio: str, complexity: int = OPUS_COMPLEXITY):
    """The store for ``clip_format`` (clips.format) and, for sample databases, their ``audio`` (clips.sdb_audio)
    and Opus's ``complexity`` (clips.opus_complexity)."""
    return SdbClips(out, sha256, audio, complexity) if clip_format == "sdb" else WavClips(out, sha256)
