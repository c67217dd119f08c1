"""One writer at a time: OS file locks on a run directory and on each shared output.

``flock`` locks belong to an open file, so the kernel releases them when the
holder exits in any way, kill -9 included: a lock is never left behind.  The
lock file holds the holder's PID and command line, for the message of whoever
waits.  A shared lock lets several importers read one source archive while
keeping out a download that would replace it.
"""
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import sys
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
        _sign(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


def _sign(fd: int) -> None:
    """Write who holds the lock now; readers sharing it may overwrite each other, one of them is named."""
    entry = json.dumps({"pid": os.getpid(), "command": redact(" ".join(sys.argv))}).encode() + b"\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, entry, 0)


def _holder(fd: int) -> str:
    try:
        entry = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()[0])
        return f"PID {entry['pid']} ({entry['command']})"
    except (ValueError, IndexError, KeyError, TypeError):
        return "another process"
