"""What the host running the service decides: where its data lives, the image, the slots, the limits.

Set once by `dstrain serve`'s flags; the scheduler, the launcher and the API read them.  A tenant can
change none of them.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from dstrain.service.rules import Rules

#: Every container the service starts carries these labels; the restart finds its own by them.
LABEL_JOB = "dstrain.job"
LABEL_TENANT = "dstrain.tenant"
LABEL_SERVICE = "dstrain.service"
LABEL_ATTEMPT = "dstrain.attempt"

#: Where a job's container sees its tenant's directory (the image's DSTRAIN_DATA_ROOT).
CONTAINER_DATA = "/data"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*$")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> Optional[float]:
    """'48h', '90m', '2d', '30s' or '3600' -> seconds; '0' or 'none' -> None (no limit)."""
    if str(text).strip().lower() in ("none", "0"):
        return None
    match = _DURATION.match(str(text).lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (say e.g. 48h, 90m or 2d; none for no limit)")
    number, unit = match.groups()
    return float(number) * _SECONDS[unit or "s"]


def shown_duration(seconds: float) -> str:
    """48 h, 90 min, 45 s: as a person says the time limit."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def parse_cpus(text: str) -> Union[float, str, None]:
    """'auto' (the engine's CPUs shared among the slots), 'none', or a number of CPUs."""
    word = str(text).strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else "auto"
    try:
        cpus = float(word)
    except ValueError:
        raise ValueError(f"--cpus {text!r}: give a number of CPUs, auto or none") from None
    if cpus <= 0:
        raise ValueError(f"--cpus {text!r}: give a positive number (none for no limit)")
    return cpus


def parse_size(text: str) -> int:
    """'20G', '512M', '1024' -> bytes (binary units, as docker's own flags)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (say e.g. 512M or 20G)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))


@dataclass(frozen=True)
class Slot:
    """What one job holds while it runs: some GPUs, or, without GPUs, a place among N."""

    name: str
    #: GPU device ids handed to the container; empty for a CPU slot.
    devices: Tuple[str, ...] = ()


def gpu_slots(spec: str) -> Tuple[Slot, ...]:
    """'0,1,2,3': four jobs of one GPU each; '0+1,2+3': two jobs of two GPUs each."""
    slots = []
    for group in spec.split(","):
        devices = tuple(part.strip() for part in group.split("+") if part.strip())
        if not devices:
            raise ValueError(f"--gpus {spec!r}: an empty slot")
        slots.append(Slot("gpu" + "+".join(devices), devices))
    names = [slot.name for slot in slots]
    if len(set(names)) != len(names):
        raise ValueError(f"--gpus {spec!r}: a device listed twice")
    return tuple(slots)


def cpu_slots(count: int) -> Tuple[Slot, ...]:
    if count < 1:
        raise ValueError("--slots must be at least 1")
    return tuple(Slot(f"cpu{i}") for i in range(count))


#: Where tenants' uids come from when the service runs as root and --tenant-uids does not say.
DEFAULT_TENANT_UIDS = (200000, 299999)


def default_tenant_uids() -> Optional[Tuple[int, int]]:
    """A uid per tenant needs root (to chown its directory); a service that is not root runs every job as its
    own user, the only one whose files it can read."""
    return DEFAULT_TENANT_UIDS if os.geteuid() == 0 else None


def parse_uid_range(text: str) -> Tuple[int, int]:
    """'200000-299999' -> (200000, 299999)."""
    first, sep, last = str(text).partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(f"--tenant-uids {text!r}: give a range FIRST-LAST, e.g. 200000-299999")
    return int(first), int(last)


@dataclass(frozen=True)
class Options:
    root: Path
    image: str
    slots: Tuple[Slot, ...]
    #: Jobs of one tenant running at once; the others wait their turn.
    tenant_limit: int = 1
    max_upload: int = parse_size("50G")
    #: Names this service's containers, so two services on one engine keep apart.
    instance: str = "default"
    memory: Optional[str] = "16g"
    #: CPUs per job: a number, "auto" (the engine's CPUs divided among the slots) or None (no limit).
    cpus: Union[float, str, None] = "auto"
    #: Size of each job's /tmp, a tmpfs (the rest of its root file system is read-only).
    tmp_size: str = "2g"
    pids: int = 4096
    shm_size: str = "1g"
    #: 'bridge' on a normal engine.  'host' gives jobs the host's loopback too (docs/service.md).
    network: str = "bridge"
    #: Seconds a cancelled job gets to stop DeepSpeech and write its records before it is killed.
    stop_grace: int = 120
    #: Extra labels for every container (a test's, a billing system's).
    labels: Dict[str, str] = field(default_factory=dict)
    #: How often the scheduler looks at the containers when no event wakes it (and samples their usage).
    poll_seconds: float = 2.0
    #: Each tenant's uid and gid, as its containers see them, come from this range; None: every job runs as
    #: the service's own user (a service that is not root).  docs/service.md, "Running it for strangers".
    tenant_uids: Optional[Tuple[int, int]] = field(default_factory=default_tenant_uids)
    #: With dockerd's userns-remap: a container's uid U is the host's uid userns_offset + U (/etc/subuid).
    userns_offset: int = 0
    #: Bytes on disk a tenant's directory may hold (--tenant-quota; a tenant's own quota overrides it).
    tenant_quota: Optional[int] = None
    #: Files a tenant's sources/ may hold; an upload of one more is refused.
    max_files: int = 10000
    #: How old a tenant's measured disk use may be when a running job is held to its quota.
    disk_check_seconds: float = 60.0
    #: Jobs of one tenant waiting in the queue at once; a submit past it gets 429.
    tenant_queue: int = 50
    #: Largest request body, uploads aside (they have max_upload).
    max_request: int = parse_size("1M")
    #: Seconds a job may run, counted over its runs since its tenant submitted or resumed it; None: no limit.
    time_limit: Optional[float] = 48 * 3600.0
    #: Times in a row a job stopped by the infrastructure (not by its tenant, the service or itself) is queued
    #: again to resume, before it is failed.
    max_requeues: int = 3
    #: Ceilings on a job's costly settings, and the exceptions to the egress check (rules.py).
    rules: Rules = field(default_factory=Rules)
    #: The bearer token /metrics asks for; None: /metrics is off.
    metrics_token: Optional[str] = None

    def __post_init__(self):
        if self.tenant_uids is None:
            return
        first, last = self.tenant_uids
        if os.geteuid() != 0:
            raise ValueError("--tenant-uids needs a service that runs as root (it gives each tenant's directory "
                             "to its uid); docs/service.md says what works without root")
        # Root is the service's own uid, and the one a job must never have.
        if not 0 < first <= last:
            raise ValueError(f"--tenant-uids {first}-{last}: give FIRST-LAST with 0 < FIRST <= LAST; never 0, "
                             "the service's own uid")
        if self.userns_offset < 0:
            raise ValueError("--userns-offset must be 0 or more")


def parse_labels(pairs: Sequence[str]) -> Dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key in (LABEL_JOB, LABEL_TENANT, LABEL_SERVICE, LABEL_ATTEMPT):
            raise ValueError(f"--label {pair!r}: give KEY=VALUE, not one of the service's own labels")
        labels[key] = value
    return labels
