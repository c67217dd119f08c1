"""One writer at a time: OS file locks on a run directory and on each shared output.

``flock`` locks belong to an open file, so the kernel releases them when the
holder exits in any way, kill -9 included: a lock is never left behind.
Nothing is written into a lock file (a rerun with nothing to do touches no
file): who holds it, for the message of whoever waits, is read from the
kernel's own table.  A shared lock lets several importers read one source
archive while keeping out a download that would replace it.
"""
import contextlib
import contextvars
import fcntl
import logging
import os
from pathlib import Path

from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.paths import lock
from dstrain.pipeline.redaction import redact

log = logging.getLogger("dstrain")
#: Whether a busy lock is waited for (the default) or refused at once (``dstrain run --no-wait``).
_waits: contextvars.ContextVar = contextvars.ContextVar("dstrain_lock_waits", default=True)


class Busy(DstrainError):
    """Another process holds the lock, and this one was told not to wait."""


@contextlib.contextmanager
def waiting(wait: bool):
    """Within this block, a busy lock is waited for (``wait``) or refused with ``Busy``."""
    token = _waits.set(wait)
    try:
        yield
    finally:
        _waits.reset(token)


@contextlib.contextmanager
def hold(target: Path, what: str, shared: bool = False):
    """Hold ``target``'s lock for the block: alone, or ``shared`` with other readers."""
    path = lock(Path(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not _waits.get():
                raise Busy(f"{what} is in use by {holder}. Wait for it to finish, or stop it, then run again "
                           f"(without --no-wait, this run waits its turn). Lock file: {path}") from None
            log.warning("waiting for %s: it is in use by %s; this run goes on when that one is done "
                        "(Ctrl-C stops waiting)", what, holder)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The PID and command line of a process holding the lock on ``fd``'s file, as the kernel lists it."""
    inode = os.fstat(fd).st_ino
    try:
        with open("/proc/locks", encoding="ascii") as table:
            # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"; a waiter's line has "->" after the number.
            pids = [fields[4] for fields in (line.split() for line in table)
                    if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode)]
        pid = int(pids[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()
    except (OSError, IndexError, ValueError):  # no /proc (not Linux), or a holder in another PID namespace
        return "another process"
    return f"PID {pid} ({redact(command)})"
