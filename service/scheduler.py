"""The scheduler: hands out slots to queued jobs, first come first served, and records how their runs end.

One pass at a time, each from what is true now (the store and the launcher's labelled runs), never from
memory, so the pass after a restart is the same as any other:
- a running job whose run has ended is recorded as succeeded, failed or cancelled, and its slot freed; one
  the infrastructure stopped (a SIGTERM or SIGKILL the service did not send: the engine restarting) is
  queued again in its place, to resume from its checkpoint, up to --max-requeues times in a row;
- a running job whose run still runs is watched again (re-attached), its usage sampled, and stopped when it
  passes its time limit;
- a running job with no run at all never got one (the service stopped in between): it is queued again;
- then queued jobs take the free slots in FIFO order, skipping a tenant already at its limit.
A pass runs when something happens (a submit, a cancel, the engine's event that a container died) and
every few seconds besides.
"""
import logging
import threading
import time
from collections import Counter, defaultdict
from typing import Dict, List, Optional

from dstrain.service import runs
from dstrain.service.health import cannot_write, disk_full
from dstrain.service.launcher import ACTIVE, CREATED, JobSpec, Launcher, RunState
from dstrain.service.layout import Layout
from dstrain.service.ledger import REQUEUED, Ledger
from dstrain.service.options import Options, shown_duration
from dstrain.service.quotas import DiskMeter, quota_of
from dstrain.service.store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, Store
from dstrain.service.tenants import container_user

log = logging.getLogger("dstrain.service")


#: How often the usage figures sampled on each pass are written to the ledger.
USAGE_WRITE_SECONDS = 30.0
#: Exit codes of a container whose process was stopped by a signal (SIGTERM: dstrain exits 143 itself).
_SIGNALLED = {143: "SIGTERM", 137: "SIGKILL"}


def stopped_from_outside(run: RunState) -> Optional[str]:
    """Why a run looks stopped by the infrastructure rather than by its own failure: the engine's or host's
    SIGTERM or SIGKILL (the service's own stops are recorded before it asks, and a cancel is the tenant's), not
    the memory limit's kill."""
    signal = _SIGNALLED.get(run.exit_code)
    if signal is None or run.killed_because:
        return None
    return (f"its container was stopped by a {signal} the service did not send (exit code {run.exit_code}): the "
            "container engine or the host restarting, or someone stopping it by hand")


def job_argv(layout: Layout, job: Job) -> List[str]:
    """``dstrain run`` as the image's entrypoint gets it: the run is named after the job."""
    argv = ["run", "--language", job.language, "--run", job.id, "--config", layout.container_job_settings(job.id)]
    if job.datasets:
        argv += ["--datasets", ",".join(job.datasets)]
    if job.stop_after:
        argv += ["--to", job.stop_after]
    return argv


class Scheduler:
    def __init__(self, store: Store, launcher: Launcher, layout: Layout, options: Options):
        self.store = store
        self.launcher = launcher
        self.layout = layout
        self.options = options
        self.ledger = Ledger(store)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._pass = threading.Lock()
        #: Jobs whose stop this process has asked for; after a restart the next pass asks again.
        self._stopping = set()
        #: Secrets for a job's next run, kept in memory only (never in the store).
        self._secrets: Dict[str, Dict[str, str]] = {}
        self._threads: List[threading.Thread] = []
        #: Each tenant's disk in use, for its quota (uploads read it too).
        self.disk = DiskMeter(layout)
        #: job -> (attempt, the latest usage sample, when it was last written to the ledger)
        self._samples: Dict[str, tuple] = {}

    # -- life ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.step()  # re-attach and record what ended while the service was down, before anything new
        for target, name in ((self._loop, "scheduler"), (self._watch, "docker-events"),
                             (self._measure_disks, "disk-meter")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop scheduling; the runs go on, and the next start finds them."""
        self._closed.set()
        self._wake.set()
        self.launcher.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def poke(self) -> None:
        self._wake.set()

    def keep_secrets(self, job_id: str, environment: Optional[Dict[str, str]]) -> None:
        if environment:
            self._secrets[job_id] = dict(environment)

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.options.poll_seconds)
            self._wake.clear()
            if self._closed.is_set():
                break
            try:
                self.step()
            except Exception as exc:  # a pass must not end the loop: the engine may be restarting
                if disk_full(exc):  # said once per pass in one line: the traceback tells nothing more
                    log.warning("scheduler pass stopped, the disk is full (%s); the next one tries again", exc)
                else:
                    log.exception("scheduler pass failed; the next one tries again")

    def _watch(self) -> None:
        self.launcher.watch(self.poke)

    # -- one pass --------------------------------------------------------------------------------------

    def step(self) -> None:
        with self._pass:
            if not self.launcher.available():
                log.warning("the container engine does not answer; jobs wait")
                return
            self._hold_to_quotas()
            self._reconcile(self.launcher.runs())
            self._dispatch()

    def _reconcile(self, found: List[RunState]) -> None:
        by_job = defaultdict(list)
        for run in found:
            by_job[run.job].append(run)
        running = {job.id: job for job in self.store.jobs(states=[RUNNING])}
        for job in running.values():
            current = [run for run in by_job.get(job.id, []) if run.attempt == job.attempt]
            if not current and job.container and self.ledger.run(job.id, job.attempt):
                self._requeue(job, None, "its container is gone, removed by something other than the service")
            elif not current:
                log.warning("job %s: no container for run %d; queued again", job.id, job.attempt)
                self.store.move(job.id, [RUNNING], QUEUED, "no container was found for its run; queued again",
                                slot=None, container=None)
            elif current[0].phase == CREATED:
                log.info("job %s: starting its container, created before the service stopped", job.id)
                self.launcher.resume_created(current[0].handle)
            elif current[0].phase == ACTIVE:
                self._watch_run(job, current[0])
            else:
                self._finish(job, current[0])
        for run in found:  # runs already recorded (the service stopped before removing them), or foreign
            job = running.get(run.job)
            if job is None or job.attempt != run.attempt:
                if run.phase == ACTIVE:
                    log.warning("container %s (job %s) runs but its job does not; left alone", run.handle[:12],
                                run.job)
                else:
                    self.launcher.remove(run.handle)

    def _finish(self, job: Job, run: RunState) -> None:
        outside = stopped_from_outside(run)
        if job.cancel_requested:
            state, cause = CANCELLED, job.stop_cause or "cancelled by the tenant"
        elif job.stop_cause:  # the service stopped it (its time limit, its tenant's quota), and said why
            state, cause = FAILED, job.stop_cause
        elif run.exit_code == 0:
            state, cause = SUCCEEDED, "finished"
        elif outside:
            self._requeue(job, run, outside)
            return
        else:
            state, cause = FAILED, self._failure(job, run)
        self._flush_usage(job.id, force=True)
        self.ledger.end(job.id, job.attempt, state, time.time())
        if self.store.move(job.id, [RUNNING], state, cause, exit_code=run.exit_code, slot=None,
                           cause=None if state == SUCCEEDED else cause):
            log.info("job %s: %s (exit code %s)", job.id, state, run.exit_code)
        self._forget(job.id, run.handle)

    def _forget(self, job_id: str, handle: Optional[str]) -> None:
        if handle is not None:
            self.launcher.remove(handle)
        self._stopping.discard(job_id)
        self._samples.pop(job_id, None)

    def _failure(self, job: Job, run: RunState) -> str:
        """The stage log's last error; else the engine's reason; else the error dstrain printed; else the code."""
        cause = runs.failure_cause(self.layout, job) or run.killed_because
        if cause:
            return cause
        errors = [line for line in self.launcher.console_tail(run.handle, 40).splitlines()
                  if line.startswith("error:")]
        return errors[-1][len("error:"):].strip() if errors else f"its container exited with code {run.exit_code}"

    # -- what the service watches while a job runs, and the stops it did not ask for -----------------------

    def _watch_run(self, job: Job, run: RunState) -> None:
        """Sample its usage; stop it if its tenant cancelled it, or the service has a cause to (its time limit
        here, its tenant's disk quota in _hold_to_quotas).  The cause is recorded before the engine is asked,
        so the run's SIGTERM exit is never taken for the infrastructure's."""
        if self.ledger.run(job.id, job.attempt) is None:  # started by a service that stopped before it wrote the row
            self.ledger.start(job, job.attempt, job.slot or "", self._gpus(job), time.time())
        self._sample(job, run)
        limit = self.options.time_limit
        stop_cause = job.stop_cause
        if limit is not None and not (job.cancel_requested or stop_cause) and self._seconds_used(job) >= limit:
            stop_cause = (f"stopped: the time limit of {shown_duration(limit)} was reached; its checkpoint is "
                          "kept, resume continues it")
            if self.store.update(job.id, RUNNING, stop_cause=stop_cause):
                log.info("job %s: past its time limit of %s; stopping it", job.id, shown_duration(limit))
        if (job.cancel_requested or stop_cause) and job.id not in self._stopping:
            self._stop(job, run.handle)

    def _gpus(self, job: Job) -> int:
        return next((len(slot.devices) for slot in self.options.slots if slot.name == job.slot), 0)

    def _seconds_used(self, job: Job) -> float:
        """Its runs' time since its tenant last submitted or resumed it: the infrastructure's stops do not reset
        the count, a resume does."""
        at = time.time()
        current = self.ledger.run(job.id, job.attempt)
        before = self.ledger.requeued_before(job.id, job.attempt)
        return sum(run.seconds(at) for run in before) + (current.seconds(at) if current else 0.0)

    def _requeue(self, job: Job, run: Optional[RunState], why: str) -> None:
        """A job the infrastructure stopped: queued again in its place to resume, or failed past --max-requeues."""
        done = len(self.ledger.requeued_before(job.id, job.attempt)) + 1
        limit = self.options.max_requeues
        self._flush_usage(job.id, force=True)
        exit_code = run.exit_code if run else None
        if done > limit:
            cause = (f"stopped by the infrastructure {done} times in a row, the last time because {why}; not queued "
                     f"again (the service's limit is {limit}). Its checkpoint is kept: resume continues it")
            self.ledger.end(job.id, job.attempt, FAILED, time.time())
            if self.store.move(job.id, [RUNNING], FAILED, cause, exit_code=exit_code, slot=None, cause=cause):
                log.warning("job %s: failed, stopped by the infrastructure %d times", job.id, done)
        else:
            self.ledger.end(job.id, job.attempt, REQUEUED, time.time())
            reason = (f"stopped by the infrastructure: {why}; queued again to resume from its checkpoint "
                      f"(requeue {done} of at most {limit})")
            if self.store.move(job.id, [RUNNING], QUEUED, reason, exit_code=exit_code, slot=None, container=None):
                self.ledger.keep_place(job.id, job.queue_seq)
                log.warning("job %s: %s", job.id, reason)
        self._forget(job.id, run.handle if run else None)

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
        attempt, _, written = self._samples.get(job.id, (job.attempt, None, 0.0))
        if attempt != job.attempt:
            written = 0.0
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

    def _disk_full(self) -> bool:
        """Whether the service cannot write its files or store now: then no job starts (health.py)."""
        problem = cannot_write(self.layout, self.ledger)
        if problem:
            log.warning("no job starts while the service %s", problem)
        return problem is not None

    def _stop(self, job: Job, handle: str) -> None:
        self._stopping.add(job.id)
        log.info("job %s: stopping its container (grace %d s)", job.id, self.options.stop_grace)
        # docker stop waits up to the grace period: not in the pass, which must go on for other jobs.
        threading.Thread(target=self.launcher.stop, args=(handle, self.options.stop_grace),
                         name=f"stop-{job.id}", daemon=True).start()

    def _dispatch(self) -> None:
        running = self.store.jobs(states=[RUNNING])
        used = {job.slot for job in running}
        per_tenant = Counter(job.tenant for job in running)
        free = [slot for slot in self.options.slots if slot.name not in used]
        queued = self.store.jobs(states=[QUEUED])
        if free and queued and self._disk_full():
            return
        for job in queued:
            if not free:
                return
            if per_tenant[job.tenant] >= self.options.tenant_limit:
                continue
            slot = free.pop(0)
            attempt = job.attempt + 1
            if not self.store.move(job.id, [QUEUED], RUNNING, f"started on slot {slot.name}", slot=slot.name,
                                   attempt=attempt, exit_code=None, stop_cause=None):
                free.insert(0, slot)  # cancelled meanwhile
                continue
            per_tenant[job.tenant] += 1
            try:
                spec = JobSpec(job.id, job.tenant, attempt, tuple(job_argv(self.layout, job)),
                               self.layout.tenant(job.tenant), slot.devices, self._secrets.pop(job.id, {}),
                               user=container_user(self.options, self.store.tenant(job.tenant)),
                               settings=self.options.rules.environment(job.overrides))
                handle = self.launcher.start(spec)
            except Exception as exc:  # the engine's message may name host paths: it stays in the service's log
                log.error("job %s: its container could not be started: %s", job.id, exc)
                free.insert(0, slot)
                if not self.launcher.available():  # the engine went away meanwhile: not the job's fault
                    if self.store.move(job.id, [RUNNING], QUEUED, "the container engine stopped answering as it "
                                       "started; queued again", slot=None):
                        self.ledger.keep_place(job.id, job.queue_seq)
                    return
                cause = "its container could not be started (the service's log says why)"
                self.store.move(job.id, [RUNNING], FAILED, cause, slot=None, cause=cause)
                continue
            self.ledger.start(job, attempt, slot.name, len(slot.devices), time.time())
            self.store.update(job.id, RUNNING, container=handle)
            log.info("job %s: running in container %s on slot %s (run %d)", job.id, handle[:12], slot.name, attempt)

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
