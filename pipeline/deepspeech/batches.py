"""The clips DeepSpeech 0.9.3 never trains on, and a batch size that leaves out fewer.

Its training set is sorted by file size (``util/sample_collections.py``, smallest first unless
``--reverse_train``) and cut into batches with ``window(batch_size, drop_remainder=True)``
(``util/feeding.py``): the last, incomplete batch is dropped, so the ``clips % batch_size`` longest clips
are left out of every epoch.
"""
from typing import List, NamedTuple, Optional, Sequence

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
