"""Prometheus metrics, read from the store at each scrape: jobs per state, slots configured and in use.

Counted at scrape time rather than kept in counters, so they survive a restart and never drift from the
store.  No label names a tenant.
"""
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

from dstrain.service.options import Options
from dstrain.service.store import RUNNING, Store


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


def registry_for(store: Store, options: Options) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Jobs(store, options))
    return registry
