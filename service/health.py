"""Whether the service can write what it must: its root (tenant files, job settings) and its store.

/healthz answers 503 with the reason when it cannot, and the scheduler starts no job meanwhile (a job
started on a full disk would fail for the host's reason, not its own); ends of jobs are recorded as soon as
the writes succeed again (scheduler.py retries every pass).
"""
import errno
import os
import sqlite3
from typing import Optional

from dstrain.service.layout import Layout
from dstrain.service.ledger import Ledger

#: Written, synced and removed again by each probe, in the service's root: a full disk fails it.
PROBE_BYTES = 64 << 10


def cannot_write(layout: Layout, ledger: Ledger) -> Optional[str]:
    """Why the service cannot write its root or its store now, or None."""
    path = layout.root / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(str(path))
        ledger.probe()
    except (OSError, sqlite3.Error) as exc:
        return f"cannot write in its root ({layout.root.name}/): {getattr(exc, 'strerror', None) or exc}"
    return None


def free_bytes(layout: Layout) -> int:
    disk = os.statvfs(str(layout.root))
    return disk.f_bavail * disk.f_frsize


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for want of space (the file system's, or the store's)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
