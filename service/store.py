"""The job store: tenants, jobs and every change of a job's state, in SQLite (WAL) under the service's root.

A job moves queued -> running -> succeeded | failed | cancelled; resume puts a failed or cancelled job back
in the queue.  Every move is one conditional UPDATE plus its row in ``transitions`` (when, from, to, why),
in one transaction: two threads, or a service and its restarted self, can never both move a job, so a job
reaches a final state once per run of it.
"""
import contextlib
import json
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL = (SUCCEEDED, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    language TEXT NOT NULL,
    datasets TEXT,                  -- JSON list, or NULL for the language's own
    overrides TEXT NOT NULL,        -- JSON object of dotted settings keys
    stop_after TEXT,                -- the job's last stage, NULL for all
    state TEXT NOT NULL,
    queue_seq INTEGER NOT NULL,     -- FIFO order; a resumed job goes to the back
    slot TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    container TEXT,
    cancel_requested TEXT,
    exit_code INTEGER,
    cause TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (tenant, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, queue_seq);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL REFERENCES jobs(id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    cause TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_job ON transitions (job, seq);
CREATE TABLE IF NOT EXISTS uploads (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
-- Each run (attempt) of a job, what a host bills and what the time limit counts (ledger.py reads and writes it).
CREATE TABLE IF NOT EXISTS runs (
    job TEXT NOT NULL REFERENCES jobs(id),
    attempt INTEGER NOT NULL,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    slot TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    started REAL NOT NULL,          -- seconds since the epoch
    ended REAL,
    outcome TEXT,                   -- succeeded | failed | cancelled | requeued
    cpu_seconds REAL,               -- the engine's count, sampled while it ran
    peak_memory INTEGER,            -- bytes, the engine's high-water mark, sampled while it ran
    PRIMARY KEY (job, attempt)
);
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, started);
-- /healthz's write probe.
CREATE TABLE IF NOT EXISTS probes (
    name TEXT PRIMARY KEY,
    at TEXT NOT NULL
);
"""


#: Schema changes since the first version, in order: PRAGMA user_version is how many were applied, so a
#: service.db of an older version opens and is brought up to date.
_MIGRATIONS = (
    # Tenants for strangers: a uid each (NULL where the service runs jobs as its own user), a disabled
    # mark, a disk quota of their own; jobs: why the service stopped one (its disk quota, a disabled tenant).
    ("ALTER TABLE tenants ADD COLUMN uid INTEGER",
     "ALTER TABLE tenants ADD COLUMN disabled TEXT",
     "ALTER TABLE tenants ADD COLUMN quota INTEGER",
     "CREATE UNIQUE INDEX tenants_by_uid ON tenants (uid)",
     "ALTER TABLE jobs ADD COLUMN stop_cause TEXT"),
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    token_hash: str
    created: str
    #: The uid (and gid) its jobs run as and its files belong to; None: the service's own user's.
    uid: Optional[int] = None
    #: When the host disabled it (its token is refused), or None.
    disabled: Optional[str] = None
    #: Its own disk quota in bytes, or None for the host's (--tenant-quota).
    quota: Optional[int] = None


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    language: str
    datasets: Optional[List[str]]
    overrides: Dict[str, Any]
    stop_after: Optional[str]
    state: str
    queue_seq: int
    slot: Optional[str]
    attempt: int
    container: Optional[str]
    cancel_requested: Optional[str]
    exit_code: Optional[int]
    cause: Optional[str]
    idempotency_key: Optional[str]
    request_hash: Optional[str]
    created: str
    updated: str
    #: Why the service is stopping it while it runs (its tenant's disk quota, a disabled tenant), or None.
    stop_cause: Optional[str] = None

    @classmethod
    def of(cls, row: sqlite3.Row) -> "Job":
        data = dict(row)
        data["datasets"] = json.loads(data["datasets"]) if data["datasets"] is not None else None
        data["overrides"] = json.loads(data["overrides"])
        return cls(**data)


class IdempotencyConflict(Exception):
    """The key was used before, for another request."""


class Store:
    """One connection, one lock: the service's writes are small and few, and SQLite has one writer anyway."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Private before SQLite opens it: its -wal and -shm files take the database's permissions.
        os.close(os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:  # one process at a time: a CLI command and the service may open it together
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")

    @contextlib.contextmanager
    def _tx(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: Sequence = ()) -> List[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- tenants ---------------------------------------------------------------------------------------

    def add_tenant(self, tenant_id: str, name: str, token_hash: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO tenants (id, name, token_hash, created) VALUES (?, ?, ?, ?)",
                       (tenant_id, name, token_hash, now()))

    def set_token(self, name: str, token_hash: str) -> Optional[str]:
        with self._tx() as db:
            row = db.execute("SELECT id FROM tenants WHERE name = ?", (name,)).fetchone()
            if row:
                db.execute("UPDATE tenants SET token_hash = ? WHERE id = ?", (token_hash, row["id"]))
            return row["id"] if row else None

    def tenant(self, tenant_id: str) -> Optional[Tenant]:
        rows = self._all("SELECT * FROM tenants WHERE id = ?", (tenant_id,))
        return Tenant(**dict(rows[0])) if rows else None

    def tenant_named(self, name: str) -> Optional[Tenant]:
        rows = self._all("SELECT * FROM tenants WHERE name = ?", (name,))
        return Tenant(**dict(rows[0])) if rows else None

    def tenants(self) -> List[Tenant]:
        return [Tenant(**dict(row)) for row in self._all("SELECT * FROM tenants ORDER BY created")]

    # -- tenants for strangers: uids, quotas, disable and remove ---------------------------------------

    def give_uid(self, tenant_id: str, first: int, last: int) -> int:
        """The tenant's uid: the one it has, else the lowest of first..last that no tenant has."""
        with self._tx() as db:
            row = db.execute("SELECT uid FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
            if row is None:
                raise KeyError(tenant_id)
            if row["uid"] is not None:
                return row["uid"]
            taken = {r["uid"] for r in db.execute(
                "SELECT uid FROM tenants WHERE uid BETWEEN ? AND ?", (first, last)).fetchall()}
            uid = next((uid for uid in range(first, last + 1) if uid not in taken), None)
            if uid is None:
                raise ValueError(f"every uid of {first}-{last} is a tenant's: give --tenant-uids a larger range")
            db.execute("UPDATE tenants SET uid = ? WHERE id = ?", (uid, tenant_id))
            return uid

    def set_quota(self, tenant_id: str, quota: Optional[int]) -> None:
        with self._tx() as db:
            db.execute("UPDATE tenants SET quota = ? WHERE id = ?", (quota, tenant_id))

    def disable_tenant(self, tenant_id: str, cause: str) -> List[str]:
        """Mark the tenant disabled, cancel its queued jobs and ask its running ones to stop, with ``cause``,
        in one transaction (a scheduler pass never starts one of them after); the running jobs' ids."""
        stamp = now()
        with self._tx() as db:
            db.execute("UPDATE tenants SET disabled = COALESCE(disabled, ?) WHERE id = ?", (stamp, tenant_id))
            for row in db.execute("SELECT id FROM jobs WHERE tenant = ? AND state = ?",
                                  (tenant_id, QUEUED)).fetchall():
                db.execute("UPDATE jobs SET state = ?, cause = ?, updated = ? WHERE id = ?",
                           (CANCELLED, cause, stamp, row["id"]))
                db.execute("INSERT INTO transitions (job, at, from_state, to_state, cause) VALUES (?, ?, ?, ?, ?)",
                           (row["id"], stamp, QUEUED, CANCELLED, cause))
            running = [row["id"] for row in db.execute(
                "SELECT id FROM jobs WHERE tenant = ? AND state = ?", (tenant_id, RUNNING)).fetchall()]
            db.executemany("UPDATE jobs SET cancel_requested = COALESCE(cancel_requested, ?), stop_cause = ?,"
                           " updated = ? WHERE id = ?", [(stamp, cause, stamp, job_id) for job_id in running])
            return running

    def enable_tenant(self, tenant_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE tenants SET disabled = NULL WHERE id = ?", (tenant_id,))

    def remove_tenant(self, tenant_id: str) -> None:
        """The tenant's rows, its jobs', their transitions' and their runs' usage (its files are the caller's to
        delete first)."""
        with self._tx() as db:
            jobs = "SELECT id FROM jobs WHERE tenant = ?"
            db.execute("DELETE FROM runs WHERE tenant = ?", (tenant_id,))
            db.execute(f"DELETE FROM transitions WHERE job IN ({jobs})", (tenant_id,))
            db.execute("DELETE FROM jobs WHERE tenant = ?", (tenant_id,))
            db.execute("DELETE FROM uploads WHERE tenant = ?", (tenant_id,))
            db.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,))

    # -- jobs ------------------------------------------------------------------------------------------

    def submit(self, tenant: str, language: str, datasets: Optional[List[str]], overrides: Dict[str, Any],
               stop_after: Optional[str], idempotency_key: Optional[str], request_hash: str,
               write_settings) -> Tuple[Job, bool]:
        """A new queued job, or the one this idempotency key made before (then False).

        ``write_settings(job_id)`` writes the job's files inside the transaction, so a job is never queued
        without them, nor are they left behind by a job that was not created.
        """
        with self._tx() as db:
            if idempotency_key is not None:
                row = db.execute("SELECT * FROM jobs WHERE tenant = ? AND idempotency_key = ?",
                                 (tenant, idempotency_key)).fetchone()
                if row is not None:
                    if row["request_hash"] != request_hash:
                        raise IdempotencyConflict(idempotency_key)
                    return Job.of(row), False
            job_id = "job-" + secrets.token_hex(6)
            write_settings(job_id)
            stamp = now()
            db.execute(
                "INSERT INTO jobs (id, tenant, language, datasets, overrides, stop_after, state, queue_seq,"
                " idempotency_key, request_hash, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs), ?, ?, ?, ?)",
                (job_id, tenant, language, json.dumps(datasets) if datasets is not None else None,
                 json.dumps(overrides, sort_keys=True), stop_after, QUEUED, idempotency_key, request_hash,
                 stamp, stamp))
            db.execute("INSERT INTO transitions (job, at, from_state, to_state, cause) VALUES (?, ?, ?, ?, ?)",
                       (job_id, stamp, None, QUEUED, "submitted"))
            return Job.of(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()), True

    def job(self, job_id: str, tenant: Optional[str] = None) -> Optional[Job]:
        """The job; with ``tenant``, only if it is that tenant's (another's is as absent as a missing one)."""
        if tenant is None:
            rows = self._all("SELECT * FROM jobs WHERE id = ?", (job_id,))
        else:
            rows = self._all("SELECT * FROM jobs WHERE id = ? AND tenant = ?", (job_id, tenant))
        return Job.of(rows[0]) if rows else None

    def jobs(self, tenant: Optional[str] = None, states: Iterable[str] = STATES) -> List[Job]:
        states = list(states)
        marks = ",".join("?" * len(states))
        if tenant is None:
            rows = self._all(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY queue_seq", states)
        else:
            rows = self._all(f"SELECT * FROM jobs WHERE tenant = ? AND state IN ({marks}) ORDER BY created",
                             [tenant, *states])
        return [Job.of(row) for row in rows]

    def counts(self) -> Dict[str, int]:
        found = {state: 0 for state in STATES}
        for row in self._all("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            found[row["state"]] = row["n"]
        return found

    def transitions(self, job_id: str) -> List[Dict[str, Any]]:
        return [dict(row) for row in self._all(
            "SELECT at, from_state, to_state, cause FROM transitions WHERE job = ? ORDER BY seq", (job_id,))]

    def move(self, job_id: str, from_states: Sequence[str], to_state: str, reason: str, **fields) -> bool:
        """Move the job if it is in one of ``from_states``, recording ``reason`` and setting its other fields
        (``cause`` is the job's own, shown to the tenant); False if it was not in one of those states."""
        sets = ["state = ?", "updated = ?"] + [f"{name} = ?" for name in fields]
        stamp = now()
        if to_state == QUEUED:
            sets.append("queue_seq = (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs)")
        marks = ",".join("?" * len(from_states))
        with self._tx() as db:
            row = db.execute(f"SELECT state FROM jobs WHERE id = ? AND state IN ({marks})",
                             (job_id, *from_states)).fetchone()
            if row is None:
                return False
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?",
                       (to_state, stamp, *fields.values(), job_id))
            db.execute("INSERT INTO transitions (job, at, from_state, to_state, cause) VALUES (?, ?, ?, ?, ?)",
                       (job_id, stamp, row["state"], to_state, reason))
            return True

    def update(self, job_id: str, state: str, **fields) -> bool:
        """Set fields of a job that is still in ``state`` (no transition: the container's id, a cancel request)."""
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self._tx() as db:
            cursor = db.execute(f"UPDATE jobs SET {sets}, updated = ? WHERE id = ? AND state = ?",
                                (*fields.values(), now(), job_id, state))
            return cursor.rowcount == 1

    # -- uploads ---------------------------------------------------------------------------------------

    def record_upload(self, tenant: str, name: str, size: int, sha256: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?)", (tenant, name, size, sha256, now()))

    def forget_upload(self, tenant: str, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM uploads WHERE tenant = ? AND name = ?", (tenant, name))

    def uploads(self, tenant: str) -> Dict[str, Dict[str, Any]]:
        return {row["name"]: dict(row) for row in self._all("SELECT * FROM uploads WHERE tenant = ?", (tenant,))}
