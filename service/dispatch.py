"""Starting queued jobs (a part of the Scheduler, scheduler.py): first come first served, each tenant up to
--tenant-limit jobs at once, nothing while the service cannot write.

On a launcher with slots (Docker), a job takes a free slot and is ``running`` at once.  On a launcher with
its own queue (Slurm), every job the service's rules allow is submitted, counts against its tenant's limit
from then on, and stays ``queued`` until the launcher starts it.  Either way the run's handle and attempt
are in the store before the launcher is asked, so a service that stops in between finds the run by them and
never starts it twice.
"""
import logging
import time
from collections import Counter
from typing import List, Optional

from dstrain.service.health import cannot_write
from dstrain.service.launcher import RunSpec, RunState, Slot, run_name
from dstrain.service.layout import Layout
from dstrain.service.store import FAILED, QUEUED, RUNNING, Job
from dstrain.service.tenants import container_user

log = logging.getLogger("dstrain.service")


def job_argv(layout: Layout, job: Job) -> List[str]:
    """``dstrain run``'s arguments: the run is named after the job; its settings file is named relative to the
    data root, the run's working directory."""
    argv = ["run", "--language", job.language, "--run", job.id, "--config", layout.job_settings_argument(job.id)]
    if job.datasets:
        argv += ["--datasets", ",".join(job.datasets)]
    if job.stop_after:
        argv += ["--to", job.stop_after]
    return argv


class Dispatch:
    def _dispatch(self) -> None:
        if self.launcher.slots is None:
            self._submit()
        else:
            self._fill_slots()

    def _spec(self, job: Job, attempt: int, slot: Optional[Slot]) -> RunSpec:
        limit = self.options.time_limit
        return RunSpec(job.id, job.tenant, attempt, run_name(self.options.instance, job.id, attempt),
                       tuple(job_argv(self.layout, job)), self.layout.tenant(job.tenant),
                       container_user(self.options, self.store.tenant(job.tenant)), slot,
                       self._secrets.pop(job.id, {}), self.options.rules.environment(job.overrides),
                       None if limit is None else max(0.0, limit - self._seconds_used(job)))

    def _gpus(self, job: Job, run: Optional[RunState] = None) -> int:
        """The GPUs a run holds: as the launcher says, else its slot's."""
        if run is not None and run.gpus is not None:
            return run.gpus
        return next((len(slot.devices) for slot in self.launcher.slots or () if slot.name == job.slot), 0)

    def _disk_full(self) -> bool:
        """Whether the service cannot write its files or store now: then no job starts (health.py)."""
        problem = cannot_write(self.layout, self.ledger)
        if problem:
            log.warning("no job starts while the service %s", problem)
        return problem is not None

    def _fill_slots(self) -> None:
        running = self.store.jobs(states=[RUNNING])
        used = {job.slot for job in running}
        per_tenant = Counter(job.tenant for job in running)
        free = [slot for slot in self.launcher.slots if slot.name not in used]
        queued = self.store.jobs(states=[QUEUED])
        if free and queued and self._disk_full():
            return
        noun = self.launcher.run_noun
        for job in queued:
            if not free:
                return
            if per_tenant[job.tenant] >= self.options.tenant_limit:
                continue
            slot = free.pop(0)
            attempt = job.attempt + 1
            handle = run_name(self.options.instance, job.id, attempt)
            if not self.store.move(job.id, [QUEUED], RUNNING, f"started on slot {slot.name}", slot=slot.name,
                                   attempt=attempt, handle=handle, exit_code=None, stop_cause=None):
                free.insert(0, slot)  # cancelled meanwhile
                continue
            per_tenant[job.tenant] += 1
            try:
                self.launcher.start(self._spec(job, attempt, slot))
            except Exception as exc:  # the engine's message may name host paths: it stays in the service's log
                log.error("job %s: its %s could not be started: %s", job.id, noun, exc)
                free.insert(0, slot)
                if not self.launcher.available():  # the engine went away meanwhile: not the job's fault
                    if self.store.move(job.id, [RUNNING], QUEUED, f"the {self.launcher.engine_noun} stopped "
                                       "answering as it started; queued again", slot=None):
                        self.ledger.keep_place(job.id, job.queue_seq)
                    return
                cause = f"its {noun} could not be started (the service's log says why)"
                self.store.move(job.id, [RUNNING], FAILED, cause, slot=None, cause=cause)
                continue
            self.ledger.start(job, attempt, slot.name, len(slot.devices), time.time())
            log.info("job %s: running in %s %s on slot %s (run %d)", job.id, noun, handle, slot.name, attempt)

    def _submit(self) -> None:
        """Every queued job its tenant's limit allows, into the launcher's queue, in FIFO order."""
        queued = self.store.jobs(states=[QUEUED])
        waiting = [job for job in queued if not job.handle]
        per_tenant = Counter(job.tenant for job in self.store.jobs(states=[RUNNING]) + queued if job.handle or
                             job.state == RUNNING)
        if not waiting or self._disk_full():
            return
        for job in waiting:
            if per_tenant[job.tenant] >= self.options.tenant_limit:
                continue
            attempt = job.attempt + 1
            spec = self._spec(job, attempt, None)
            if not self.store.update(job.id, QUEUED, attempt=attempt, handle=spec.handle, exit_code=None,
                                     stop_cause=None, queue_reason=None):
                continue  # cancelled meanwhile
            per_tenant[job.tenant] += 1
            try:
                self.launcher.start(spec)
            except Exception as exc:
                log.error("job %s: could not be submitted: %s", job.id, exc)
                if not self.launcher.available():  # not the job's fault: it keeps its place
                    self.store.update(job.id, QUEUED, handle=None)
                    return
                cause = f"its {self.launcher.run_noun} could not be submitted (the service's log says why)"
                self.store.move(job.id, [QUEUED], FAILED, cause, cause=cause)
                continue
            log.info("job %s: submitted as %s %s (run %d)", job.id, self.launcher.run_noun, spec.handle, attempt)
