"""Where training starts: the run's own last checkpoint, another model's (fine tuning or transfer learning), or nothing.

Starting from another model is explicit (``train.source_checkpoint``): its
alphabet decides the mode.  The same labels in the same order fine-tune it,
every layer kept; other labels are transfer learning, the last
``train.drop_source_layers`` layers learnt anew.  Once the run has checkpoints
of its own it goes on from them, and the source is not read again.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

from dstrain.pipeline.deepspeech import checkpoints, trainer
from dstrain.pipeline.deepspeech.plan import Plan
from dstrain.pipeline.digests import file_digest
from dstrain.pipeline.errors import ConfigError
from dstrain.pipeline.formats.alphabet import read_labels

log = logging.getLogger("dstrain")


class Source(NamedTuple):
    directory: Path
    #: "fine_tuning" or "transfer_learning".
    mode: str
    reason: str
    #: "best" when the source has a best-dev checkpoint (release checkpoints do), else "last".
    load_train: str
    drop_source_layers: int
    #: The source was trained with --train_cudnn and this run is not.
    load_cudnn: bool


def source_alphabet(plan: Plan) -> Optional[Path]:
    t = plan.train
    if t.source_checkpoint is None:
        return None
    return t.source_alphabet or t.source_checkpoint / "alphabet.txt"


def _transfer(plan: Plan) -> Optional[bool]:
    """Whether the source's labels differ from this run's; None when either alphabet cannot be read."""
    if plan.bytes_output_mode:
        return False  # every text is UTF-8 bytes: DeepSpeech's docs say to fine-tune
    try:
        return read_labels(source_alphabet(plan)) != read_labels(plan.alphabet)
    except OSError:
        return None


def lineage(plan: Plan) -> Dict[str, Any]:
    """What fixes the shape of the checkpoints: it cannot change while they exist."""
    t = plan.train
    return {
        "n_hidden": t.n_hidden,
        "alphabet": file_digest(plan.alphabet),
        "bytes_output_mode": plan.bytes_output_mode,
        # cuDNN and mixed-precision checkpoints hold variables the other graphs lack (flags.py v0.9.3).
        "train_cudnn": t.train_cudnn,
        "automatic_mixed_precision": t.automatic_mixed_precision,
    }


def source_identity(plan: Plan) -> Optional[Dict[str, Any]]:
    """The model training starts from, by content: the data root is ./data on the host and /data in Docker."""
    t = plan.train
    if t.source_checkpoint is None:
        return None
    directory = t.source_checkpoint
    return {
        "state": file_digest(directory / checkpoints.BEST_STATE) or file_digest(directory / checkpoints.LAST_STATE),
        "alphabet": file_digest(source_alphabet(plan)),
        "drop_source_layers": t.drop_source_layers if _transfer(plan) else 0,
    }


def _describe_alphabets(theirs: List[str], ours: List[str]) -> str:
    only_theirs = [c for c in theirs if c not in ours]
    only_ours = [c for c in ours if c not in theirs]
    if not only_theirs and not only_ours:
        return "the same characters in another order, so the output layer does not match"
    parts = []
    if only_theirs:
        parts.append("only in the source: " + " ".join(repr(c) for c in only_theirs[:12]))
    if only_ours:
        parts.append("only in this run: " + " ".join(repr(c) for c in only_ours[:12]))
    return "the alphabets differ (" + "; ".join(parts) + ")"


def source(plan: Plan) -> Optional[Source]:
    """The checkpoint to start from, checked, with the mode its alphabet implies."""
    t = plan.train
    if t.source_checkpoint is None:
        if t.source_alphabet is not None:
            raise ConfigError("train.source_alphabet is set but train.source_checkpoint is not")
        return None
    directory = t.source_checkpoint
    if not directory.is_dir():
        raise ConfigError(f"train.source_checkpoint: {directory} is not a directory")
    load = "best" if checkpoints.has_best(directory) else "last" if checkpoints.has_last(directory) else None
    if load is None:
        raise ConfigError(f"train.source_checkpoint: {directory} holds no DeepSpeech checkpoint "
                          f"({checkpoints.BEST_STATE} or {checkpoints.LAST_STATE} naming an existing .index)")
    alphabet = source_alphabet(plan)
    if not alphabet.is_file():
        raise ConfigError(f"the source checkpoint's alphabet is unknown: there is no {alphabet}; "
                          "set train.source_alphabet to the alphabet it was trained with")
    flags = checkpoints.read_flags(directory)
    if flags.get("n_hidden") and int(flags["n_hidden"]) != t.n_hidden:
        raise ConfigError(f"the source checkpoint was trained with n_hidden {flags['n_hidden']} (its "
                          f"{checkpoints.FLAGS_FILE}); set train.n_hidden = {flags['n_hidden']} to start from it")
    load_cudnn = flags.get("train_cudnn") == "true" and not t.train_cudnn
    theirs, ours = read_labels(alphabet), read_labels(plan.alphabet)
    english = " (english_compatible is on: this run uses DeepSpeech's English alphabet)" \
        if plan.english_compatible else ""
    if plan.bytes_output_mode:
        mode, drop = "fine_tuning", 0
        reason = "bytes output mode: every alphabet is UTF-8 bytes, so the output layer fits as it is"
    elif theirs == ours:
        mode, drop = "fine_tuning", 0
        reason = (f"the source alphabet ({alphabet}) is this run's: {len(ours)} labels in the same order{english}; "
                  "every layer is kept")
    else:
        mode, drop = "transfer_learning", t.drop_source_layers
        reason = (f"{_describe_alphabets(theirs, ours)}{english}; the last {drop} layer(s) are learnt anew "
                  f"(train.drop_source_layers = {drop})")
    return Source(directory, mode, reason, load, drop, load_cudnn)


def mode_record(found: Optional[Source]) -> Dict[str, Any]:
    """How training starts, and why, as the metrics and the report tell it."""
    if found is None:
        return {"mode": "from_scratch", "reason": "train.source_checkpoint is not set"}
    return {"mode": found.mode, "reason": found.reason, "source_checkpoint": str(found.directory.absolute()),
            "drop_source_layers": found.drop_source_layers, "load_cudnn": found.load_cudnn}


def choose(plan: Plan, found: Optional[Source], learning_rate_used: Optional[float]) -> trainer.Start:
    """The run's own last checkpoint once there is one, else the source, else nothing; ``learning_rate_used`` is
    the configured rate last passed to DeepSpeech (None before the first invocation)."""
    t = plan.train
    directory = plan.checkpoints
    if checkpoints.has_last(directory):
        changed = learning_rate_used not in (None, t.learning_rate)
        if changed:
            log.info("the learning rate changed from %g to %g: DeepSpeech is told to use it instead of the "
                     "checkpoint's", learning_rate_used, t.learning_rate)
        return trainer.Start(directory, "last", reset_learning_rate=changed)
    if found is not None:
        # The source's saved learning rate is its own training's, not this run's.
        return trainer.Start(found.directory, found.load_train, found.drop_source_layers, found.load_cudnn, True)
    return trainer.Start(directory, "init")
