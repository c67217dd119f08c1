"""What a host bills: each job's and each tenant's wall time, GPU-seconds, CPU-seconds, peak memory and disk.

Read from the ledger (ledger.py): a run's wall time is from its container's start to the moment its end was
seen; GPU-seconds are its slot's GPUs times that; CPU-seconds and peak memory are the engine's own counters
(the container's cgroup, through the engine's stats), sampled on every scheduler pass while it runs, so the
last seconds before it exits may be missed: they are lower bounds, by at most one pass (2 s) of its CPU.
"""
import time
from datetime import datetime, timezone
from typing import Iterable, Optional

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from dstrain.service import tenantfs
from dstrain.service.auth import Service, service, tenant_id
from dstrain.service.ledger import Run
from dstrain.service.options import Options
from dstrain.service.quotas import DiskMeter


class Usage(BaseModel):
    #: Containers started for it (a resume or a requeue starts another).
    runs: int
    wall_seconds: float
    gpu_seconds: float
    cpu_seconds: Optional[float]
    peak_memory_bytes: Optional[int]


class TenantUsage(Usage):
    tenant: str
    jobs: int
    #: Bytes the tenant's directory holds on disk (uploads, imports, runs), as its quota counts them.
    disk_bytes: Optional[int]
    since: Optional[str]


def of_runs(runs: Iterable[Run], at: Optional[float] = None) -> Usage:
    at = time.time() if at is None else at
    runs = list(runs)
    cpu = [run.cpu_seconds for run in runs if run.cpu_seconds is not None]
    peaks = [run.peak_memory for run in runs if run.peak_memory is not None]
    return Usage(runs=len(runs), wall_seconds=round(sum(run.seconds(at) for run in runs), 3),
                 gpu_seconds=round(sum(run.gpus * run.seconds(at) for run in runs), 3),
                 cpu_seconds=round(sum(cpu), 3) if cpu else None, peak_memory_bytes=max(peaks) if peaks else None)


def disk_in_use(meter: DiskMeter, options: Options, tenant: str) -> Optional[int]:
    """The bytes the tenant's directory holds on disk, as its quota counts them: the disk meter's figure, walked
    again when older than --disk-check-seconds; None where the directory cannot be measured."""
    try:
        found = meter.latest(tenant, options.disk_check_seconds)
    except tenantfs.NotFound:  # a tenant whose directory is gone (being removed)
        return None
    return found.used if found is not None else None


router = APIRouter(prefix="/v1/usage", tags=["usage"])


@router.get("", response_model=TenantUsage)
def tenant_usage(since: Optional[str] = Query(None, max_length=40,
                                              description="only runs still going or ended since then (ISO 8601)"),
                 tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Your usage: every run of your jobs (or those since a time), and the disk your files take."""
    start = None
    if since is not None:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise HTTPException(422, f"since={since!r} is not an ISO 8601 time, e.g. 2025-06-01T00:00:00Z") from None
        start = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    runs = svc.scheduler.ledger.of_tenant(tenant, start)
    total = of_runs(runs)
    return TenantUsage(**total.model_dump(), tenant=tenant, jobs=len({run.job for run in runs}),
                       disk_bytes=disk_in_use(svc.scheduler.disk, svc.options, tenant), since=since)
