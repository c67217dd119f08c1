"""Prometheus metrics, read from the store at each scrape: jobs per state, slots configured and in use, and each
tenant's jobs and usage.

Counted at scrape time rather than kept in counters, so they survive a restart and never drift from the
store.  A tenant is labelled by its opaque id, never its name.  /metrics has its own token (api.py): its
figures are the host's, not a tenant's.
"""
import time
from collections import defaultdict

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from dstrain.service.ledger import Ledger
from dstrain.service.options import Options
from dstrain.service.quotas import DiskMeter
from dstrain.service.store import RUNNING, Store
from dstrain.service.usage import disk_in_use, of_runs


class _Jobs:
    def __init__(self, store: Store, options: Options):
        self.store = store
        self.options = options

    def collect(self):
        counts = self.store.counts()
        jobs = GaugeMetricFamily("dstrain_jobs", "Jobs in each state (queued, running, succeeded, failed, "
                                                 "cancelled)", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily("dstrain_slots", "Slots (GPUs, or CPU places) configured",
                                value=len(self.options.slots))
        held = {job.slot for job in self.store.jobs(states=[RUNNING])}
        slots = [slot for slot in self.options.slots if slot.name in held]
        yield GaugeMetricFamily("dstrain_slots_in_use", "Slots held by running jobs", value=len(slots))
        yield GaugeMetricFamily("dstrain_gpus_in_use", "GPUs held by running jobs",
                                value=sum(len(slot.devices) for slot in slots))


class _Tenants:
    """Each tenant's jobs per state and its usage so far (ledger.py, usage.py)."""

    def __init__(self, store: Store, options: Options, ledger: Ledger, disk: DiskMeter):
        self.store, self.options, self.ledger, self.disk = store, options, ledger, disk

    def collect(self):
        jobs = GaugeMetricFamily("dstrain_tenant_jobs", "A tenant's jobs in each state", labels=["tenant", "state"])
        counted = defaultdict(int)
        for job in self.store.jobs():
            counted[(job.tenant, job.state)] += 1
        for (tenant, state), count in sorted(counted.items()):
            jobs.add_metric([tenant, state], count)
        yield jobs
        by_tenant = defaultdict(list)
        for run in self.ledger.of_tenant():
            by_tenant[run.tenant].append(run)
        families = {
            "wall": CounterMetricFamily("dstrain_tenant_wall_seconds", "Seconds a tenant's jobs ran",
                                        labels=["tenant"]),
            "gpu": CounterMetricFamily("dstrain_tenant_gpu_seconds", "GPUs held times seconds", labels=["tenant"]),
            "cpu": CounterMetricFamily("dstrain_tenant_cpu_seconds", "CPU time of a tenant's jobs, by the engine",
                                       labels=["tenant"]),
            "memory": GaugeMetricFamily("dstrain_tenant_peak_memory_bytes", "The most memory one of a tenant's "
                                        "runs held", labels=["tenant"]),
            "disk": GaugeMetricFamily("dstrain_tenant_disk_bytes", "Bytes in a tenant's directory",
                                      labels=["tenant"]),
        }
        at = time.time()
        for tenant in sorted({t.id for t in self.store.tenants()} | set(by_tenant)):
            usage = of_runs(by_tenant.get(tenant, []), at)
            families["wall"].add_metric([tenant], usage.wall_seconds)
            families["gpu"].add_metric([tenant], usage.gpu_seconds)
            families["cpu"].add_metric([tenant], usage.cpu_seconds or 0.0)
            families["memory"].add_metric([tenant], usage.peak_memory_bytes or 0)
            disk = disk_in_use(self.disk, self.options, tenant)
            if disk is not None:
                families["disk"].add_metric([tenant], disk)
        yield from families.values()


def registry_for(store: Store, options: Options, ledger: Ledger, disk: DiskMeter) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Jobs(store, options))
    registry.register(_Tenants(store, options, ledger, disk))
    return registry
