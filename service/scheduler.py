"""The scheduler: lets queued jobs run, first come first served, and records how their runs end.

One pass at a time, each from what is true now (the store and the launcher's runs), never from memory, so
the pass after a restart is the same as any other:
- a job submitted to the launcher's own queue (Slurm) shows the launcher's reason while it waits there, and
  becomes running when the launcher starts it;
- a running job whose run has ended is recorded as succeeded, failed or cancelled; one the infrastructure
  stopped (a SIGTERM or SIGKILL the service did not send: the engine restarting; a Slurm node that failed) is
  queued again in its place, to resume from its checkpoint, up to --max-requeues times in a row;
- a running job whose run still runs is watched again (re-attached), its usage sampled, and stopped when it
  passes its time limit (watch.py);
- a running job with no run at all never got one (the service stopped in between): it is queued again;
- then queued jobs are started, in FIFO order, skipping a tenant already at its limit: on a launcher with
  slots, each in a free slot; without slots, each is submitted to the launcher's queue (dispatch.py).
A pass runs when something happens (a submit, a cancel, the launcher's news that a run started or ended) and
every few seconds besides.
"""
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Dict, List, Optional

from dstrain.service import runs, tenantfs
from dstrain.service.dispatch import Dispatch
from dstrain.service.health import disk_full
from dstrain.service.launcher import ACTIVE, CREATED, EXITED, WAITING, Launcher, RunState
from dstrain.service.layout import Layout
from dstrain.service.ledger import REQUEUED, Ledger
from dstrain.service.options import Options
from dstrain.service.quotas import DiskMeter
from dstrain.service.store import CANCELLED, FAILED, FINAL, QUEUED, RUNNING, SUCCEEDED, Job, Store
from dstrain.service.tenants import owner
from dstrain.service.watch import Watch

log = logging.getLogger("dstrain.service")

#: Exit codes of a run whose process was stopped by a signal (SIGTERM: dstrain exits 143 itself).
_SIGNALLED = {143: "SIGTERM", 137: "SIGKILL"}
#: The most of what the launcher wrote about a run that is kept beside its stage logs: its end says why.
KEPT_OUTPUT = 1 << 20


def stopped_from_outside(run: RunState, launcher: Launcher) -> Optional[str]:
    """Why a run looks stopped by the infrastructure rather than by its own failure: what the launcher says
    (a node that failed), or a SIGTERM or SIGKILL of the engine or the host (the service's own stops are
    recorded before it asks, and a cancel is the tenant's), not the memory limit's kill."""
    if run.infrastructure:
        return run.infrastructure
    signal = _SIGNALLED.get(run.exit_code)
    if signal is None or run.killed_because:
        return None
    return (f"its {launcher.run_noun} was stopped by a {signal} the service did not send (exit code {run.exit_code}): "
            f"the {launcher.engine_noun} or the host restarting, or someone stopping it by hand")


class Scheduler(Dispatch, Watch):
    def __init__(self, store: Store, launcher: Launcher, layout: Layout, options: Options):
        self.store = store
        self.launcher = launcher
        self.layout = layout
        self.options = options
        self.ledger = Ledger(store)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._pass = threading.Lock()
        #: Jobs whose stop this process has asked for (and runs of ended jobs, by handle); after a restart the
        #: next pass asks again.
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
        for target, name in ((self._loop, "scheduler"), (self._watch, "launcher-events"),
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
                log.warning("the %s does not answer; jobs wait", self.launcher.engine_noun)
                return
            self._hold_to_quotas()
            self._reconcile(self.launcher.runs())
            self._dispatch()

    def _reconcile(self, found: List[RunState]) -> None:
        by_job = defaultdict(list)
        for run in found:
            by_job[run.job].append(run)

        def current(job: Job) -> Optional[RunState]:
            return next((run for run in by_job.get(job.id, []) if run.attempt == job.attempt), None)

        for job in self.store.jobs(states=[QUEUED]):
            if job.handle:  # submitted to the launcher's own queue
                self._follow_submitted(job, current(job))
        running = {job.id: job for job in self.store.jobs(states=[RUNNING])}
        for job in running.values():
            run = current(job)
            if run is None and job.handle and self.ledger.run(job.id, job.attempt):
                self._requeue(job, None, f"its {self.launcher.run_noun} is gone, removed by something other than "
                                         "the service")
            elif run is None:
                log.warning("job %s: no %s for run %d; queued again", job.id, self.launcher.run_noun, job.attempt)
                self.store.move(job.id, [RUNNING], QUEUED, f"no {self.launcher.run_noun} was found for its run; "
                                "queued again", slot=None)
            elif run.phase == CREATED:
                log.info("job %s: starting its %s, created before the service stopped", job.id,
                         self.launcher.run_noun)
                self.launcher.resume_created(run.handle)
            elif run.phase in (ACTIVE, WAITING):
                self._watch_run(job, run)
            else:
                self._finish(job, run)
        waiting = {job.id: job for job in self.store.jobs(states=[QUEUED]) if job.handle}
        for run in found:  # runs already recorded (the service stopped before removing them), or not wanted
            job = running.get(run.job) or waiting.get(run.job)
            if job is None or job.attempt != run.attempt:
                self._leftover(run)

    def _follow_submitted(self, job: Job, run: Optional[RunState]) -> None:
        """A job in the launcher's own queue: its reason while it waits there; running once it starts."""
        if run is None:
            # Marked before it was submitted: the service stopped in between, or the launcher lost it unstarted.
            log.warning("job %s: its run %d is not in the %s's queue; submitted again", job.id, job.attempt,
                        self.launcher.engine_noun)
            self.store.update(job.id, QUEUED, handle=None, queue_reason=None)
            return
        if run.phase == WAITING:
            if (run.waiting or None) != job.queue_reason:
                self.store.update(job.id, QUEUED, queue_reason=run.waiting or None)
            return
        if run.phase == EXITED and run.started is None:  # ended before it started: removed from the queue
            self._end_unstarted(job, run)
            return
        where = f" on {run.node}" if run.node else ""
        if self.store.move(job.id, [QUEUED], RUNNING, f"started by the {self.launcher.engine_noun}{where}",
                           slot=run.node or None, queue_reason=None):
            self.ledger.start(job, job.attempt, run.node, self._gpus(job, run), run.started or time.time())
            log.info("job %s: running%s (run %d)", job.id, where, job.attempt)

    def _end_unstarted(self, job: Job, run: RunState) -> None:
        """Removed from the launcher's queue by someone else (a scancel): failed, saying so; its tenant may resume
        it.  Nothing of it ran, so nothing is billed."""
        cause = run.killed_because or run.infrastructure or f"its {self.launcher.run_noun} ended before it started"
        if self.store.move(job.id, [QUEUED], FAILED, cause, exit_code=run.exit_code, cause=cause, queue_reason=None):
            log.info("job %s: failed before it started: %s", job.id, cause)
        self._forget(job.id, run.handle)

    def _leftover(self, run: RunState) -> None:
        """A run no waiting or running job claims: of an ended one (recorded, not yet removed; or cancelled while
        it was being submitted: then stopped, and billed), of an older attempt, or of a job unknown here."""
        job = self.store.job(run.job)
        mine = job is not None and job.attempt == run.attempt and job.state in FINAL
        if run.phase == EXITED:
            if mine and self.ledger.run(job.id, job.attempt) is not None:
                self.ledger.end(job.id, job.attempt, job.state, run.ended or time.time())
            if mine:
                self._keep_output(job, run)
            self.launcher.remove(run.handle)
            self._stopping.discard(run.handle)
        elif run.phase == CREATED:  # never started: nothing to stop
            self.launcher.remove(run.handle)
        elif mine or (job is None and run.phase == WAITING):
            if run.phase == ACTIVE and job is not None:
                self.ledger.start(job, job.attempt, run.node, self._gpus(job, run), run.started or time.time())
            if run.handle not in self._stopping:
                log.info("%s %s runs for job %s, which is %s; stopping it", self.launcher.run_noun, run.handle,
                         run.job, job.state if job else "unknown")
                self._stop_run(run.handle, run.handle)
        elif run.phase == ACTIVE:
            log.warning("%s %s (job %s) runs but its job does not; left alone", self.launcher.run_noun, run.handle,
                        run.job)

    def _finish(self, job: Job, run: RunState) -> None:
        outside = stopped_from_outside(run, self.launcher)
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
        self._sample(job, run)  # a launcher that counts only at the end (Slurm) has its figures now
        self._flush_usage(job.id, force=True)
        self.ledger.end(job.id, job.attempt, state, run.ended or time.time())
        if self.store.move(job.id, [RUNNING], state, cause, exit_code=run.exit_code, slot=None,
                           cause=None if state == SUCCEEDED else cause):
            log.info("job %s: %s (exit code %s)", job.id, state, run.exit_code)
        self._keep_output(job, run)
        self._forget(job.id, run.handle)

    def _forget(self, job_id: str, handle: Optional[str]) -> None:
        if handle is not None:
            self.launcher.remove(handle)
            self._stopping.discard(handle)
        self._stopping.discard(job_id)
        self._samples.pop(job_id, None)

    def _failure(self, job: Job, run: RunState) -> str:
        """The engine's reason and the stage log's last error; else the error dstrain printed; else the code."""
        found = [cause for cause in (run.killed_because, runs.failure_cause(self.layout, job)) if cause]
        if found:
            return "; ".join(found)
        errors = [line for line in self.launcher.console_tail(run.handle, 40).splitlines()
                  if line.startswith("error:")]
        return errors[-1][len("error:"):].strip() if errors else \
            f"its {self.launcher.run_noun} exited with code {run.exit_code}"

    def _keep_output(self, job: Job, run: RunState) -> None:
        """What the launcher wrote about the run (Slurm's output file), its end, beside the run's stage logs in the
        tenant's directory, written there as everything of the service is (tenantfs): never through a link."""
        try:
            data = self.launcher.kept_output(run.handle)
            if data is None:
                return
            tenant = self.store.tenant(job.tenant)
            path = self.layout.relative(job.tenant, self.layout.launcher_log(job.tenant, job.id, job.language,
                                                                              run.attempt))
            directory, _, name = path.rpartition("/")
            with tenantfs.Tree(self.layout.tenant(job.tenant)) as tree:
                fd = tree.make_dirs(directory, owner(self.options, tenant) if tenant else None)
                try:
                    with tenantfs.NewFile(fd, name, owner(self.options, tenant) if tenant else None,
                                          prefix=".launcher-") as kept:
                        kept.write(data[-KEPT_OUTPUT:])
                        kept.publish()
                finally:
                    os.close(fd)
        except (OSError, tenantfs.NotFound, tenantfs.Refused) as exc:  # the job's end is recorded all the same
            log.warning("job %s: the %s's output of run %d not kept: %s", job.id, self.launcher.engine_noun,
                        run.attempt, exc)

    def _requeue(self, job: Job, run: Optional[RunState], why: str) -> None:
        """A job the infrastructure stopped: queued again in its place to resume, or failed past --max-requeues."""
        done = len(self.ledger.requeued_before(job.id, job.attempt)) + 1
        limit = self.options.max_requeues
        self._flush_usage(job.id, force=True)
        exit_code = run.exit_code if run else None
        ended = (run.ended if run else None) or time.time()
        if done > limit:
            cause = (f"stopped by the infrastructure {done} times in a row, the last time because {why}; not queued "
                     f"again (the service's limit is {limit}). Its checkpoint is kept: resume continues it")
            self.ledger.end(job.id, job.attempt, FAILED, ended)
            if self.store.move(job.id, [RUNNING], FAILED, cause, exit_code=exit_code, slot=None, cause=cause):
                log.warning("job %s: failed, stopped by the infrastructure %d times", job.id, done)
        else:
            self.ledger.end(job.id, job.attempt, REQUEUED, ended)
            reason = (f"stopped by the infrastructure: {why}; queued again to resume from its checkpoint "
                      f"(requeue {done} of at most {limit})")
            if self.store.move(job.id, [RUNNING], QUEUED, reason, exit_code=exit_code, slot=None):
                self.ledger.keep_place(job.id, job.queue_seq)
                log.warning("job %s: %s", job.id, reason)
        if run is not None:
            self._keep_output(job, run)
        self._forget(job.id, run.handle if run else None)
