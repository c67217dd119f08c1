"""What the host running the service decides for every launcher: where its data lives, the tenants' uids,
limits, quotas and time.

Set once by `dstrain serve`'s flags; the scheduler, the launcher and the API read them.  A tenant can change
none of them.  Each launcher has its own flags besides (docker_options.py, slurm_options.py).
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from dstrain.service.rules import Rules
from dstrain.service.units import parse_size

_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

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
    #: Jobs of one tenant running at once; the others wait their turn.
    tenant_limit: int = 1
    max_upload: int = parse_size("50G")
    #: Names this service's runs (containers, Slurm jobs), so two services on one engine or cluster keep apart.
    instance: str = "default"
    #: Seconds a cancelled job gets to stop DeepSpeech and write its records before it is killed.
    stop_grace: int = 120
    #: How often the scheduler looks at the runs when no event wakes it (and samples their usage).
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
        if not _INSTANCE.match(self.instance):
            raise ValueError(f"--instance {self.instance!r}: letters, digits, '.', '_' and '-' only (it names "
                             "containers and Slurm jobs)")
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
