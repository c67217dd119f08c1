"""What a run has done, read from its own records: the one reader for the runner, `dstrain status` and the service.

A run says what it did only in records written for that, never in a log line:

- ``state/<stage>.json``: a stage that finished (written last, by the runner);
- ``state/<stage>.failed.json``: a stage that failed, why, and the command that resumes (the runner; removed
  when the stage finishes);
- ``checkpoints/dstrain-progress.json``: the training's epochs, best checkpoint and invocations
  (deepspeech/progress.py);
- ``config.json``: the settings the run was last started with; ``reports/metrics.json``: the test's results.

Files are read through a ``Reader``: a function from a path relative to the run directory to the file's bytes,
or None when there is none.  The CLI reads its own disk (``local``).  The service passes a reader that opens a
tenant's files its own way, since a job writes them: so what is read is checked here (an object where an
object is expected, a number where a number is), and a record that is not what it should be counts as absent.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from dstrain.pipeline.deepspeech.progress import still_running
from dstrain.pipeline.paths import DataRoot

#: A path relative to the run directory -> the file's bytes, or None when it is not there.
Reader = Callable[[str], Optional[bytes]]


def local(run: Path) -> Reader:
    """The files of the run directory ``run`` on this machine."""

    def read(relative: str) -> Optional[bytes]:
        try:
            return (run / relative).read_bytes()
        except OSError:
            return None

    return read


@dataclass(frozen=True)
class Failure:
    """A stage that stopped with an error, as the runner recorded it."""

    stage: str
    cause: str
    #: The command that resumes, as the run was given it.
    resume: str
    #: When, as an ISO 8601 UTC time, and as seconds since the epoch (to find the last of several).
    failed: str
    time: float

    @property
    def interrupted(self) -> bool:
        """Ctrl-C or SIGTERM (docker stop, a cancelled job), rather than an error."""
        return self.cause == "interrupted"

    def describe(self) -> str:
        return f"stage {self.stage} failed: {self.cause}"


@dataclass(frozen=True)
class Training:
    """The run's own account of its training, as far as a reader needs it."""

    epochs_done: int = 0
    stopped_early: bool = False
    #: {"epoch", "dev_loss", "checkpoint"}: the lowest dev loss of the whole run.
    best: Optional[Dict[str, Any]] = None
    #: The last finished epoch: {"epoch", "train_loss", "dev_loss", ...}; {} before the first.
    last_epoch: Dict[str, Any] = field(default_factory=dict)
    #: How many times DeepSpeech was run for it.
    invocations: int = 0
    #: The last invocation when it never said how it ended: it still runs, or it was killed.
    unfinished: Optional[Dict[str, Any]] = None

    def finished(self, epochs: int) -> bool:
        return self.stopped_early or self.epochs_done >= epochs

    def state(self, recorded: str, epochs: int) -> Optional[str]:
        """"running" while its dstrain process is alive on this machine, "interrupted" when it stopped before
        ``epochs``; None when the stage's own state (``recorded``) tells it all."""
        if still_running(self.unfinished):
            return "running"
        if recorded != "done" and (self.unfinished is not None or (self.invocations and not self.finished(epochs))):
            return "interrupted"
        return None

    def describe(self, epochs: int) -> str:
        text = f"epochs={self.epochs_done}/{epochs}"
        if self.best is not None:
            loss = _number(self.best.get("dev_loss"))
            text += f", best epoch {self.best.get('epoch')} (dev loss {'-' if loss is None else f'{loss:.2f}'})"
        return text


def _number(value, default=None):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _object(value) -> Optional[Dict[str, Any]]:
    return value if isinstance(value, dict) else None


class RunRecords:
    """The records of the run under ``paths``, read through ``read`` (default: this machine's disk)."""

    def __init__(self, paths: DataRoot, read: Optional[Reader] = None):
        self.paths = paths
        self.read = read or local(paths.run)

    def _json(self, path: Path) -> Optional[Dict[str, Any]]:
        """The JSON object at ``path`` (under the run directory); None when absent, torn, or not an object."""
        data = self.read(path.relative_to(self.paths.run).as_posix())
        if data is None:
            return None
        try:
            return _object(json.loads(data.decode("utf-8")))
        except ValueError:  # not UTF-8, or not JSON: a torn or foreign file
            return None

    # -- stages ----------------------------------------------------------------

    def record(self, stage: str) -> Optional[Dict[str, Any]]:
        """The completion record of ``stage``, or None while it has not finished."""
        return self._json(self.paths.record(stage))

    def done(self, stages: Sequence[str]) -> List[str]:
        """Those of ``stages`` that have a completion record (whatever the settings now)."""
        return [stage for stage in stages if self.record(stage) is not None]

    def states(self, stages: Sequence, fingerprint: Callable[[Any], str]) -> Dict[str, str]:
        """'done', 'stale' or 'pending' for every stage (each with ``name`` and ``after``), in order: done when its
        record holds ``fingerprint(stage)`` and every stage it comes after is done."""
        states: Dict[str, str] = {}
        for stage in stages:
            record = self.record(stage.name)
            if record is None:
                states[stage.name] = "pending"
            elif any(states[up] != "done" for up in stage.after) or record.get("fingerprint") != fingerprint(stage):
                states[stage.name] = "stale"
            else:
                states[stage.name] = "done"
        return states

    def failure(self, stage: str) -> Optional[Failure]:
        data = self._json(self.paths.failure(stage))
        if data is None or not isinstance(data.get("cause"), str):
            return None
        return Failure(stage, data["cause"], str(data.get("resume", "")), str(data.get("failed", "")),
                       _number(data.get("time"), 0.0))

    def last_error(self, stages: Sequence[str]) -> Optional[Failure]:
        """The latest failure among ``stages`` that has not finished since."""
        found = [failure for failure in map(self.failure, stages) if failure is not None]
        return max(found, key=lambda failure: failure.time) if found else None

    # -- training, settings, results -------------------------------------------------

    def training(self) -> Optional[Training]:
        """The training's account, or None before the run's first training."""
        data = self._json(self.paths.training_progress)
        if data is None:
            return None
        epochs = data.get("epochs") if isinstance(data.get("epochs"), list) else []
        invocations = data.get("invocations") if isinstance(data.get("invocations"), list) else []
        last = _object(invocations[-1]) if invocations else None
        return Training(
            epochs_done=data["epochs_done"] if type(data.get("epochs_done")) is int else 0,
            stopped_early=data.get("stopped_early") is True,
            best=_object(data.get("best")),
            last_epoch=(_object(epochs[-1]) or {}) if epochs else {},
            invocations=len(invocations),
            unfinished=last if last is not None and last.get("outcome") == "running" else None,
        )

    def setting(self, key: str) -> Any:
        """The value of the dotted setting ``key`` the run was last started with (config.json), or None."""
        entry = _object((self._json(self.paths.config_file) or {}).get(key))
        return entry.get("value") if entry else None

    def test(self) -> Dict[str, Any]:
        """The test's results (reports/metrics.json's "test"), {} before the evaluate stage."""
        return _object((self._json(self.paths.metrics) or {}).get("test")) or {}
