"""What an import knows about its rows while it runs, on disk: memory stays flat however many clips there are.

An SQLite file beside the outputs holds the candidates (clip, label, split) as the corpus reads them,
the rows rejected, and each clip's conversion result.  Duplicate rows are found there, by an index, not
in a set held in memory: a second row naming the same source audio is rejected as a ``duplicate`` of the
first.  The file is rebuilt by every import and deleted when it ends; an import killed meanwhile starts
it again (the converted clips themselves survive in the clip store, clipstore.py).
"""
import contextlib
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Tuple

from dstrain.pipeline.formats.audio import Clip
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.paths import SPLITS

#: Rows written per transaction.
BATCH = 5000
#: SQLite's page cache, in KiB (a negative cache_size): small, whatever the rows; the system's page cache holds
#: the rest of the file.
CACHE_KIB = 4 << 10


def natural(text: str) -> str:
    """A key that sorts "train.tsv:9" before "train.tsv:10": every run of digits padded to 20."""
    return re.sub(r"\d+", lambda m: m.group().zfill(20), text)


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        for stale in (self.path, self.path.with_name(self.path.name + "-journal")):
            stale.unlink(missing_ok=True)
        # The converting pool's feeder thread asks wanted() while the importer records results: one connection,
        # one lock.
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        self.db.executescript(f"""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -{CACHE_KIB};
            PRAGMA temp_store = FILE;
            CREATE TABLE candidates (seq INTEGER PRIMARY KEY, split INTEGER, source TEXT, audio TEXT, clip TEXT,
                                     transcript TEXT, kept INTEGER DEFAULT 0);
            CREATE UNIQUE INDEX by_audio ON candidates (audio);
            CREATE INDEX by_clip ON candidates (clip);
            CREATE TABLE rejects (split INTEGER, source TEXT, reason TEXT, detail TEXT, sort TEXT);
            CREATE TABLE results (clip TEXT PRIMARY KEY, ok INTEGER, seconds REAL, size INTEGER, reason TEXT,
                                  detail TEXT);
            CREATE TABLE jobs (n INTEGER PRIMARY KEY, audio TEXT, clip TEXT);
        """)

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _batches(self, rows: Iterable, write) -> None:
        # The rows may come from a generator that reads the corpus: the lock is held one batch at a time.
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                self._write(batch, write)
                batch = []
        self._write(batch, write)

    def _write(self, batch, write) -> None:
        with self.lock:
            self.db.execute("BEGIN")
            for row in batch:
                write(row)
            self.db.execute("COMMIT")

    def add_candidates(self, candidates: Iterable[Any]) -> None:
        """Record the candidates (assemble.Candidate) in order; a second row of the same source audio becomes a
        duplicate reject."""
        def one(cand) -> None:
            try:
                self.db.execute("INSERT INTO candidates (split, source, audio, clip, transcript) VALUES (?,?,?,?,?)",
                                (SPLITS.index(cand.split), cand.source, str(cand.audio), cand.wav_name,
                                 cand.transcript))
            except sqlite3.IntegrityError:
                (first,) = self.db.execute("SELECT source FROM candidates WHERE audio = ?",
                                           (str(cand.audio),)).fetchone()
                self._reject(Reject(cand.split, cand.source, "duplicate", "the same clip as " + first))

        self._batches(candidates, one)

    def add_rejects(self, rejects: Iterable[Reject]) -> None:
        self._batches(rejects, self._reject)

    def _reject(self, reject: Reject) -> None:
        self.db.execute("INSERT INTO rejects VALUES (?,?,?,?,?)", (SPLITS.index(reject.split), reject.source,
                                                                    reject.reason, reject.detail,
                                                                    natural(reject.source)))

    def reject(self, reject: Reject) -> None:
        with self.lock:
            self._reject(reject)

    @contextlib.contextmanager
    def transaction(self):
        """Many small writes (keep, reject) in one transaction."""
        self.db.execute("BEGIN")
        yield
        self.db.execute("COMMIT")

    def shrink(self) -> None:
        """Give back SQLite's cached pages: the converting workers are forked next, each a copy of this process."""
        with self.lock:
            self.db.execute("PRAGMA shrink_memory")

    def wanted(self, audio: str) -> Optional[str]:
        """The clip name of the candidate whose source audio is ``audio``, if its clip has no result yet."""
        with self.lock:
            found = self.db.execute("SELECT clip FROM candidates WHERE audio = ? AND clip NOT IN (SELECT clip FROM "
                                    "results)", (audio,)).fetchall()
        return found[0][0] if found else None

    def unconverted(self) -> Tuple[int, Iterator[Tuple[str, str]]]:
        """How many clips have no result, and (source audio, clip name) of each, once, in the order of the
        candidates; the list is taken now, and may be read from another thread."""
        with self.lock:
            self.db.execute("DELETE FROM jobs")
            self.db.execute("INSERT INTO jobs (audio, clip) SELECT audio, clip FROM candidates WHERE clip NOT IN "
                            "(SELECT clip FROM results) GROUP BY clip ORDER BY min(seq)")
            count = self.db.execute("SELECT count(*) FROM jobs").fetchone()[0]

        def jobs() -> Iterator[Tuple[str, str]]:
            for n in range(1, count + 1):
                with self.lock:
                    job = self.db.execute("SELECT audio, clip FROM jobs WHERE n = ?", (n,)).fetchall()[0]
                yield job

        return count, jobs()

    def record(self, results: Iterable[Tuple[str, Clip]]) -> None:
        """Each clip's conversion result (the payload, if any, is the clip store's)."""
        self._batches(results, lambda item: self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?)",
            (item[0], int(item[1].ok), item[1].seconds, item[1].size, item[1].reason, item[1].detail)))

    def judged(self) -> Iterator[Tuple[int, Tuple[str, str, Path, str, str], Clip]]:
        """(seq, the candidate's fields, its clip's result) in the order of the candidates; a clip the archive
        did not hold is missing."""
        last = 0
        while True:
            # A page at a time, each read whole: the caller writes (keep, reject) between two rows.
            page = self.db.execute(
                "SELECT c.seq, c.split, c.source, c.audio, c.clip, c.transcript, r.ok, r.seconds, r.size, r.reason, "
                "r.detail FROM candidates c LEFT JOIN results r ON r.clip = c.clip WHERE c.seq > ? ORDER BY c.seq "
                "LIMIT ?", (last, BATCH)).fetchall()
            if not page:
                return
            for seq, split, source, audio, clip, transcript, ok, seconds, size, reason, detail in page:
                result = Clip(bool(ok), seconds or 0.0, size or 0, reason or "", detail or "") if ok is not None \
                    else Clip(False, reason="missing_audio", detail="not in the archive: " + audio)
                yield seq, (SPLITS[split], source, Path(audio), clip, transcript), result
            last = page[-1][0]

    def keep(self, seq: int) -> None:
        with self.lock:
            self.db.execute("UPDATE candidates SET kept = 1 WHERE seq = ?", (seq,))

    def kept(self, split: str, by_length: bool) -> Iterator[Tuple[str, int, str, str]]:
        """(clip name, WAV size, transcript, source) of the kept rows of ``split``: in the order of the candidates,
        or shortest first (by WAV size), ties in that order."""
        order = "r.size, c.seq" if by_length else "c.seq"
        yield from self.db.execute(
            "SELECT c.clip, r.size, c.transcript, c.source FROM candidates c JOIN results r ON r.clip = c.clip "
            f"WHERE c.kept AND c.split = ? ORDER BY {order}", (SPLITS.index(split),))

    def unkept_clips(self) -> Iterator[str]:
        """Converted clips no kept row names: judged unfit, their files must not stay."""
        yield from (row[0] for row in self.db.execute(
            "SELECT clip FROM results WHERE ok AND clip NOT IN (SELECT clip FROM candidates WHERE kept)"))

    def rejects(self) -> Iterator[Reject]:
        for split, source, reason, detail in self.db.execute(
                "SELECT split, source, reason, detail FROM rejects ORDER BY split, sort, rowid"):
            yield Reject(SPLITS[split], source, reason, detail)
