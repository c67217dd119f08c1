"""The launcher: how a job's run is started, watched, stopped and found again, whatever runs it.

The scheduler speaks only this interface.  Launchers are found through the entry-point group
``dstrain.launchers`` (launchers.py): dstrain's own are the Docker engine of this machine (docker_launcher.py)
and a Slurm cluster (slurm_launcher.py); Kubernetes Jobs queued by Kueue would be a third (docs/service.md
says how it would map).  A launcher keeps no state of its own: everything it needs to find a job's run again
after the service restarts is in the run's name and labels (or Slurm comment), and in its own records.

Two ways to share the machines:
- **slots**: the launcher has a fixed set of places (the Docker engine's GPUs, or N CPU places); the service
  hands a free one to the next job it allows, and the job is ``running`` from then on;
- **the launcher's own queue** (``slots`` is None): the service submits every job its rules allow (the
  tenant's limit, first come first served), and the launcher's scheduler decides where and when it runs
  (Slurm).  The job stays ``queued``, with the launcher's reason, until the launcher starts it.
"""
import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

#: A run's phases, as a launcher reports them: created but not started (Docker, when the service stopped in
#: between), waiting in the launcher's own queue, running, ended.
CREATED, WAITING, ACTIVE, EXITED = "created", "waiting", "active", "exited"


def run_name(instance: str, job: str, attempt: int) -> str:
    """A run's handle: its name, known before it is started, so a service restarted in between finds it."""
    return f"dstrain-{instance}-{job}-{attempt}"


@dataclass(frozen=True)
class Slot:
    """What one job holds while it runs, on a launcher with slots: some GPUs, or, without GPUs, a place among N."""

    name: str
    #: GPU device ids of the slot; empty for a CPU slot.
    devices: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """One run of a job, as any launcher is given it."""

    job: str
    tenant: str
    attempt: int
    #: Its handle (run_name): the container's name, the Slurm job's name.
    handle: str
    #: ``dstrain`` and its arguments.  Paths in them are relative to the data root, which is the run's working
    #: directory, wherever the launcher lets the run see it (/data in a container, the tenant's directory itself
    #: on a Slurm node).
    argv: Tuple[str, ...]
    #: The tenant's directory as the service sees it: the run's data root, and nothing else of the host.
    data_dir: Path
    #: ``uid:gid`` the run's processes have: its tenant's own (tenants.py), never root.
    user: str
    #: The place the service gave it, on a launcher with slots; None where the launcher decides.
    slot: Optional[Slot] = None
    #: Secrets for this run only (MDC_API_KEY); never stored by the service.
    environment: Dict[str, str] = field(default_factory=dict)
    #: Settings the host forces on the run, as DSTRAIN_* variables (rules.py): they beat the job's own file.
    settings: Dict[str, str] = field(default_factory=dict)
    #: Seconds left of the job's time limit; the service stops it then, a launcher may add its own backstop.
    time_left: Optional[float] = None


@dataclass(frozen=True)
class RunState:
    job: str
    attempt: int
    #: The launcher's handle of the run (run_name).
    handle: str
    phase: str
    exit_code: Optional[int] = None
    #: Why the launcher's engine ended it, when it did: its memory limit, a cancel or a time limit in Slurm.
    #: Such an end is the job's failure, with this as its cause.
    killed_because: Optional[str] = None
    #: Why the infrastructure ended it (a node that failed): not the job's doing nor its tenant's, so it is
    #: queued again to resume from its checkpoint (scheduler.py, --max-requeues).
    infrastructure: Optional[str] = None
    #: While WAITING: why it waits (Slurm's reason: Resources, Priority, ...).
    waiting: str = ""
    #: Where it runs or ran (a Slurm node), and how many GPUs it was given there; None where the launcher
    #: does not say (the scheduler counts its slot's).
    node: str = ""
    gpus: Optional[int] = None
    #: Its start and end by the launcher's own clock (seconds since the epoch); None where the launcher does
    #: not say: then the scheduler's own view (when it first saw it running, and ended) counts.
    started: Optional[float] = None
    ended: Optional[float] = None


@dataclass(frozen=True)
class Usage:
    """What a run has used so far, by the engine's own count."""

    cpu_seconds: Optional[float] = None
    #: The most memory it held at once, in bytes.
    peak_memory: Optional[int] = None


class Launcher(abc.ABC):
    #: The places the service hands out, one run each; None: the launcher queues runs and decides itself.
    slots: Optional[Tuple[Slot, ...]] = None
    #: How the service's messages name one run, and the engine (causes, transitions, log lines).
    run_noun = "run"
    engine_noun = "launcher"

    def preflight(self, root: Path) -> None:
        """Refuse to serve (ValueError, saying why) when runs could not work: the service's root unseen by them."""
        return None

    @abc.abstractmethod
    def available(self) -> bool:
        """Whether runs can be started now (the engine answers)."""

    @abc.abstractmethod
    def start(self, spec: RunSpec) -> None:
        """Start the run (or queue it, without slots) under ``spec.handle``."""

    @abc.abstractmethod
    def runs(self) -> List[RunState]:
        """Every run of this service that the launcher still knows, queued, running or ended."""

    def resume_created(self, handle: str) -> None:
        """Start a run that was created but not started (the service stopped in between); only launchers whose
        runs can be CREATED have any."""
        return None

    @abc.abstractmethod
    def stop(self, handle: str, grace_seconds: int) -> None:
        """Ask the run to stop (SIGTERM: dstrain stops cleanly); kill it after the grace period.  A queued run
        is removed from the queue."""

    @abc.abstractmethod
    def console_tail(self, handle: str, lines: int) -> str:
        """The last lines the run printed, for a failure that no stage log explains."""

    def kept_output(self, handle: str) -> Optional[bytes]:
        """What the launcher itself wrote about an ended run, to be kept beside the run's stage logs (Slurm's
        output file); None where there is nothing the stage logs lack."""
        return None

    @abc.abstractmethod
    def remove(self, handle: str) -> None:
        """Forget an ended run, once its outcome is recorded."""

    def usage(self, handle: str) -> Optional[Usage]:
        """The run's usage so far (or in all, once it ended); None where the launcher cannot tell."""
        return None

    @abc.abstractmethod
    def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` whenever a run starts or ends; blocks until close().  Polling covers what it misses."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop watching.  Runs go on: the service's restart finds them again."""
