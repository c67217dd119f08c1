"""How the scheduler decides what ended a run, without an engine: an in-memory launcher behind the launcher
interface plays the engine's answers (exit codes, the out-of-memory flag, a container gone, usage), and the
store and ledger are the real ones.  tests/test_service_faults.py and test_service_walls.py do the same on
the real engine with the real training image."""
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

from dstrain.service.docker_options import cpu_slots
from dstrain.service.launcher import ACTIVE, EXITED, Launcher, RunState, Usage
from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.scheduler import Scheduler
from dstrain.service.store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Store, now


@dataclass
class _Engine(Launcher):
    """Runs start active; the test ends them with an exit code (and the OOM flag), or makes them vanish."""

    run_noun, engine_noun = "container", "container engine"  # it plays the Docker engine
    up: bool = True
    slots: tuple = cpu_slots(1)
    runs_: Dict[str, RunState] = field(default_factory=dict)
    stopped: List[str] = field(default_factory=list)
    cpu: float = 0.0

    def available(self):
        return self.up

    def start(self, spec):
        if not self.up:
            raise ConnectionError("the engine went away")
        handle = f"h-{spec.job}-{spec.attempt}"
        self.runs_[handle] = RunState(spec.job, spec.attempt, handle, ACTIVE)
        return handle

    def end(self, job_id: str, code: int, oom: bool = False) -> None:
        handle = next(h for h, run in self.runs_.items() if run.job == job_id and run.phase == ACTIVE)
        self.runs_[handle] = RunState(job_id, self.runs_[handle].attempt, handle, EXITED, code,
                                      "the memory limit (out of memory)" if oom else None)

    def vanish(self, job_id: str) -> None:
        self.runs_ = {h: run for h, run in self.runs_.items() if run.job != job_id}

    def runs(self):
        return list(self.runs_.values())

    def resume_created(self, handle):
        raise AssertionError("nothing is left created here")

    def stop(self, handle, grace_seconds):
        self.stopped.append(handle)

    def console_tail(self, handle, lines):
        return "error: it broke\n"

    def remove(self, handle):
        self.runs_.pop(handle, None)

    def usage(self, handle) -> Optional[Usage]:
        self.cpu += 1.5
        return Usage(self.cpu, 1 << 30)

    def watch(self, on_change):
        pass

    def close(self):
        pass


def setup(tmp_path, **options):
    store = Store(tmp_path / "service.db")
    store.add_tenant("t-a", "a", "h")
    store.give_uid("t-a", 200000, 200000)  # as `tenant add` does: its containers run as it
    engine = _Engine()
    scheduler = Scheduler(store, engine, Layout(tmp_path),
                          Options(root=tmp_path, **options))
    return store, engine, scheduler


def submit(store: Store) -> str:
    return store.submit("t-a", "fr", None, {}, None, None, "", lambda j: None)[0].id


def test_a_sigterm_or_sigkill_from_outside_queues_the_job_again_in_its_place(tmp_path):
    store, engine, scheduler = setup(tmp_path, max_requeues=2)
    first, second = submit(store), submit(store)
    scheduler.step()
    engine.end(first, 143)
    scheduler.step()  # requeued, back at the head of the queue: it starts again before the second job
    job = store.job(first)
    assert job.state == RUNNING and job.attempt == 2 and store.job(second).state == QUEUED
    assert "SIGTERM the service did not send (exit code 143)" in store.transitions(first)[2]["cause"]
    engine.end(first, 137)
    scheduler.step()
    assert store.job(first).attempt == 3 and "requeue 2 of at most 2" in store.transitions(first)[4]["cause"]
    engine.end(first, 143)  # a third time in a row: past --max-requeues 2
    scheduler.step()
    failed = store.job(first)
    assert failed.state == FAILED and failed.cause.startswith("stopped by the infrastructure 3 times in a row")
    assert [run.outcome for run in scheduler.ledger.of_job(first)] == ["requeued", "requeued", FAILED]

    assert store.move(first, [FAILED], QUEUED, "resumed by the tenant")  # a resume starts the count again
    engine.end(second, 0)
    scheduler.step()
    scheduler.step()
    engine.end(first, 143)
    scheduler.step()
    assert store.job(first).state in (QUEUED, RUNNING) and "requeue 1 of" in store.transitions(first)[-2]["cause"]


@pytest.mark.parametrize("code,oom,state", [(1, False, FAILED), (137, True, FAILED), (0, False, SUCCEEDED)])
def test_the_jobs_own_end_is_not_requeued(tmp_path, code, oom, state):
    store, engine, scheduler = setup(tmp_path)
    job_id = submit(store)
    scheduler.step()
    engine.end(job_id, code, oom)
    scheduler.step()
    assert store.job(job_id).state == state and store.job(job_id).attempt == 1
    if oom:
        assert store.job(job_id).cause == "the memory limit (out of memory)"


def test_a_cancel_is_the_tenants_and_a_vanished_container_the_infrastructures(tmp_path):
    store, engine, scheduler = setup(tmp_path)
    cancelled, gone = submit(store), submit(store)
    scheduler.step()
    store.update(cancelled, RUNNING, cancel_requested=now())
    scheduler.step()
    assert engine.stopped == [f"h-{cancelled}-1"]
    engine.end(cancelled, 143)
    scheduler.step()
    assert store.job(cancelled).state == CANCELLED
    assert store.job(gone).state == RUNNING
    engine.vanish(gone)
    scheduler.step()
    assert "its container is gone" in store.transitions(gone)[2]["cause"] and store.job(gone).attempt == 2


def test_the_time_limit_stops_a_run_and_fails_it_with_its_cause(tmp_path, monkeypatch):
    store, engine, scheduler = setup(tmp_path, time_limit=3600.0, max_requeues=3)
    job_id = submit(store)
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    scheduler.step()
    clock[0] += 1800
    scheduler.step()  # a pass while it runs: its usage is sampled
    engine.end(job_id, 143)  # the engine restarted half-way: the count goes on over the requeue
    scheduler.step()
    assert store.job(job_id).attempt == 2 and not engine.stopped
    clock[0] += 1799
    scheduler.step()
    assert not engine.stopped
    clock[0] += 2
    scheduler.step()
    assert engine.stopped == [f"h-{job_id}-2"]
    scheduler.step()  # asked once: a pass while it stops does not ask again
    assert engine.stopped == [f"h-{job_id}-2"]
    engine.end(job_id, 143)  # dstrain's exit after the service's SIGTERM: the service's stop, not a requeue
    scheduler.step()
    job = store.job(job_id)
    assert job.state == FAILED
    assert job.cause == "stopped: the time limit of 1 h was reached; its checkpoint is kept, resume continues it"
    usage = [(run.cpu_seconds, run.peak_memory) for run in scheduler.ledger.of_job(job_id)]
    assert all(cpu and cpu > 0 and peak == 1 << 30 for cpu, peak in usage), usage


def test_an_ended_runs_zero_read_never_lowers_its_usage(tmp_path, monkeypatch):
    """The engine reads an exited container's cgroup as 0 s of CPU: the run keeps the figures it reached."""
    store, engine, scheduler = setup(tmp_path)
    job_id = submit(store)
    scheduler.step()  # it starts
    scheduler.step()
    scheduler.step()  # two samples while it runs, 1.5 and 3.0 s of CPU: only the first is written yet
    engine.end(job_id, 0)
    monkeypatch.setattr(engine, "usage", lambda handle: Usage(0.0, 1 << 20))
    scheduler.step()
    (run,) = scheduler.ledger.of_job(job_id)
    assert (run.cpu_seconds, run.peak_memory) == (3.0, 1 << 30)


def test_a_start_meeting_an_engine_going_away_is_queued_again_not_failed(tmp_path):
    store, engine, scheduler = setup(tmp_path)
    job_id = submit(store)
    engine.up = False  # it answered when the pass began (step checks), and is gone by the start
    scheduler._dispatch()
    assert store.job(job_id).state == QUEUED
    assert store.transitions(job_id)[-1]["cause"].startswith("the container engine stopped answering")
    engine.up = True
    scheduler.step()
    assert store.job(job_id).state == RUNNING


def test_a_killed_runs_record_is_not_taken_for_a_live_one_of_another_container(tmp_path):
    """A requeued job's new container may give its own dstrain processes the numbers of the killed one's, under
    the same host name (--network host): the record's process identity (pid namespace, start time) tells them
    apart, or the resumed run would refuse to train ("this run is already training")."""
    import os
    import socket
    import subprocess
    import sys

    from dstrain.pipeline.deepspeech.progress import Progress

    train = type("Train", (), {"train_batch_size": 2, "dev_batch_size": 2, "learning_rate": 1e-4})()
    progress = Progress.new(tmp_path / "progress.json", tmp_path / "metrics.json", {}, train)
    # A live process whose command line says dstrain, as the new container's own processes do.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "dstrain"])
    try:
        time.sleep(0.5)
        progress.begin(["dstrain"], "init", tmp_path, 3)  # recorded by this process, as its own
        record = progress.data["invocations"][-1]
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["process"]
        record["pid"] = other.pid  # the killed one's number, now another process's
        assert not progress.running_elsewhere()
        del record["process"]  # a record from before: the number and the name alone take it for the trainer
        assert progress.running_elsewhere()
    finally:
        other.kill()
        other.wait()
