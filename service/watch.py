"""What the scheduler watches while a job runs (a part of the Scheduler, scheduler.py): its usage, its time
limit and its tenant's disk quota, and the stops the service asks for.

A stop's cause is recorded in the store before the launcher is asked, so the run's SIGTERM exit is never
taken for the infrastructure's, even by a service restarted meanwhile.
"""
import logging
import threading
import time

from dstrain.service.launcher import RunState, Usage
from dstrain.service.quotas import quota_of
from dstrain.service.store import RUNNING, Job
from dstrain.service.units import shown_duration

log = logging.getLogger("dstrain.service")

#: How often the usage figures sampled on each pass are written to the ledger.
USAGE_WRITE_SECONDS = 30.0


def _larger(a, b):
    return b if a is None else a if b is None else max(a, b)


class Watch:
    def _watch_run(self, job: Job, run: RunState) -> None:
        """Sample its usage; stop it if its tenant cancelled it, or the service has a cause to (its time limit
        here, its tenant's disk quota in _hold_to_quotas)."""
        if self.ledger.run(job.id, job.attempt) is None:  # started by a service that stopped before it wrote the row
            self.ledger.start(job, job.attempt, run.node or job.slot or "", self._gpus(job, run),
                              run.started or time.time())
        self._sample(job, run)
        limit = self.options.time_limit
        stop_cause = job.stop_cause
        if limit is not None and not (job.cancel_requested or stop_cause) and self._seconds_used(job) >= limit:
            stop_cause = (f"stopped: the time limit of {shown_duration(limit)} was reached; its checkpoint is "
                          "kept, resume continues it")
            if self.store.update(job.id, RUNNING, stop_cause=stop_cause):
                log.info("job %s: past its time limit of %s; stopping it", job.id, shown_duration(limit))
        if (job.cancel_requested or stop_cause) and job.id not in self._stopping:
            log.info("job %s: stopping its %s (grace %d s)", job.id, self.launcher.run_noun, self.options.stop_grace)
            self._stop_run(job.id, run.handle)

    def _stop_run(self, key: str, handle: str) -> None:
        """Ask the launcher to stop the run, once per ``key`` (a job, or a run of an ended job) in this process."""
        self._stopping.add(key)
        # A stop waits up to the grace period: not in the pass, which must go on for other jobs.
        threading.Thread(target=self.launcher.stop, args=(handle, self.options.stop_grace),
                         name=f"stop-{key}", daemon=True).start()

    def _seconds_used(self, job: Job) -> float:
        """Its runs' time since its tenant last submitted or resumed it: the infrastructure's stops do not reset
        the count, a resume does."""
        at = time.time()
        current = self.ledger.run(job.id, job.attempt)
        before = self.ledger.requeued_before(job.id, job.attempt)
        return sum(run.seconds(at) for run in before) + (current.seconds(at) if current else 0.0)

    def _sample(self, job: Job, run: RunState) -> None:
        """The engine's usage figures, kept in memory and written to the ledger every half minute (and at the end),
        not on every pass."""
        try:
            usage = self.launcher.usage(run.handle)
        except Exception as exc:  # figures missed now are taken at the next pass
            log.debug("job %s: no usage from the engine: %s", job.id, exc)
            return
        if usage is None:
            return
        attempt, kept, written = self._samples.get(job.id, (job.attempt, None, 0.0))
        if attempt != job.attempt:
            kept, written = None, 0.0
        if kept is not None:  # the figures only grow: a container read as it ends says 0, and must not win
            usage = Usage(_larger(kept.cpu_seconds, usage.cpu_seconds), _larger(kept.peak_memory, usage.peak_memory))
        self._samples[job.id] = (job.attempt, usage, written)
        self._flush_usage(job.id)

    def _flush_usage(self, job_id: str, force: bool = False) -> None:
        attempt, usage, written = self._samples.get(job_id, (None, None, 0.0))
        if usage is None or (not force and time.time() - written < USAGE_WRITE_SECONDS):
            return
        try:
            self.ledger.usage(job_id, attempt, usage.cpu_seconds, usage.peak_memory)
        except Exception as exc:  # a full disk: the figures stay in memory and are written at the next try
            log.warning("job %s: usage not recorded yet: %s", job_id, exc)
            if force:
                raise
            return
        self._samples[job_id] = (attempt, usage, time.time())

    # -- disk quotas -----------------------------------------------------------------------------------

    def _measure_disks(self) -> None:
        """Measure the disk in use of each tenant with a running job, every --disk-check-seconds: a walk, so
        here rather than in the pass, which must stay quick."""
        while not self._closed.wait(self.options.disk_check_seconds):
            try:
                for tenant_id in {job.tenant for job in self.store.jobs(states=[RUNNING])}:
                    tenant = self.store.tenant(tenant_id)
                    if tenant is not None and quota_of(self.options, tenant) is not None:
                        self.disk.measure(tenant_id)
                self.poke()
            except Exception:  # the next round measures again
                log.exception("measuring the tenants' disk in use failed")

    def _hold_to_quotas(self) -> None:
        """A running job whose tenant is over its disk quota is stopped (with the grace: its checkpoint is
        kept) and ends failed, with the quota and the use as its cause."""
        for job in self.store.jobs(states=[RUNNING]):
            tenant = self.store.tenant(job.tenant)
            if job.stop_cause or job.cancel_requested or tenant is None:
                continue
            over = self.disk.over(job.tenant, quota_of(self.options, tenant), max_age=None)
            if over and self.store.update(job.id, RUNNING, stop_cause=over):
                log.info("job %s: stopping it, %s", job.id, over)
