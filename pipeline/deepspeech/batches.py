"""Batch sizes against the sets they cut: the size a set allows, the clips DeepSpeech 0.9.3 never trains on,
and whether a training took any step at all.

Its training set is sorted by file size (``util/sample_collections.py``, smallest first unless
``--reverse_train``) and cut into batches with ``window(batch_size, drop_remainder=train_phase)``
(``util/feeding.py``).  In training the last, incomplete batch is dropped, so the ``clips % batch_size``
longest clips are left out of every epoch, and a batch size larger than the set leaves out all of it: no step
is taken, the epoch's loss is 0.0, and nothing is learnt.  The dev and test sets keep their last batch.

So a batch size larger than its set is lowered to the set's size (``fit``): one step per epoch instead of
none, never more memory than was asked for.  docs/training.md says why this rather than a refusal.
"""
from typing import Any, List, Mapping, NamedTuple, Optional, Sequence

#: A 16 kHz mono 16-bit WAV: bytes of audio per second, after its 44-byte header.
BYTES_PER_SECOND = 16000 * 2
WAV_HEADER = 44


class LeftOut(NamedTuple):
    clips: int
    total: int
    seconds: float
    batch_size: int
    #: A batch size near the configured one that leaves out fewer clips; None when none does.
    better: Optional[int]
    better_left_out: int


class Fitted(NamedTuple):
    """The batch size used for a set of ``clips`` clips: the one ``asked`` for, or the set's size if smaller."""

    asked: int
    used: int
    clips: int

    @property
    def lowered(self) -> bool:
        return self.used < self.asked

    @property
    def steps(self) -> int:
        """Training steps per epoch: DeepSpeech drops the last incomplete batch."""
        return self.clips // self.used


def fit(asked: int, clips: int) -> Fitted:
    """The batch size for a set of ``clips`` clips (at least one) when ``asked`` is configured."""
    return Fitted(asked, max(1, min(asked, clips)), clips)


def clips(count: int) -> str:
    return f"{count} clip" + ("" if count == 1 else "s")


#: The sets a training's account fits a batch size to (progress.py's "batches"), and what the user calls them.
SETS = {"train": "training", "dev": "dev"}


def why_not(configured: int, found: Fitted, what: str) -> Optional[str]:
    """Why the ``what`` set's batch size is not the ``configured`` one, for config.json and the model card; None
    when it is."""
    why = []
    if found.asked != configured:
        why.append(f"halved from {configured} to {found.asked} after running out of memory")
    if found.lowered:
        why.append(f"lowered from {found.asked}: the {what} set has {clips(found.clips)}")
    return "; ".join(why) or None


def describe_lowered(found: Fitted) -> str:
    """The warning for a training batch size larger than the training set."""
    return (f"train_batch_size {found.asked} is more than the training set ({clips(found.clips)}): DeepSpeech drops "
            "each epoch's last incomplete batch, so it would take no step and learn nothing. Training uses batches "
            f"of {found.used} instead (one step per epoch; config.json and the model card say so). A "
            "smaller train.train_batch_size gives more steps per epoch.")


def took_no_step(epochs: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the training whose epochs these are (progress.py's records) never took a step.  Each epoch
    counts its steps; an account written before they were counted shows it by its training loss: exactly 0,
    DeepSpeech's value for an epoch without a step (a CTC loss is never 0)."""
    return bool(epochs) and all(epoch["steps"] == 0 if "steps" in epoch else epoch.get("train_loss") == 0.0
                                for epoch in epochs)


def seconds(wav_filesize: int) -> float:
    return max(0, wav_filesize - WAV_HEADER) / BYTES_PER_SECOND


def left_out(sizes: Sequence[int], batch_size: int) -> Optional[LeftOut]:
    """What ``batch_size`` leaves out of the training clips of these file sizes; None when nothing."""
    count = len(sizes) % batch_size if len(sizes) >= batch_size else len(sizes)
    if count == 0:
        return None
    longest: List[int] = sorted(sizes)[len(sizes) - count:]
    better, better_count = _better(len(sizes), batch_size)
    return LeftOut(count, len(sizes), sum(seconds(s) for s in longest), batch_size, better, better_count)


def _better(clips: int, batch_size: int):
    """Of the sizes from half to the configured one (a smaller batch fits the same memory), the one leaving
    out fewest clips, the largest among equals."""
    best, best_count = None, clips % batch_size if clips >= batch_size else clips
    for size in range(batch_size - 1, max(1, batch_size // 2) - 1, -1):
        count = clips % size if clips >= size else clips
        if count < best_count:
            best, best_count = size, count
    return best, best_count


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.1f} minutes" if seconds < 7200 else f"{seconds / 3600:.1f} hours"


def describe(found: LeftOut) -> str:
    text = (f"train_batch_size {found.batch_size} leaves {found.clips} of the {found.total} training clips "
            f"({duration(found.seconds)} of audio, the longest ones) out of every epoch: DeepSpeech 0.9.3 "
            "sorts the clips by size and drops the last incomplete batch, so the model never learns from them.")
    if found.better is not None:
        text += (f" train_batch_size = {found.better} would leave out {found.better_left_out}"
                 + (" (none)." if found.better_left_out == 0 else "."))
    return text
