"""The scheduler with a launcher that queues runs itself, as Slurm does (no slots): what the service decides
(the tenant's limit, first come first served) and what it takes from the launcher (when a run starts, why it
waits, how it ended), with an in-memory launcher playing Slurm's answers and the real store and ledger.
tests/test_service_slurm.py runs the same through the API on the real cluster."""
import time
from dataclasses import dataclass, field
from typing import Dict, List

from dstrain.service.launcher import ACTIVE, EXITED, WAITING, Launcher, RunState
from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.scheduler import Scheduler
from dstrain.service.store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Store


@dataclass
class _Queue(Launcher):
    """Runs submitted wait (Resources) until the test starts or ends them."""

    run_noun, engine_noun = "Slurm job", "Slurm cluster"
    runs_: Dict[str, RunState] = field(default_factory=dict)
    submitted: List[str] = field(default_factory=list)
    stopped: List[str] = field(default_factory=list)

    def available(self):
        return True

    def start(self, spec):
        self.submitted.append(spec.handle)
        self.runs_[spec.handle] = RunState(spec.job, spec.attempt, spec.handle, WAITING, waiting="Priority")

    def set(self, job_id: str, phase: str, **fields) -> None:
        handle = next(h for h, run in self.runs_.items() if run.job == job_id and run.phase != EXITED)
        old = self.runs_[handle]
        self.runs_[handle] = RunState(job_id, old.attempt, handle, phase, **fields)

    def runs(self):
        return list(self.runs_.values())

    def stop(self, handle, grace_seconds):
        self.stopped.append(handle)

    def console_tail(self, handle, lines):
        return ""

    def remove(self, handle):
        self.runs_.pop(handle, None)

    def watch(self, on_change):
        pass

    def close(self):
        pass


def setup(tmp_path, **options):
    store = Store(tmp_path / "service.db")
    for tenant in ("t-a", "t-b"):
        store.add_tenant(tenant, tenant, "h")
        store.give_uid(tenant, 200000, 200009)
    queue = _Queue()
    return store, queue, Scheduler(store, queue, Layout(tmp_path), Options(root=tmp_path, **options))


def submit(store: Store, tenant: str) -> str:
    return store.submit(tenant, "fr", None, {}, None, None, "", lambda j: None)[0].id


def test_jobs_wait_in_the_launchers_queue_with_its_reason_and_run_when_it_starts_them(tmp_path):
    store, queue, scheduler = setup(tmp_path, tenant_limit=2)
    a1, a2, a3, b1 = submit(store, "t-a"), submit(store, "t-a"), submit(store, "t-a"), submit(store, "t-b")
    scheduler.step()
    # Every job the tenants' limits allow is submitted, in order; a's third waits for a's limit, in the service.
    assert queue.submitted == [f"dstrain-default-{job}-1" for job in (a1, a2, b1)]
    assert store.job(a3).handle is None and all(store.job(job).handle for job in (a1, a2, b1))
    scheduler.step()
    assert store.job(a1).state == QUEUED and store.job(a1).queue_reason == "Priority"
    queue.set(a2, WAITING, waiting="Resources")
    now = time.time()
    queue.set(a1, ACTIVE, node="n1", gpus=1, started=now)
    scheduler.step()
    assert store.job(a1).state == RUNNING and store.job(a2).queue_reason == "Resources"
    assert store.transitions(a1)[-1]["cause"] == "started by the Slurm cluster on n1"
    assert scheduler.ledger.run(a1, 1).started == now and scheduler.ledger.run(a1, 1).gpus == 1
    assert store.job(a3).handle is None  # a1 running and a2 in Slurm's queue: both count against a's limit
    # a2 started and ended between two passes: both moves are recorded, with the launcher's clock.
    queue.set(a2, EXITED, exit_code=0, node="n2", gpus=1, started=now + 10, ended=now + 70)
    scheduler.step()
    assert [t["to_state"] for t in store.transitions(a2)] == [QUEUED, RUNNING, SUCCEEDED]
    assert scheduler.ledger.run(a2, 1).seconds(0) == 60.0
    assert store.job(a3).handle == f"dstrain-default-{a3}-1"  # its turn, now that a2 is done


def test_a_cancel_while_queued_takes_the_run_out_of_the_launchers_queue(tmp_path):
    store, queue, scheduler = setup(tmp_path)
    job = submit(store, "t-a")
    scheduler.step()
    assert store.move(job, [QUEUED], CANCELLED, "cancelled by the tenant while queued")  # as the API does
    scheduler.step()
    assert stopped(queue) == [f"dstrain-default-{job}-1"]
    queue.set(job, EXITED, killed_because="Slurm cancelled its job")
    scheduler.step()
    assert queue.runs_ == {} and store.job(job).state == CANCELLED


def stopped(queue: _Queue) -> List[str]:
    """The runs stopped: a stop runs in a thread of its own, as a stop with a grace period must."""
    deadline = time.monotonic() + 5
    while not queue.stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    return queue.stopped


def test_a_run_lost_before_it_reached_the_queue_is_submitted_again_and_one_that_ended_unstarted_fails(tmp_path):
    store, queue, scheduler = setup(tmp_path)
    lost, dropped = submit(store, "t-a"), submit(store, "t-b")
    scheduler.step()
    queue.runs_.pop(f"dstrain-default-{lost}-1")  # the service stopped between marking it and sbatch
    queue.set(dropped, EXITED, killed_because="Slurm cancelled its job: scancel, by someone other than the service")
    scheduler.step()
    assert queue.submitted[-1] == f"dstrain-default-{lost}-2" and store.job(lost).attempt == 2
    failed = store.job(dropped)
    assert failed.state == FAILED and failed.cause.startswith("Slurm cancelled its job")
    assert [t["to_state"] for t in store.transitions(dropped)] == [QUEUED, FAILED]


def test_a_node_failure_queues_the_job_again_as_a_new_run(tmp_path):
    store, queue, scheduler = setup(tmp_path, max_requeues=1)
    job = submit(store, "t-a")
    scheduler.step()
    now = time.time()
    queue.set(job, ACTIVE, node="n1", started=now)
    scheduler.step()
    queue.set(job, EXITED, infrastructure="its Slurm node failed (NODE_FAIL)", node="n1", started=now, ended=now + 4)
    scheduler.step()  # queued again, and submitted again as run 2
    assert "its Slurm node failed (NODE_FAIL)" in store.transitions(job)[2]["cause"]
    assert store.job(job).state == QUEUED and queue.submitted[-1] == f"dstrain-default-{job}-2"
    queue.set(job, ACTIVE, node="n2", started=now + 5)
    scheduler.step()
    queue.set(job, EXITED, infrastructure="its Slurm node failed (NODE_FAIL)", node="n2", started=now + 5,
              ended=now + 8)
    scheduler.step()  # past --max-requeues 1
    assert store.job(job).state == FAILED and "stopped by the infrastructure 2 times" in store.job(job).cause
