"""The ledger: each run (attempt) of a job, in the job store's ``runs`` table (store.py).

What a host bills (wall time, GPU-seconds, CPU-seconds, peak memory), what the time limit counts, and how
each run ended, so that the infrastructure's stops of a job can be counted (requeues).  One row per run,
written when it starts, sampled while it runs, closed when it ends.  It shares the store's one connection
and lock: one writer, as SQLite has anyway.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

from dstrain.service.store import QUEUED, Job, Store, now

#: How a run ended, besides the job's final states: stopped by the infrastructure and queued again.
REQUEUED = "requeued"


@dataclass(frozen=True)
class Run:
    job: str
    attempt: int
    tenant: str
    slot: str
    gpus: int
    started: float
    ended: Optional[float]
    outcome: Optional[str]
    cpu_seconds: Optional[float]
    peak_memory: Optional[int]

    def seconds(self, at: float) -> float:
        """Its wall time: to its end, or to ``at`` while it runs."""
        return max(0.0, (self.ended if self.ended is not None else at) - self.started)


class Ledger:
    def __init__(self, store: Store):
        self.store = store

    def _runs(self, sql: str, args: Sequence = ()) -> List[Run]:
        return [Run(**dict(row)) for row in self.store._all(sql, args)]

    def start(self, job: Job, attempt: int, slot: str, gpus: int, at: float) -> None:
        """The row of a run just started (or found running without one: the service stopped in between)."""
        with self.store._tx() as db:
            db.execute("INSERT OR IGNORE INTO runs (job, attempt, tenant, slot, gpus, started)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (job.id, attempt, job.tenant, slot, gpus, at))

    def run(self, job_id: str, attempt: int) -> Optional[Run]:
        found = self._runs("SELECT * FROM runs WHERE job = ? AND attempt = ?", (job_id, attempt))
        return found[0] if found else None

    def of_job(self, job_id: str) -> List[Run]:
        return self._runs("SELECT * FROM runs WHERE job = ? ORDER BY attempt", (job_id,))

    def of_tenant(self, tenant: Optional[str] = None, since: Optional[float] = None) -> List[Run]:
        """Every run of the tenant's jobs (every tenant's without one); with ``since``, those still running or
        ended since then."""
        sql, args = "SELECT * FROM runs WHERE 1", []
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", [tenant]
        if since is not None:
            sql, args = sql + " AND (ended IS NULL OR ended >= ?)", [*args, since]
        return self._runs(sql + " ORDER BY started", args)

    def usage(self, job_id: str, attempt: int, cpu_seconds: Optional[float], peak_memory: Optional[int]) -> None:
        """The engine's latest figures; they only grow, so a late or repeated sample never lowers them."""
        with self.store._tx() as db:
            db.execute("UPDATE runs SET cpu_seconds = MAX(COALESCE(cpu_seconds, 0), COALESCE(?, 0)),"
                       " peak_memory = MAX(COALESCE(peak_memory, 0), COALESCE(?, 0)) WHERE job = ? AND attempt = ?",
                       (cpu_seconds, peak_memory, job_id, attempt))

    def end(self, job_id: str, attempt: int, outcome: str, at: float) -> None:
        """How the run ended.  Written before the job's own move: if that move fails (a full disk), the next pass
        writes both again, and the first end stays the end."""
        with self.store._tx() as db:
            db.execute("UPDATE runs SET ended = COALESCE(ended, ?), outcome = ? WHERE job = ? AND attempt = ?",
                       (at, outcome, job_id, attempt))

    def requeued_before(self, job_id: str, attempt: int) -> List[Run]:
        """The runs just before ``attempt`` that the infrastructure stopped, back to the last that ended otherwise
        (a tenant's resume or submit starts the count again)."""
        found = []
        for run in reversed(self._runs("SELECT * FROM runs WHERE job = ? AND attempt < ? ORDER BY attempt",
                                       (job_id, attempt))):
            if run.outcome != REQUEUED:
                break
            found.append(run)
        return found

    def keep_place(self, job_id: str, queue_seq: int) -> None:
        """A job the infrastructure stopped goes back where it was in the queue, not to its end."""
        with self.store._tx() as db:
            db.execute("UPDATE jobs SET queue_seq = ? WHERE id = ? AND state = ?", (queue_seq, job_id, QUEUED))

    def probe(self) -> None:
        """A small write, for /healthz: raises when the store cannot be written."""
        with self.store._tx() as db:
            db.execute("INSERT OR REPLACE INTO probes VALUES ('healthz', ?)", (now(),))
