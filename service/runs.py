"""What a job's run says about itself, read from the run's own files in its tenant's directory.

Progress and a failure's cause come from the run's records, read by the pipeline's one reader of them
(pipeline/run_state.py): the stage records and failures (``state/``), the training's account
(``checkpoints/dstrain-progress.json``), ``config.json`` and ``reports/metrics.json``; never from log lines
or console text.  Every record and log is read through ``_read``, beneath the tenant directory's descriptor
(tenantfs.py), so nothing a job's container wrote, or swaps in while it is read, can lead a read out of its
tenant's directory.
"""
import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.run_state import RunRecords, Training
from dstrain.pipeline.stages import STAGE_NAMES
from dstrain.service import tenantfs
from dstrain.service.layout import Layout, relative_parts
from dstrain.service.store import Job

#: What a tenant may download: the run's package, and the reports a person reads.
ARTIFACT_DIRS = ("package",)
ARTIFACT_FILES = ("reports/report.html", "reports/loss.png", "reports/report.md", "reports/metrics.json")



def stages_of(job: Job) -> Tuple[str, ...]:
    last = STAGE_NAMES.index(job.stop_after) if job.stop_after else len(STAGE_NAMES) - 1
    return STAGE_NAMES[: last + 1]


def _run(layout: Layout, job: Job) -> DataRoot:
    return layout.run(job.tenant, job.id, job.language)


def _relative(run: DataRoot, path) -> str:
    """``path`` of the run, relative to the tenant's directory: the container writes everything below it, the
    run directory itself included, so nothing there is trusted not to be a symlink."""
    return str(Path(path).relative_to(run.root))


def _read(run: DataRoot, path, offset: int = 0, limit: Optional[int] = None) -> Optional[tenantfs.Content]:
    """The one way this module reads a file of the run (a regular file beneath the tenant's directory, reached
    without a symlink); None where there is none.  A negative ``offset`` counts from the end."""
    try:
        with tenantfs.Tree(run.root) as tree:
            return tree.read(_relative(run, path), offset, limit)
    except tenantfs.NotFound:
        return None


#: A record larger than this is not one the pipeline wrote: it is not read into the service's memory.
_RECORD_LIMIT = 16 << 20


def _records(layout: Layout, job: Job) -> RunRecords:
    """The job's run, read by the pipeline's reader of a run's records, through ``_read``."""
    run = _run(layout, job)

    def read(relative: str) -> Optional[bytes]:
        found = _read(run, run.run / relative, 0, _RECORD_LIMIT + 1)
        if found is None or len(found.data) > _RECORD_LIMIT:
            return None
        return found.data

    return RunRecords(run, read)


def progress(layout: Layout, job: Job) -> Dict[str, Any]:
    records = _records(layout, job)
    stages = stages_of(job)
    done = records.done(stages)
    current = next((stage for stage in stages if stage not in done), None)
    training = records.training() or Training()
    overall = records.test().get("overall") or {}
    return {
        "state": job.state,
        "stage": current if job.state == "running" else None,
        "stages_done": done,
        "stages": list(stages),
        "epoch": training.epochs_done,
        "epochs": records.setting("train.epochs"),
        "train_loss": training.last_epoch.get("train_loss"),
        "dev_loss": training.last_epoch.get("dev_loss"),
        "best": training.best,
        "trainings": training.invocations,
        "wer": overall.get("wer"),
        "cer": overall.get("cer"),
    }


def _logs(run: DataRoot, offsets: Dict[str, int], limit: Optional[int]) -> List[Tuple[str, tenantfs.Content]]:
    """(stage, content from its offset) of each stage log that exists, in stage order."""
    found = []
    for stage in STAGE_NAMES:
        content = _read(run, run.log(stage), offsets.get(stage, 0), limit)
        if content is not None:
            found.append((stage, content))
    return found


def failure_cause(layout: Layout, job: Job) -> Optional[str]:
    """Why the run's last failed stage stopped, as the runner recorded it."""
    failure = _records(layout, job).last_error(STAGE_NAMES)
    return failure.describe() if failure is not None else None


class LogReader:
    """The stage logs, each line prefixed with its stage; ``read()`` returns only what is new since the last."""

    def __init__(self, layout: Layout, job: Job):
        self.run = _run(layout, job)
        self.offsets: Dict[str, int] = {}

    def read(self, limit: int = 1 << 20) -> Iterator[str]:
        for stage, content in _logs(self.run, self.offsets, limit):
            # Whole lines only: the rest is read when its newline is there.
            data = content.data[: content.data.rfind(b"\n") + 1]
            if data:
                self.offsets[stage] = self.offsets.get(stage, 0) + len(data)
                yield "".join(f"[{stage}] {line}\n" for line in data.decode("utf-8", "replace").splitlines())


#: Digests by file version: (device, inode, size, mtime, ctime) of the descriptor read.  The ctime too: a
#: job can set a file's mtime back after changing it, never its ctime.
_digests: "OrderedDict[Tuple[int, ...], str]" = OrderedDict()
_digests_lock = threading.Lock()
_DIGESTS_KEPT = 4096


def sha256_of(fd: int, status: os.stat_result) -> str:
    """The SHA256 of the open file, computed once per file version: a package can be gigabytes."""
    key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
    with _digests_lock:
        if key in _digests:
            _digests.move_to_end(key)
            return _digests[key]
    digest, offset = hashlib.sha256(), 0
    while True:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            break
        digest.update(block)
        offset += len(block)
    with _digests_lock:
        _digests[key] = digest.hexdigest()
        while len(_digests) > _DIGESTS_KEPT:
            _digests.popitem(last=False)
    return digest.hexdigest()


def artifacts(layout: Layout, job: Job) -> List[Dict[str, Any]]:
    run = _run(layout, job)
    candidates = list(ARTIFACT_FILES)
    with tenantfs.Tree(run.root) as tree:
        for directory in ARTIFACT_DIRS:
            for entry in tree.files(_relative(run, run.run / directory)):
                relative = str(Path(entry.path).relative_to(_relative(run, run.run)))
                if not any(part.startswith(".") for part in Path(relative).parts):
                    candidates.append(relative)
        found = []
        for relative in candidates:
            try:
                fd, status = _open_artifact(tree, run, relative)
            except tenantfs.NotFound:
                continue
            try:
                found.append({"path": relative, "size": status.st_size, "sha256": sha256_of(fd, status)})
            finally:
                os.close(fd)
    return found


def _open_artifact(tree: tenantfs.Tree, run: DataRoot, relative: str) -> Tuple[int, os.stat_result]:
    parts = relative_parts(relative).parts  # PathRefused first: a '..' is a bad request, not a missing file
    if relative not in ARTIFACT_FILES and parts[0] not in ARTIFACT_DIRS:
        raise tenantfs.NotFound(relative)
    if any(part.startswith(".") for part in parts):  # files being written (atomic.py's temporary names)
        raise tenantfs.NotFound(relative)
    return tree.open_file(_relative(run, run.run / relative))


def open_artifact(layout: Layout, job: Job, relative: str) -> Tuple[int, os.stat_result]:
    """The file a tenant may download at ``relative`` in the job's run, open for reading, with its status;
    tenantfs.NotFound for anything else.  The caller closes it."""
    run = _run(layout, job)
    with tenantfs.Tree(run.root) as tree:
        return _open_artifact(tree, run, relative)
