"""What the host does to a tenant after adding it: disable, enable, set its quota, remove it with its data.

These run in the `dstrain serve tenant ...` command, a process of its own beside the running service; the
store is what they share.  A disabled tenant's token is refused at the next request (the token check reads
the store each time), its queued jobs are cancelled at once, and the service's scheduler stops its running
ones on its next pass, with the grace period, so their last checkpoint is kept.  Each change leaves a line
in ``<root>/audit.log``.
"""
import os
import time
from typing import Callable, List, Optional

from dstrain.service import tenantfs
from dstrain.service.launcher import EXITED, Launcher
from dstrain.service.layout import Layout
from dstrain.service.store import CANCELLED, RUNNING, Store, Tenant, now

DISABLED = "stopped: the host disabled this tenant"
REMOVED = "stopped: the host removed this tenant"
#: Seconds a running job without a container is given to get one (the service starting it) before it is
#: recorded as cancelled anyway.
_NO_CONTAINER_WAIT = 15


def audit(layout: Layout, line: str) -> None:
    """Append ``line`` to the audit log (the host's own file: its name for the tenant is there too)."""
    fd = os.open(str(layout.audit_log), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, f"{now()} {line}\n".encode())
    finally:
        os.close(fd)


def named(store: Store, name: str) -> Tenant:
    tenant = store.tenant_named(name)
    if tenant is None:
        raise ValueError(f"no tenant named {name!r}")
    return tenant


def disable(store: Store, layout: Layout, name: str) -> List[str]:
    """Disable the tenant; the ids of its running jobs, which the service stops on its next pass."""
    tenant = named(store, name)
    running = store.disable_tenant(tenant.id, DISABLED)
    audit(layout, f"tenant {tenant.id} ({name}) disabled; running jobs to stop: {', '.join(running) or 'none'}")
    return running


def enable(store: Store, layout: Layout, name: str) -> None:
    tenant = named(store, name)
    store.enable_tenant(tenant.id)
    audit(layout, f"tenant {tenant.id} ({name}) enabled")


def set_quota(store: Store, layout: Layout, name: str, quota: Optional[int]) -> None:
    tenant = named(store, name)
    store.set_quota(tenant.id, quota)
    audit(layout, f"tenant {tenant.id} ({name}) quota {'the host default' if quota is None else f'{quota} bytes'}")


def remove(store: Store, layout: Layout, name: str, force: bool, launcher: Callable[[], Launcher],
           grace: int, say: Callable[[str], None] = print) -> None:
    """Remove the tenant: its jobs stopped (only with ``force`` if some run), its directory deleted without
    following any symlink a job planted there, then its rows.  ``launcher()`` gives the engine, to stop
    running jobs here rather than wait for the service, which may not be running."""
    tenant = named(store, name)
    running = store.jobs(tenant.id, [RUNNING])
    if running and not force:
        raise ValueError(f"tenant {name!r} has {len(running)} running job(s) ({', '.join(j.id for j in running)}); "
                         "`--force` stops them (with the grace period) and removes it")
    store.disable_tenant(tenant.id, REMOVED)
    if running:
        _stop(store, launcher(), tenant.id, grace, say)
    tenantfs.remove_tree(layout.tenants, tenant.id)
    store.remove_tenant(tenant.id)
    audit(layout, f"tenant {tenant.id} ({name}) removed, with its directory and its jobs")


def _stop(store: Store, launcher: Launcher, tenant_id: str, grace: int, say: Callable[[str], None]) -> None:
    """Stop the tenant's running jobs' containers and record the jobs cancelled.  A job the service has just
    moved to running may have no container yet: it gets a moment to appear, and is recorded all the same."""
    started = time.monotonic()
    while True:
        running = store.jobs(tenant_id, [RUNNING])
        if not running:
            return
        runs = launcher.runs()
        for job in running:
            mine = [run for run in runs if run.job == job.id]
            for run in mine:
                if run.phase != EXITED:
                    say(f"stopping job {job.id} (grace {grace} s)")
                    launcher.stop(run.handle, grace)
            if mine or time.monotonic() - started > _NO_CONTAINER_WAIT:
                store.move(job.id, [RUNNING], CANCELLED, REMOVED, slot=None, cause=REMOVED)
        if time.monotonic() - started > grace + 2 * _NO_CONTAINER_WAIT:
            raise RuntimeError("jobs still running: " + ", ".join(job.id for job in store.jobs(tenant_id, [RUNNING])))
        time.sleep(1)
