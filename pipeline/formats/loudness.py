"""How loud a clip is, 20 ms at a time: what clean uses to find silent clips and impossible speaking rates."""
import math
import wave
from pathlib import Path
from typing import NamedTuple, Union

from dstrain.pipeline.formats.audio import FRAME_SECONDS, SAMPLE_RATE


class Activity(NamedTuple):
    """Where one of our WAVs is louder than a threshold, measured over 20 ms windows."""

    #: Seconds of windows louder than the threshold.
    loud_seconds: float
    #: From the first loud window to the end of the last: the speech, without the silence around it.
    span_seconds: float
    #: The level of the loudest window, in dB below full scale.
    loudest_dbfs: float


def activity(clip: Union[Path, bytes], threshold_dbfs: float) -> Activity:
    """How much of a clip is louder than ``threshold_dbfs``: a 16-bit WAV file, or its 16-bit PCM (from a sample
    database); it holds at most ``max_duration`` seconds."""
    import numpy

    if isinstance(clip, bytes):
        pcm = numpy.frombuffer(clip, dtype="<i2")
    else:
        with wave.open(str(clip), "rb") as handle:
            pcm = numpy.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    size = int(SAMPLE_RATE * FRAME_SECONDS)
    count = len(pcm) // size
    if count == 0:
        return Activity(0.0, 0.0, float("-inf"))
    windows = pcm[:count * size].reshape(count, size).astype("float32")
    # Mean squares compared with the threshold's, so only the loudest window needs a logarithm: clean
    # measures every clip of the corpus.
    power = numpy.einsum("ij,ij->i", windows, windows) / (size * 32768.0 ** 2)
    loud = numpy.flatnonzero(power > 10 ** (threshold_dbfs / 10))
    span = (int(loud[-1]) - int(loud[0]) + 1) * FRAME_SECONDS if len(loud) else 0.0
    loudest = 10 * math.log10(max(float(power.max()), 1e-12))
    return Activity(len(loud) * FRAME_SECONDS, span, loudest)


