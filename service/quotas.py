"""A tenant's disk in use, and the quota it is held to.

Disk in use is what the tenant's directory holds on disk: every file's allocated blocks (``st_blocks``, so
a sparse file counts what it really takes), a file with several hard links once, symlinks as themselves
and never followed, measured by a walk beneath the directory's descriptor (tenantfs.py).  A walk of a
big tree is not free (bench/tenant_disk.py measures it), so a figure is kept for a while: uploads and the
scheduler take one no older than ``--disk-check-seconds``, and the scheduler re-measures the tenants of
running jobs that often.
"""
import threading
import time
from typing import Dict, NamedTuple, Optional

from dstrain.service import tenantfs
from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.store import Tenant

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human(size: float) -> str:
    """1.5 * 2**30 -> '1.5 GiB'; whole numbers without a decimal ('50 GiB')."""
    unit = 0
    while abs(size) >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    text = f"{size:.1f}".rstrip("0").rstrip(".")
    return f"{text} {_UNITS[unit]}"


def disk_in_use(layout: Layout, tenant_id: str) -> int:
    """Bytes on disk in the tenant's directory, measured now (the figure a usage report shows)."""
    with tenantfs.Tree(layout.tenant(tenant_id)) as tree:
        return tree.usage()


def quota_of(options: Options, tenant: Tenant) -> Optional[int]:
    """The tenant's own quota, else the host's; None: no quota."""
    return tenant.quota if tenant.quota is not None else options.tenant_quota


def exceeded(quota: int, used: int) -> str:
    return f"disk quota of {human(quota)} exceeded: {human(used)} in use"


class Measure(NamedTuple):
    at: float
    #: Bytes in use, or None when the directory could not be measured (``problem`` says why).
    used: Optional[int]
    problem: Optional[str] = None


class DiskMeter:
    """Each tenant's disk in use, measured by a walk and kept ``max_age`` seconds, plus what uploads under way
    have written so far (two uploads at once share the room left, rather than each seeing all of it)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self._lock = threading.Lock()
        self._measured: Dict[str, Measure] = {}
        self._uploading: Dict[str, int] = {}

    def measure(self, tenant_id: str) -> Measure:
        try:
            found = Measure(time.monotonic(), disk_in_use(self.layout, tenant_id))
        except tenantfs.Refused as exc:  # nested too deep to walk: not a tree a job of ours makes
            found = Measure(time.monotonic(), None, f"{exc}; the service cannot measure its disk use")
        with self._lock:
            self._measured[tenant_id] = found
        return found

    def latest(self, tenant_id: str, max_age: Optional[float]) -> Optional[Measure]:
        """The last measure if no older than ``max_age`` (any age for None), else a new one."""
        with self._lock:
            found = self._measured.get(tenant_id)
        if found is not None and (max_age is None or time.monotonic() - found.at <= max_age):
            return found
        return self.measure(tenant_id) if max_age is not None else None

    def forget(self, tenant_id: str) -> None:
        with self._lock:
            self._measured.pop(tenant_id, None)

    def uploading(self, tenant_id: str, size: int) -> None:
        """Count ``size`` more bytes (less, when negative) as written by the tenant's uploads under way."""
        with self._lock:
            self._uploading[tenant_id] = self._uploading.get(tenant_id, 0) + size
            if not self._uploading[tenant_id]:
                del self._uploading[tenant_id]

    def over(self, tenant_id: str, quota: Optional[int], max_age: Optional[float], more: int = 0) -> Optional[str]:
        """Why the tenant may not use ``more`` bytes besides what it holds and is uploading, or None.

        With ``max_age`` None only a figure already measured is used (the scheduler's pass walks nothing).
        """
        if quota is None:
            return None
        found = self.latest(tenant_id, max_age)
        if found is None:
            return None
        if found.used is None:
            return found.problem
        with self._lock:
            used = found.used + self._uploading.get(tenant_id, 0) + more
        return exceeded(quota, used) if used > quota else None
