"""The walls between tenants, without an engine: an old store brought up to date and its tenants given uids,
disk quotas held by the scheduler, and a tenant disabled, enabled and removed (test_service_tenants.py runs
them on the real engine)."""
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from fastapi import HTTPException

from dstrain.service import files, lifecycle, quotas
from dstrain.service import store as store_module
from dstrain.service.layout import Layout
from dstrain.service.options import Options, cpu_slots
from dstrain.service.scheduler import Scheduler
from dstrain.service.store import CANCELLED, FAILED, QUEUED, RUNNING, Store
from dstrain.service.tenants import add_tenant, authenticate, give_uids, owner
from tests.test_service_unit import _MemoryLauncher

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="uids and chown need root")


class _Launcher(_MemoryLauncher):
    """Remembers which runs it was asked to stop."""

    def __init__(self):
        super().__init__()
        self.stopped = []

    def stop(self, handle, grace_seconds):
        self.stopped.append(handle)


def _options(root, **extra) -> Options:
    return Options(root=root, image="i", slots=cpu_slots(2), **{"tenant_uids": (200000, 200099), **extra})


@needs_root
def test_an_old_store_opens_and_its_tenants_get_uids_and_their_files(tmp_path):
    layout = Layout(tmp_path)
    db = sqlite3.connect(str(layout.db))  # the first version's schema, user_version 0
    db.executescript(store_module._SCHEMA)
    db.execute("INSERT INTO tenants VALUES ('t-old', 'old-corp', 'h', '2025-01-01T00:00:00Z')")
    db.execute("INSERT INTO jobs (id, tenant, language, overrides, state, queue_seq, created, updated)"
               " VALUES ('job-1', 't-old', 'fr', '{}', 'succeeded', 1, 'x', 'x')")
    db.commit()
    db.close()
    tenant_dir = layout.tenant("t-old")
    (tenant_dir / "runs" / "job-1").mkdir(parents=True)
    (tenant_dir / "runs" / "job-1" / "model").write_text("m")
    (tmp_path / "host-file").write_text("the host's")
    (tenant_dir / "runs" / "job-1" / "link").symlink_to(tmp_path / "host-file")
    chown_tree(tenant_dir, 1000)  # the single jobs' uid of the first version

    store = Store(layout.db)
    assert store._all("PRAGMA user_version")[0][0] == len(store_module._MIGRATIONS)
    assert store.tenant("t-old").uid is None and store.job("job-1").stop_cause is None
    give_uids(store, layout, _options(tmp_path))
    tenant = store.tenant("t-old")
    assert tenant.uid == 200000 and owner(_options(tmp_path), tenant) == (200000, 200000)
    assert stat.S_IMODE(os.stat(tenant_dir).st_mode) == 0o700
    for path in (tenant_dir, tenant_dir / "runs" / "job-1" / "model", tenant_dir / "sources", tenant_dir / "jobs"):
        assert os.stat(path).st_uid == 200000, path
    assert os.stat(tmp_path / "host-file").st_uid == 0  # the link's target is not the tenant's
    Store(layout.db)  # opening it again changes nothing
    new, _ = add_tenant(store, layout, _options(tmp_path), "new-corp")
    assert new.uid == 200001


def chown_tree(path: Path, uid: int) -> None:
    for found in [path, *path.rglob("*")]:
        os.lchown(found, uid, uid)


@needs_root
def test_a_tenant_over_its_quota_has_its_running_job_stopped_and_failed(tmp_path):
    layout = Layout(tmp_path)
    store = Store(layout.db)
    options = _options(tmp_path, tenant_quota=64 << 10, disk_check_seconds=3600)
    tenant, _ = add_tenant(store, layout, options, "acme")
    launcher = _Launcher()
    scheduler = Scheduler(store, launcher, layout, options)
    job = store.submit(tenant.id, "fr", None, {}, None, None, "", lambda job_id: None)[0]
    scheduler.step()
    assert store.job(job.id).state == RUNNING and not launcher.stopped

    (layout.tenant(tenant.id) / "checkpoint").write_bytes(os.urandom(100 << 10))  # what the job writes
    scheduler.disk.measure(tenant.id)  # the disk-meter thread's round
    scheduler.step()
    stopping = store.job(job.id)
    assert stopping.stop_cause.startswith("disk quota of 64 KiB exceeded: ") and launcher.stopped
    launcher.ended[job.id] = 143  # SIGTERM, after the grace
    scheduler.step()
    failed = store.job(job.id)
    assert failed.state == FAILED and failed.cause == stopping.stop_cause, failed
    assert quotas.human(quotas.disk_in_use(layout, tenant.id)) in failed.cause

    # Resumed while still over: the resume is refused at the API (test_service_tenants.py); here it runs again
    # and its stop cause is cleared when it starts.
    assert store.move(job.id, [FAILED], QUEUED, "resumed")
    (layout.tenant(tenant.id) / "checkpoint").unlink()
    scheduler.disk.forget(tenant.id)
    scheduler.step()
    assert store.job(job.id).state == RUNNING and store.job(job.id).stop_cause is None


@needs_root
def test_disable_enable_and_remove(tmp_path, capsys):
    layout = Layout(tmp_path)
    store = Store(layout.db)
    options = _options(tmp_path)
    tenant, token = add_tenant(store, layout, options, "acme")
    launcher = _Launcher()
    scheduler = Scheduler(store, launcher, layout, options)
    running = store.submit(tenant.id, "fr", None, {}, None, None, "", lambda job_id: None)[0]
    scheduler.step()
    queued = store.submit(tenant.id, "fr", None, {}, None, None, "", lambda job_id: None)[0]

    assert lifecycle.disable(store, layout, "acme") == [running.id]
    assert authenticate(store, token).disabled  # the API answers 401 for it (auth.py)
    assert store.job(queued.id).state == CANCELLED and store.job(queued.id).cause == lifecycle.DISABLED
    scheduler.step()  # the service's next pass stops it
    assert launcher.stopped == [f"h-{running.id}-1"]
    launcher.ended[running.id] = 143
    scheduler.step()
    stopped = store.job(running.id)
    assert (stopped.state, stopped.cause) == (CANCELLED, lifecycle.DISABLED)
    lifecycle.enable(store, layout, "acme")
    assert not authenticate(store, token).disabled

    # Remove: refused while a job runs, unless forced; a link planted in its directory is removed, not followed.
    store.move(running.id, [CANCELLED], QUEUED, "resumed")
    del launcher.ended[running.id]
    scheduler.step()
    assert store.job(running.id).state == RUNNING
    with pytest.raises(ValueError, match="running job"):
        lifecycle.remove(store, layout, "acme", False, lambda: launcher, grace=1)
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "keep").write_text("the host's")
    (layout.tenant(tenant.id) / "runs").mkdir()
    (layout.tenant(tenant.id) / "runs" / "planted").symlink_to(host_dir)

    lifecycle.remove(store, layout, "acme", True, lambda: launcher, grace=1, say=print)
    assert not layout.tenant(tenant.id).exists() and (host_dir / "keep").read_text() == "the host's"
    assert store.tenant(tenant.id) is None and store.jobs(tenant.id) == [] and store.job(running.id) is None
    audit = layout.audit_log.read_text()
    assert f"tenant {tenant.id} (acme) removed" in audit and f"tenant {tenant.id} (acme) disabled" in audit
    assert oct(os.stat(layout.audit_log).st_mode & 0o777) == "0o600"
    assert "stopping job" in capsys.readouterr().out


def test_uids_under_userns_remap_and_the_range_checks(tmp_path):
    store = Store(tmp_path / "service.db")
    store.add_tenant("t-1", "one", "h")
    if os.geteuid() == 0:
        options = _options(tmp_path, userns_offset=1_000_000)
        store.give_uid("t-1", *options.tenant_uids)
        # The container runs as the tenant's uid; the host sees it as offset + uid: its files are given to that.
        assert (store.tenant("t-1").uid, owner(options, store.tenant("t-1"))) == (200000, (1_200_000, 1_200_000))
        with pytest.raises(ValueError, match="never 0"):
            _options(tmp_path, tenant_uids=(0, 5))
    store.add_tenant("t-2", "two", "h")
    store.give_uid("t-2", 5, 5)
    store.add_tenant("t-3", "three", "h")
    with pytest.raises(ValueError, match="every uid of 5-5"):
        store.give_uid("t-3", 5, 5)


@pytest.mark.parametrize("header,size,wanted", [
    (None, 10, None), ("bytes=2-", 10, (2, 9)), ("bytes=2-4", 10, (2, 4)), ("bytes=-3", 10, (7, 9)),
    ("bytes=0-99", 10, (0, 9)), ("bytes=1-2,4-5", 10, None), ("items=1-2", 10, None), ("bytes=-", 10, None),
])
def test_range_headers(header, size, wanted):
    assert files._range(header, size) == wanted


@pytest.mark.parametrize("header,size", [("bytes=10-", 10), ("bytes=5-2", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_range_past_the_end_is_416(header, size):
    with pytest.raises(HTTPException) as caught:
        files._range(header, size)
    assert caught.value.status_code == 416 and caught.value.headers["Content-Range"] == f"bytes */{size}"
