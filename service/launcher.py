"""The launcher: how a job's run is started, watched, stopped and found again, whatever runs it.

The scheduler speaks only this interface.  The Docker engine is the first launcher (docker_launcher.py);
Kubernetes Jobs queued by Kueue would be a second one (docs/service.md says how it would map).  A
launcher keeps no state of its own: everything it needs to find a job's run again after the service
restarts is in the run's labels.
"""
import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

#: A run's phases, as a launcher reports them.
CREATED, ACTIVE, EXITED = "created", "active", "exited"


@dataclass(frozen=True)
class JobSpec:
    """One run of a job: the job's argv for the image's `dstrain`, its tenant's directory, its slot."""

    job: str
    tenant: str
    attempt: int
    argv: Tuple[str, ...]
    #: The tenant's directory on the host, the run's /data and nothing else of the host.
    data_dir: Path
    #: GPU device ids of the job's slot; empty for a CPU slot.
    devices: Tuple[str, ...] = ()
    #: Secrets for this run only (MDC_API_KEY); never stored by the service.
    environment: Dict[str, str] = field(default_factory=dict)
    #: ``uid:gid`` the run's processes have: its tenant's own (tenants.py).
    user: Optional[str] = None
    #: Settings the host forces on the run, as DSTRAIN_* variables (rules.py): they beat the job's own file.
    settings: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunState:
    job: str
    attempt: int
    #: The launcher's own id for the run (a container id).
    handle: str
    phase: str
    exit_code: Optional[int] = None
    #: Why the engine ended it, when the engine knows (the memory limit).
    killed_because: Optional[str] = None


@dataclass(frozen=True)
class Usage:
    """What a run has used so far, by the engine's own count."""

    cpu_seconds: Optional[float] = None
    #: The most memory it held at once, in bytes.
    peak_memory: Optional[int] = None


class Launcher(abc.ABC):
    @abc.abstractmethod
    def available(self) -> bool:
        """Whether runs can be started now (the engine answers)."""

    @abc.abstractmethod
    def start(self, spec: JobSpec) -> str:
        """Start the run; return its handle."""

    @abc.abstractmethod
    def runs(self) -> List[RunState]:
        """Every run of this service that still exists, running or ended, found by its labels."""

    @abc.abstractmethod
    def resume_created(self, handle: str) -> None:
        """Start a run that was created but not started (the service stopped in between)."""

    @abc.abstractmethod
    def stop(self, handle: str, grace_seconds: int) -> None:
        """Ask the run to stop (SIGTERM: dstrain stops cleanly); kill it after the grace period."""

    @abc.abstractmethod
    def console_tail(self, handle: str, lines: int) -> str:
        """The last lines the run printed, for a failure that no stage log explains."""

    @abc.abstractmethod
    def remove(self, handle: str) -> None:
        """Forget an ended run, once its outcome is recorded."""

    def usage(self, handle: str) -> Optional[Usage]:
        """The run's usage so far, while it runs; None where the launcher cannot tell."""
        return None

    @abc.abstractmethod
    def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` whenever a run ends; blocks until close().  Polling covers what it misses."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop watching.  Runs go on: the service's restart finds them again."""
