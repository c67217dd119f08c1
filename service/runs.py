"""What a job's run says about itself, read from the run's own files in its tenant's directory.

Progress and a failure's cause come from the run's records, read by the pipeline's one reader of them
(pipeline/run_state.py): the stage records and failures (``state/``), the training's account
(``checkpoints/dstrain-progress.json``), ``config.json`` and ``reports/metrics.json``; never from log lines
or console text.  Every file is reached through ``layout.inside``, so nothing a job's container wrote can
lead a read out of its tenant's directory.
"""
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.run_state import RunRecords, Training
from dstrain.pipeline.stages import STAGE_NAMES
from dstrain.service.layout import Layout, inside, relative_parts
from dstrain.service.store import Job

#: What a tenant may download: the run's package, and the reports a person reads.
ARTIFACT_DIRS = ("package",)
ARTIFACT_FILES = ("reports/report.html", "reports/loss.png", "reports/report.md", "reports/metrics.json")


def stages_of(job: Job) -> Tuple[str, ...]:
    last = STAGE_NAMES.index(job.stop_after) if job.stop_after else len(STAGE_NAMES) - 1
    return STAGE_NAMES[: last + 1]


def _run(layout: Layout, job: Job) -> DataRoot:
    return layout.run(job.tenant, job.id, job.language)


def _file(run: DataRoot, path) -> Path:
    """``path`` of the run, checked from the tenant's directory down: the container writes everything below
    it, the run directory itself included, so a symlink anywhere there is refused."""
    return inside(run.root, str(Path(path).relative_to(run.root)))


def _records(layout: Layout, job: Job) -> RunRecords:
    """The job's run, read by the pipeline's reader of a run's records, through ``inside``."""
    run = _run(layout, job)

    def read(relative: str) -> Optional[bytes]:
        try:
            return _file(run, run.run / relative).read_bytes()
        except OSError:  # not a regular file inside the tenant's directory (FileNotFoundError), or unreadable
            return None

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


def _logs(run: DataRoot) -> List[Tuple[str, Path]]:
    """(stage, path) of each stage log that exists, in stage order."""
    found = []
    for stage in STAGE_NAMES:
        try:
            found.append((stage, _file(run, run.log(stage))))
        except FileNotFoundError:
            continue
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
        for stage, path in _logs(self.run):
            with open(str(path), "rb") as handle:
                handle.seek(self.offsets.get(stage, 0))
                data = handle.read(limit)
            # Whole lines only: the rest is read when its newline is there.
            data = data[: data.rfind(b"\n") + 1]
            if data:
                self.offsets[stage] = self.offsets.get(stage, 0) + len(data)
                yield "".join(f"[{stage}] {line}\n" for line in data.decode("utf-8", "replace").splitlines())


_digests: Dict[Tuple[str, int, int], str] = {}


def _sha256(path: str) -> str:
    """Computed once per file version (path, size, mtime): a package can be gigabytes."""
    status = os.stat(path)
    key = (path, status.st_size, status.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def artifacts(layout: Layout, job: Job) -> List[Dict[str, Any]]:
    run = _run(layout, job)
    candidates = list(ARTIFACT_FILES)
    for directory in ARTIFACT_DIRS:
        base = run.run / directory
        if base.is_dir() and not base.is_symlink():
            for root, dirs, files in os.walk(str(base)):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                rel_root = os.path.relpath(root, str(run.run))
                candidates += [f"{rel_root}/{name}" for name in sorted(files) if not name.startswith(".")]
    found = []
    for relative in candidates:
        try:
            path = str(artifact(layout, job, relative))
        except FileNotFoundError:
            continue
        found.append({"path": relative, "size": os.stat(path).st_size, "sha256": _sha256(path)})
    return found


def artifact(layout: Layout, job: Job, relative: str):
    """The file a tenant may download at ``relative`` in the job's run; FileNotFoundError for anything else."""
    parts = relative_parts(relative).parts  # PathRefused first: a '..' is a bad request, not a missing file
    if relative not in ARTIFACT_FILES and parts[0] not in ARTIFACT_DIRS:
        raise FileNotFoundError(relative)
    if any(part.startswith(".") for part in parts):  # files being written (atomic.py's temporary names)
        raise FileNotFoundError(relative)
    run = _run(layout, job)
    return _file(run, run.run / relative)


def sha256_of(path) -> str:
    return _sha256(str(path))
