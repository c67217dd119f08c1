"""Every program dstrain starts, started so that it stops with dstrain.

KenLM's lmplz sorts with most of the machine's memory, DeepSpeech trains for days: left running once dstrain
has stopped, they go on as orphans nobody waits for.  So every child goes through ``start`` (or ``started``,
``run``), which ties it to dstrain in two ways:

- it runs in a process group of its own, and whatever way the block that started it ends (its end, an error,
  Ctrl-C, or SIGTERM, which cli.py turns into Ctrl-C), ``stop`` sends the whole group SIGTERM, then SIGKILL
  after a grace period.  The terminal's Ctrl-C reaches dstrain alone, which then stops the child itself;
- the kernel sends it SIGKILL when the thread that started it ends (``PR_SET_PDEATHSIG``): dstrain killed
  outright (kill -9, the out-of-memory killer, Slurm's SIGKILL after ``scancel``) takes it along too.

A container's stop or Slurm's SIGTERM reaches dstrain, and with it every child.  The worker processes of
dstrain's own pools (workers.py) are tied to it the same way.  ``temporary_files_in`` gives the children
a ``TMPDIR`` under the data root.
"""
import contextlib
import contextvars
import ctypes
import functools
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator, Optional, Sequence

#: Seconds a child has to stop after SIGTERM before it gets SIGKILL.
GRACE = 5.0
_PR_SET_PDEATHSIG = 1
#: The directory children are given as TMPDIR, set for a run by ``temporary_files_in``.
_scratch: contextvars.ContextVar = contextvars.ContextVar("dstrain_scratch", default=None)


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the process group still holds
        return None


#: Found before any fork: a child must not load a library between fork and exec.
_PRCTL = _prctl()


def tie_to_parent(parent: int) -> None:
    """In a new child: die with SIGKILL when the thread that started it ends, and at once if ``parent`` (the
    PID it was started by) has ended already, before this call."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _child(parent: int) -> None:
    """Between fork and exec: tied to dstrain, and with the default handling of Ctrl-C and SIGTERM, which a
    pool worker ignores or dstrain handles itself (an ignored signal would stay ignored across exec)."""
    tie_to_parent(parent)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def temporary_files_in(directory: Path) -> Iterator[None]:
    """Within this block, children get ``directory`` (created when needed) as TMPDIR: their temporary files
    stay under the data root, never in a /tmp that may be small."""
    token = _scratch.set(Path(directory))
    try:
        yield
    finally:
        _scratch.reset(token)


def _environment(env: Optional[dict]) -> Optional[dict]:
    scratch = _scratch.get()
    if scratch is None:
        return env
    scratch.mkdir(parents=True, exist_ok=True)
    return dict(os.environ if env is None else env, TMPDIR=str(scratch.absolute()))


def start(command: Sequence[str], **popen) -> subprocess.Popen:
    """``subprocess.Popen(command, **popen)``, tied to dstrain; stop it with ``stop``."""
    popen["env"] = _environment(popen.get("env"))
    return subprocess.Popen([str(part) for part in command], start_new_session=True,
                            preexec_fn=functools.partial(_child, os.getpid()), **popen)


def stop(proc: subprocess.Popen, grace: float = GRACE) -> None:
    """Stop ``proc`` and everything in its process group, if it is still running: SIGTERM, and SIGKILL after
    ``grace`` seconds.  A second Ctrl-C meanwhile does not leave it running."""
    if proc.poll() is not None:
        return
    try:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    finally:
        _signal_group(proc, signal.SIGKILL)  # what the leader left behind, or the leader itself
        proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


@contextlib.contextmanager
def started(command: Sequence[str], grace: float = GRACE, **popen) -> Iterator[subprocess.Popen]:
    """``start`` for the block; stopped with ``stop`` however the block ends, its pipes closed."""
    with start(command, **popen) as proc:
        try:
            yield proc
        finally:
            stop(proc, grace)


def run(command: Sequence[str], input=None, timeout: Optional[float] = None, check: bool = False,
        capture_output: bool = False, **popen) -> subprocess.CompletedProcess:
    """``subprocess.run``, tied to dstrain; on a timeout the whole group is stopped before TimeoutExpired."""
    if input is not None:
        popen["stdin"] = subprocess.PIPE
    if capture_output:
        popen["stdout"] = popen["stderr"] = subprocess.PIPE
    with started(command, **popen) as proc:
        out, err = proc.communicate(input, timeout)
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, out, err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
