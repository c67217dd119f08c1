"""The pipeline's own account of a run's training, kept beside DeepSpeech's checkpoints.

DeepSpeech 0.9.3 counts epochs from 0 and forgets its best dev loss on every
invocation, so a resumed run cannot tell from its log how far it is.  This
record is updated as each epoch's lines are read, and written atomically, so a
crash at any moment leaves the last finished epoch counted.
"""
import math
import os
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional

from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.deepspeech.events import Event, parse


def _finite(value: Optional[float]) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None


def _process_identity(pid: int) -> Optional[str]:
    """What tells process ``pid`` apart from any other that had or will have its number: its pid namespace (a
    container's own) and its start time since boot; None where /proc cannot tell (not Linux)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return None
    return f"{namespace}/{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after the command's name


def still_running(invocation: Optional[Dict[str, Any]]) -> bool:
    """Whether the dstrain process that started ``invocation`` (an unfinished one) is alive on this machine, and is
    not this one."""
    if invocation is None or invocation.get("host") != socket.gethostname() or not invocation.get("pid"):
        return False
    pid = invocation["pid"]
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    if invocation.get("process") and invocation["process"] != _process_identity(pid):
        # Another process now has that number: one of another container (its own numbers, the host's name
        # under --network host), or one that took the number of a killed one.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a process that took the number of a killed one (after a restart) is not a dstrain
        return b"dstrain" in Path("/proc", str(pid), "cmdline").read_bytes()
    except OSError:
        return True


class Progress:
    def __init__(self, path, metrics_path, data: Dict[str, Any]):
        self.path = path
        self.metrics_path = metrics_path
        self.data = data
        self._before = 0
        self._train_losses: Dict[int, Optional[float]] = {}

    @classmethod
    def load(cls, path, metrics_path) -> Optional["Progress"]:
        data = read_json(path)
        return cls(path, metrics_path, data) if data else None

    @classmethod
    def new(cls, path, metrics_path, lineage: Dict[str, Any], train_settings) -> "Progress":
        return cls(path, metrics_path, {
            "lineage": lineage,
            #: From scratch, fine tuning or transfer learning, and why; decided before the first checkpoint.
            "mode": None,
            "source": None,
            "epochs_done": 0,
            "stopped_early": False,
            "configured_batch": [train_settings.train_batch_size, train_settings.dev_batch_size],
            #: The sizes in use: the configured ones, halved after each out-of-memory failure.
            "train_batch_size": train_settings.train_batch_size,
            "dev_batch_size": train_settings.dev_batch_size,
            #: The configured rate last passed to DeepSpeech; a change re-initialises the checkpoint's.
            "learning_rate": None,
            #: The rate in force, after any reduction on a plateau.
            "current_learning_rate": train_settings.learning_rate,
            "feature_cache_data": None,
            #: The training set last trained on, to say when a finished model has not seen a new one.
            "train_data": None,
            #: The lowest dev loss of the whole run: {"epoch", "dev_loss", "checkpoint"}.
            "best": None,
            #: The checkpoint that is the model (train.model_checkpoint), as the train stage last recorded it.
            "model": None,
            #: A training started by --force train that has not finished yet.
            "forced": False,
            "epochs": [],
            "events": [],
            "invocations": [],
        })

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value):
        self.data[key] = value

    def save(self) -> None:
        write_json(self.path, self.data)
        metrics = read_json(self.metrics_path) or {}
        metrics["training"] = self.metrics()
        write_json(self.metrics_path, metrics)

    def metrics(self) -> Dict[str, Any]:
        return {key: self.data.get(key) for key in (
            "mode", "epochs_done", "stopped_early", "best", "model", "epochs", "events", "invocations",
            "train_batch_size", "dev_batch_size")}

    @property
    def last_epoch(self) -> Optional[int]:
        return self.data["epochs"][-1]["epoch"] if self.data["epochs"] else None

    def event(self, kind: str, epoch: Optional[int] = None, **detail) -> None:
        """Something that happened at ``epoch`` (default: the last finished one)."""
        self.data["events"].append(dict(detail, event=kind, epoch=self.last_epoch if epoch is None else epoch))
        self.save()

    # -- invocations that never said how they ended ----------------------------------

    def unfinished(self) -> Optional[Dict[str, Any]]:
        """The last invocation when it never recorded its end: still running, or killed (kill -9, power cut)."""
        last = self.data["invocations"][-1] if self.data["invocations"] else None
        return last if last is not None and last["outcome"] == "running" else None

    def running_elsewhere(self) -> bool:
        """Whether the unfinished invocation's dstrain process is alive on this machine."""
        return still_running(self.unfinished())

    def close_interrupted(self) -> None:
        """An invocation still "running" when a new one starts was killed: it is recorded as interrupted."""
        last = self.unfinished()
        if last is not None:
            last["outcome"] = "interrupted"
            self.save()

    # -- one DeepSpeech invocation ----------------------------------------------

    def begin(self, cmd: List[str], load: str, load_dir, epochs: int) -> None:
        self._before = self.data["epochs_done"]
        self._train_losses = {}
        self.data["invocations"].append({
            "argv": cmd,
            "load_train": load,
            "load_checkpoint_dir": str(load_dir),
            #: Counted from 1 over the whole run, as every epoch number a user reads.
            "first_epoch": self._before + 1,
            "epochs": epochs,
            "train_batch_size": self.data["train_batch_size"],
            "outcome": "running",
            # Whether it still runs, for `dstrain status`.
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process": _process_identity(os.getpid()),
        })
        self.save()

    def set_model(self, model: Dict[str, Any]) -> None:
        """The checkpoint that is the model; test results of other weights no longer describe it."""
        self.data["model"] = model
        metrics = read_json(self.metrics_path) or {}
        tested = (metrics.get("test") or {}).get("model") or {}
        if metrics.get("test") and tested.get("digest") != model["digest"]:
            del metrics["test"]
        metrics["training"] = self.metrics()
        write_json(self.path, self.data)
        write_json(self.metrics_path, metrics)

    def end(self, outcome: str, returncode: int) -> None:
        self.data["invocations"][-1].update(outcome=outcome, exit_code=returncode)
        self.save()

    def feed(self, line: str) -> Optional[Event]:
        event = parse(line)
        if event is not None:
            self.apply(event)
        return event

    def apply(self, event: Event) -> None:
        if event.kind == "train_loss":
            self._train_losses[event.epoch] = _finite(event.value)
        elif event.kind == "dev_loss":
            # The epoch's checkpoint is saved before validation starts: from here on it counts as done.
            self.data["epochs"].append({
                # DeepSpeech counts from 0 in each invocation; this counts from 1 over the whole run.
                "epoch": self._before + event.epoch + 1,
                "train_loss": self._train_losses.pop(event.epoch, None),
                "dev_loss": _finite(event.value),
                "learning_rate": self.data["current_learning_rate"],
                "train_batch_size": self.data["train_batch_size"],
            })
            self.data["epochs_done"] += 1
            self.save()
        elif event.kind == "best_saved":
            best = self.data["best"]
            name = os.path.basename(event.detail.strip())
            # The best of the whole run, whichever invocation found it: DeepSpeech's own best starts again at
            # infinity on every resume, so its "new best" may be worse than one saved before.
            if best is None or (event.value is not None and event.value < best["dev_loss"]):
                self.data["best"] = {"epoch": self.last_epoch, "dev_loss": event.value, "checkpoint": name}
                self.save()
            else:
                self.event("earlier_best_kept", dev_loss=event.value, kept_epoch=best["epoch"])
        elif event.kind == "early_stop":
            self.data["stopped_early"] = True
            self.event("early_stop", epochs_without_improvement=int(event.value))
        elif event.kind == "plateau":
            self.data["current_learning_rate"] = event.value
            self.event("plateau", learning_rate=event.value)
