"""The scheduler: hands out slots to queued jobs, first come first served, and records how their runs end.

One pass at a time, each from what is true now (the store and the launcher's labelled runs), never from
memory, so the pass after a restart is the same as any other:
- a running job whose run has ended is recorded as succeeded, failed or cancelled, and its slot freed;
- a running job whose run still runs is simply watched again (re-attached);
- a running job with no run at all never got one (the service stopped in between): it is queued again;
- then queued jobs take the free slots in FIFO order, skipping a tenant already at its limit.
A pass runs when something happens (a submit, a cancel, the engine's event that a container died) and
every few seconds besides.
"""
import logging
import threading
from collections import Counter, defaultdict
from typing import Dict, List, Optional

from dstrain.service import runs
from dstrain.service.launcher import ACTIVE, CREATED, JobSpec, Launcher, RunState
from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.quotas import DiskMeter, quota_of
from dstrain.service.store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, Store
from dstrain.service.tenants import container_user

log = logging.getLogger("dstrain.service")


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
            except Exception:  # a pass must not end the loop: the engine may be restarting
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
            if not current:
                log.warning("job %s: no container for run %d; queued again", job.id, job.attempt)
                self.store.move(job.id, [RUNNING], QUEUED, "no container was found for its run; queued again",
                                slot=None, container=None)
            elif current[0].phase == CREATED:
                log.info("job %s: starting its container, created before the service stopped", job.id)
                self.launcher.resume_created(current[0].handle)
            elif current[0].phase == ACTIVE:
                if (job.cancel_requested or job.stop_cause) and job.id not in self._stopping:
                    self._stop(job, current[0].handle)
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
        if job.cancel_requested:
            state, cause = CANCELLED, job.stop_cause or "cancelled by the tenant"
        elif job.stop_cause:  # the service stopped it, and said why
            state, cause = FAILED, job.stop_cause
        elif run.exit_code == 0:
            state, cause = SUCCEEDED, "finished"
        else:
            state, cause = FAILED, self._failure(job, run)
        if self.store.move(job.id, [RUNNING], state, cause, exit_code=run.exit_code, slot=None,
                           cause=None if state == SUCCEEDED else cause):
            log.info("job %s: %s (exit code %s)", job.id, state, run.exit_code)
        self.launcher.remove(run.handle)
        self._stopping.discard(job.id)

    def _failure(self, job: Job, run: RunState) -> str:
        """The stage log's last error; else the engine's reason; else the error dstrain printed; else the code."""
        cause = runs.failure_cause(self.layout, job) or run.killed_because
        if cause:
            return cause
        errors = [line for line in self.launcher.console_tail(run.handle, 40).splitlines()
                  if line.startswith("error:")]
        return errors[-1][len("error:"):].strip() if errors else f"its container exited with code {run.exit_code}"

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
        for job in self.store.jobs(states=[QUEUED]):
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
                               user=container_user(self.options, self.store.tenant(job.tenant)))
                handle = self.launcher.start(spec)
            except Exception as exc:  # the engine's message may name host paths: it stays in the service's log
                log.error("job %s: its container could not be started: %s", job.id, exc)
                cause = "its container could not be started (the service's log says why)"
                self.store.move(job.id, [RUNNING], FAILED, cause, slot=None, cause=cause)
                free.insert(0, slot)
                continue
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
