"""Work spread over forked worker processes: it fails when a worker dies, never hangs, and stops with dstrain.

``multiprocessing.Pool`` waits forever for the result of a worker that died (the out-of-memory killer, a
crash in a decoder's C code) or that could not unpickle its task: one damaged archive hung an import that
way, on every rerun.  ``concurrent.futures.ProcessPoolExecutor`` notices a dead worker, and a task or
result that does not survive pickling, and fails the work waiting on it; ``ordered`` runs every parallel
job of dstrain on one.  It also keeps a bounded amount of work in flight (a million clips are not all
queued, with their bytes), gives the results in the order of the jobs, and stops its workers at once when
its caller stops (an error, Ctrl-C, SIGTERM).  The workers die with dstrain too (processes.tie_to_parent),
and leave Ctrl-C to it: the terminal sends SIGINT to every process of its group.
"""
import collections
import contextlib
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence

from dstrain.pipeline.errors import StageError
from dstrain.pipeline.processes import tie_to_parent


def ordered(fn: Callable[[Any], Any], jobs: Iterable[Any], workers: int, window: int, chunk: int = 1,
            cost: Optional[Callable[[Any], int]] = None, budget: Optional[int] = None,
            initializer: Optional[Callable] = None, initargs: Sequence = ()) -> Iterator[Any]:
    """``fn(job)`` for every job, in the order of ``jobs``, computed by ``workers`` processes.

    Jobs go to the workers ``chunk`` at a time; at most ``window`` chunks are in flight, and with ``cost``
    their total cost stays within ``budget`` (a chunk that costs more than the whole budget still goes,
    alone).  ``jobs`` is read in this thread, so an error in reading it (a damaged archive) is raised here,
    as it is.  A worker that dies fails the work with a StageError that says so.
    """
    pending: collections.deque = collections.deque()
    in_flight = 0
    with _pool(workers, initializer, initargs) as pool:
        for batch in _batches(jobs, chunk):
            weight = sum(map(cost, batch)) if cost else 0
            while pending and (len(pending) >= window or (budget is not None and in_flight + weight > budget)):
                future, done = pending.popleft()
                in_flight -= done
                yield from _results(future)
            try:
                pending.append((pool.submit(_each, fn, batch), weight))
            except BrokenProcessPool as exc:  # a worker died between two results
                raise _died(exc) from exc
            in_flight += weight
        while pending:
            yield from _results(pending.popleft()[0])


def _batches(jobs: Iterable[Any], size: int) -> Iterator[List[Any]]:
    batch: List[Any] = []
    for job in jobs:
        batch.append(job)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _each(fn: Callable[[Any], Any], batch: List[Any]) -> List[Any]:
    return [fn(job) for job in batch]


def _results(future: Future) -> List[Any]:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise _died(exc) from exc


def _died(exc: BrokenProcessPool) -> StageError:
    cause = str(exc.__cause__ or "").strip().splitlines()
    return StageError(
        "a worker process ended before finishing its work ({}{}): the system may have run out of memory and "
        "killed it, or it crashed. Nothing it was doing is recorded; run the same command again to go on, with "
        "fewer workers (--workers) if memory is short.".format(exc, f"; {cause[-1]}" if cause else ""))


@contextlib.contextmanager
def _pool(workers: int, initializer: Optional[Callable], initargs: Sequence) -> Iterator[ProcessPoolExecutor]:
    # fork: the workers inherit the decoding libraries and settings already loaded, as they did with Pool.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker,
                               initargs=(os.getpid(), initializer, tuple(initargs)))
    try:
        yield pool
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _start_worker(parent: int, initializer: Optional[Callable], initargs: Sequence) -> None:
    tie_to_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now, whatever they are doing: the caller is not waiting for their results."""
    # The executor has no public way to stop a task under way: its workers are in this private mapping.
    for worker in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(AttributeError, ValueError, OSError):  # already reaped, or never started
            worker.terminate()
    if sys.version_info >= (3, 9):
        pool.shutdown(wait=True, cancel_futures=True)
    else:  # pragma: no cover - Python 3.8: the dead workers fail the queued work instead
        pool.shutdown(wait=True)
