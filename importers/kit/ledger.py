"""What an import knows about its rows while it runs, on disk: memory stays flat however many clips there are.

An SQLite file beside the outputs holds the candidates (clip, label, split) as the corpus reads them,
the rows rejected, and each clip's conversion result.  Rows that would share a clip are found there, by an
index, not in a set held in memory (``one_clip_each``).  The file is rebuilt by every import and deleted when
it ends; an import killed meanwhile starts it again (the converted clips themselves survive in the clip
store, clipstore.py).
"""
import contextlib
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Tuple

from dstrain.pipeline.formats.audio import Clip
from dstrain.pipeline.formats.deepspeech_csv import Reject
from dstrain.pipeline.paths import SPLITS, folded, printable

#: Rows written per transaction.
BATCH = 5000
#: SQLite's page cache, in KiB (a negative cache_size): small, whatever the rows; the system's page cache holds
#: the rest of the file.
CACHE_KIB = 4 << 10
#: The other rows or inputs a reject names, at most: a clip listed a million times is not named a million
#: times in each of its rejects.
NAMED = 5


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
            CREATE TABLE candidates (seq INTEGER PRIMARY KEY, split INTEGER, source TEXT, audio BLOB, clip TEXT,
                                     fold TEXT, transcript TEXT, sort TEXT, kept INTEGER DEFAULT 0,
                                     held INTEGER DEFAULT 0);
            CREATE INDEX by_audio ON candidates (audio);
            CREATE INDEX by_clip ON candidates (clip);
            CREATE INDEX by_fold ON candidates (fold);
            CREATE TABLE rejects (split INTEGER, source TEXT, reason TEXT, detail TEXT, sort TEXT);
            CREATE TABLE results (clip TEXT PRIMARY KEY, ok INTEGER, seconds REAL, size INTEGER, reason TEXT,
                                  detail TEXT);
            CREATE TABLE jobs (n INTEGER PRIMARY KEY, audio BLOB, clip TEXT);
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
        """Record the candidates (assemble.Candidate) in order; one whose clip's name or sentence UTF-8 cannot
        write becomes a reject.  The source audio is kept as the file system's bytes."""
        def one(cand) -> None:
            unwritable = _unwritable(cand)
            if unwritable is not None:
                self._reject(unwritable)
                return
            self.db.execute("INSERT INTO candidates (split, source, audio, clip, fold, transcript, sort) "
                            "VALUES (?,?,?,?,?,?,?)",
                            (SPLITS.index(cand.split), printable(cand.source), os.fsencode(str(cand.audio)),
                             cand.wav_name, folded(cand.wav_name), cand.transcript, natural(printable(cand.source))))

        self._batches(candidates, one)

    def one_clip_each(self) -> None:
        """Leave one candidate per clip, so no clip is made of two inputs nor named by two rows: the others become
        rejects, with their reason.

        Two inputs whose clip names are one where case and Unicode normalisation are ignored (``X.mp3.wav``,
        ``x.mp3.wav``: one file on macOS's disks, a Docker Desktop mount) would leave one clip's speech under the
        other's sentence: both are rejected, ``name_clash``, in either clip format.  An input listed again is
        kept once when the rows say the same, and rejected everywhere as ``duplicate`` when they do not (another
        sentence, another split).  Call it once every candidate is recorded, before converting anything.
        """
        with self.lock:
            self.db.execute("BEGIN")
            self.db.execute("CREATE TEMP TABLE crowded AS SELECT fold, count(DISTINCT audio) AS inputs, min(seq) AS "
                            "first, count(*) AS rows FROM candidates GROUP BY fold HAVING count(*) > 1")
            last = 0
            while True:
                page = self.db.execute("SELECT rowid, fold, inputs, first, rows FROM crowded WHERE rowid > ? "
                                       "ORDER BY rowid LIMIT ?", (last, BATCH)).fetchall()
                if not page:
                    break
                for _, fold, inputs, first, rows in page:
                    self._one_of(fold, inputs, first, rows)
                last = page[-1][0]
            self.db.execute("DROP TABLE crowded")
            self.db.execute("COMMIT")

    def _one_of(self, fold: str, inputs: int, first: int, rows: int) -> None:
        """The rejects of one group of candidates whose clip names fold alike."""
        group = "FROM candidates WHERE fold = ?"
        if inputs > 1:
            named = [row[0] for row in self.db.execute(f"SELECT DISTINCT audio {group} ORDER BY audio LIMIT ?",
                                                       (fold, NAMED + 1))]
            for split, source, audio, clip, sort in self.db.execute(
                    f"SELECT split, source, audio, clip, sort {group} ORDER BY seq", (fold,)):
                others = _listed([printable(os.fsdecode(i)) for i in named if i != audio], inputs - 1)
                self._insert(split, source, "name_clash", f"its WAV, {clip}, would be the file of {others} too (where "
                             "case is ignored): neither is kept", sort)
            self.db.execute(f"DELETE {group}", (fold,))
            return
        split, source, transcript = self.db.execute("SELECT split, source, transcript FROM candidates WHERE seq = ?",
                                                    (first,)).fetchone()
        disagree = self.db.execute(f"SELECT EXISTS (SELECT 1 {group} AND (split != ? OR transcript != ?))",
                                   (fold, split, transcript)).fetchone()[0]
        if not disagree:
            self.db.execute("INSERT INTO rejects SELECT split, source, 'duplicate', ?, sort "
                            f"{group} AND seq != ?", ("listed again: " + source, fold, first))
            self.db.execute(f"DELETE {group} AND seq != ?", (fold, first))
            return
        named = self.db.execute(f"SELECT seq, source {group} ORDER BY seq LIMIT ?", (fold, NAMED + 1)).fetchall()
        for seq, split, source, sort in self.db.execute(f"SELECT seq, split, source, sort {group} ORDER BY seq",
                                                        (fold,)):
            others = _listed([s for n, s in named if n != seq], rows - 1)
            self._insert(split, source, "duplicate", "this clip is listed elsewhere with another sentence or split: "
                         + others, sort)
        self.db.execute(f"DELETE {group}", (fold,))

    def add_rejects(self, rejects: Iterable[Reject]) -> None:
        self._batches(rejects, self._reject)

    def _reject(self, reject: Reject) -> None:
        source = printable(reject.source)  # a name's undecodable bytes, shown
        self._insert(SPLITS.index(reject.split), source, reject.reason, printable(reject.detail), natural(source))

    def _insert(self, split: int, source: str, reason: str, detail: str, sort: str) -> None:
        self.db.execute("INSERT INTO rejects VALUES (?,?,?,?,?)", (split, source, reason, detail, sort))

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

    def names(self, clip: str) -> bool:
        """Whether a candidate's clip is named ``clip``."""
        if printable(clip) != clip:  # a file's name of other bytes than UTF-8: no candidate's
            return False
        with self.lock:
            return bool(self.db.execute("SELECT 1 FROM candidates WHERE clip = ? LIMIT 1", (clip,)).fetchall())

    def wanted(self, audio: str) -> Optional[str]:
        """The clip name of the candidate whose source audio is ``audio`` (a member of the archive), the first time
        the archive holds it; every time is counted (``held_twice``)."""
        key = os.fsencode(audio)
        with self.lock:
            found = self.db.execute("SELECT clip, held FROM candidates WHERE audio = ?", (key,)).fetchall()
            if found:
                self.db.execute("UPDATE candidates SET held = held + 1 WHERE audio = ?", (key,))
        return found[0][0] if found and not found[0][1] else None

    def held_twice(self) -> Iterator[str]:
        """The clips of members the archive held more than once, once every member was offered (``wanted``): which
        recording the row means cannot be told, so the clip made of the first is not kept (name_clash)."""
        last = 0
        while True:
            with self.lock:
                page = self.db.execute("SELECT seq, clip, audio, held FROM candidates WHERE held > 1 AND seq > ? "
                                       "ORDER BY seq LIMIT ?", (last, BATCH)).fetchall()
            if not page:
                return
            self.record((clip, Clip(False, reason="name_clash", detail=f"the archive holds "
                                    f"{printable(os.fsdecode(audio))} {held} times: which recording the row means "
                                    "cannot be told")) for _, clip, audio, held in page)
            yield from (clip for _, clip, _, _ in page)
            last = page[-1][0]

    def unconverted(self) -> Tuple[int, Iterator[Tuple[str, str]]]:
        """How many clips have no result, and (source audio, clip name) of each, in the order of the candidates;
        the list is taken now, and may be read from another thread."""
        with self.lock:
            self.db.execute("DELETE FROM jobs")
            self.db.execute("INSERT INTO jobs (audio, clip) SELECT audio, clip FROM candidates WHERE clip NOT IN "
                            "(SELECT clip FROM results) GROUP BY clip ORDER BY min(seq)")
            count = self.db.execute("SELECT count(*) FROM jobs").fetchone()[0]

        def jobs() -> Iterator[Tuple[str, str]]:
            for n in range(1, count + 1):
                with self.lock:
                    audio, clip = self.db.execute("SELECT audio, clip FROM jobs WHERE n = ?", (n,)).fetchall()[0]
                yield os.fsdecode(audio), clip

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
                audio = os.fsdecode(audio)
                result = Clip(bool(ok), seconds or 0.0, size or 0, reason or "", detail or "") if ok is not None \
                    else Clip(False, reason="missing_audio", detail="not in the archive: " + printable(audio))
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


def _unwritable(cand: Any) -> Optional[Reject]:
    """Why a candidate cannot be written (in a CSV, a listing, the ledger), or None."""
    if printable(cand.wav_name) != cand.wav_name:
        return Reject(cand.split, cand.source, "invalid_path", f"{printable(cand.wav_name)!r} has bytes that are not "
                                                                "UTF-8")
    if printable(cand.transcript) != cand.transcript:
        return Reject(cand.split, cand.source, "unreadable_row", "not valid UTF-8")
    return None


def _listed(names: Iterable[str], count: int) -> str:
    """The first ``NAMED`` of ``names``, and how many more of ``count`` there are."""
    shown = list(names)[:NAMED]
    return ", ".join(shown) + (f" and {count - len(shown)} more" if count > len(shown) else "")
