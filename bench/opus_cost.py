"""Where an import to sample databases of Opus spends its time, and what Opus's settings trade.

    .venv/bin/python bench/opus_cost.py [--repeat 5]

For a few espeak-ng sentences shipped as Common Voice ships them (MP3, 48 kHz), it prints the CPU time per
second of audio, on one core, of each step of a clip's conversion: decoding the MP3 and resampling it to
16 kHz, writing it as a WAV, and encoding it as Opus with libopus at several settings: DeepSpeech's own
(application "audio", libopus's default complexity 9), lower complexities, and the other applications.
For each setting it also prints the bytes per hour, the time DeepSpeech's reader takes to decode it again
(its first training epoch pays that), and how far the features DeepSpeech computes move: the mean
difference, in dB, of a log-mel spectrum (32 ms windows every 20 ms, as DeepSpeech's) between the clip
and its decoded Opus, over the frames that are not silence, once the codec's delay is taken
out.  DeepSpeech's reader decodes any of them:
Opus's decoder does not depend on how the encoder searched.

Last, for a clip of the length given (--seconds) and the CPU dstrain itself takes per clip in the import
(--leader-ms, printed by bench/scale.py), the most clips per second 2 cores and 16 cores could import at
each setting: dstrain reads the archive and records each clip on one core, its workers convert on all.
"""
import argparse
import io
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dstrain.pipeline.formats import payload  # noqa: E402
from dstrain.pipeline.formats.audio import _decode  # noqa: E402
from tests.fixtures.speech import encode, espeak  # noqa: E402

SENTENCES = ["le chat dort sur le canapé", "nous irons à la plage demain matin", "il pleut depuis ce matin",
             "elle lit un livre près de la fenêtre", "les enfants jouent dans le jardin", "la mer est calme ce soir",
             "mon frère repeint la porte bleue", "la voisine cherche un panier de pommes"]
#: (application, complexity): None is libopus's default, 9.  The first is DeepSpeech's.
SETTINGS = [("audio", None), ("audio", 5), ("audio", 3), ("audio", 0), ("voip", 5), ("voip", 0),
            ("restricted_lowdelay", None), ("restricted_lowdelay", 0)]


def mp3s(work: Path) -> List[Tuple[bytes, bytes]]:
    """Each sentence as Common Voice ships it, and as espeak-ng said it (resampled to 16 kHz)."""
    import numpy
    import soxr

    out = []
    for n, text in enumerate(SENTENCES):
        pcm, rate = espeak(text, "fr", 140 + 10 * (n % 4))
        said = soxr.resample(numpy.frombuffer(pcm, dtype="<i2"), rate, payload.SAMPLE_RATE)
        mp3 = work / f"{n}.mp3"
        encode(pcm, rate, mp3, resample=48000, kbps=48)
        out.append((mp3.read_bytes(), said.astype("<i2").tobytes()))
    return out


def opus(pcm: bytes, application: str, complexity) -> bytes:
    """payload.encode's Opus framing, with another application or complexity."""
    import opuslib

    encoder = opuslib.Encoder(payload.SAMPLE_RATE, 1, application)
    if complexity is not None:
        encoder.complexity = complexity
    step = payload.FRAME * payload.WIDTH
    parts = [len(pcm).to_bytes(4, "big"), payload.SAMPLE_RATE.to_bytes(4, "big"), b"\x01\x02"]
    for start in range(0, len(pcm), step):
        chunk = pcm[start:start + step]
        packet = encoder.encode(chunk + bytes(step - len(chunk)), payload.FRAME)
        parts += [len(packet).to_bytes(2, "big"), packet]
    return b"".join(parts)


def encode_all(pcms: List[bytes], application: str, complexity) -> None:
    for pcm in pcms:
        opus(pcm, application, complexity)


def decode_all(encoded: List[bytes]) -> None:
    for data in encoded:
        payload.decode(data, "opus")


def fastest(work: Callable[[], object], repeat: int) -> float:
    """The shortest of ``repeat`` runs, in seconds: other work on a shared machine only slows a run down."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def log_mel(pcm: bytes):
    """A log-mel spectrum (dB) of 16 kHz PCM: 32 ms Hann windows every 20 ms, 40 bands up to 8 kHz."""
    import numpy

    x = numpy.frombuffer(pcm, dtype="<i2").astype("float64") / 32768
    window, step = 512, 320
    frames = numpy.lib.stride_tricks.sliding_window_view(x, window)[::step] * numpy.hanning(window)
    power = numpy.abs(numpy.fft.rfft(frames, axis=1)) ** 2
    mel = lambda hz: 2595 * numpy.log10(1 + hz / 700)  # noqa: E731
    edges = 700 * (10 ** (numpy.linspace(mel(20), mel(8000), 42) / 2595) - 1)
    bins = numpy.fft.rfftfreq(window, 1 / payload.SAMPLE_RATE)
    bank = numpy.array([numpy.clip(numpy.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
                        for lo, mid, hi in zip(edges, edges[1:], edges[2:])])
    return 10 * numpy.log10(power @ bank.T + 1e-10)


def distance(reference: bytes, decoded: bytes) -> Tuple[float, int]:
    """Mean |dB| difference between two clips' log-mel spectra over the frames within 40 dB of the loudest, each
    band floored 60 dB below the loudest (as a recording's noise floor would), once the decoded clip is moved
    back by the codec's delay (up to 40 ms; DeepSpeech does not, but a shift changes nothing CTC learns)."""
    import numpy

    a_pcm = numpy.frombuffer(reference, dtype="<i2").astype("float64")
    b_pcm = numpy.frombuffer(decoded, dtype="<i2").astype("float64")
    lags = range(0, 40 * payload.SAMPLE_RATE // 1000)
    lag = max(lags, key=lambda n: float(numpy.dot(a_pcm[:len(a_pcm) - n], b_pcm[n:])))
    a, b = log_mel(reference[:len(reference) - 2 * lag]), log_mel(decoded[2 * lag:])
    floor = a.max() - 60
    a, b = numpy.maximum(a, floor), numpy.maximum(b, floor)
    loud = a.max(axis=1) > a.max() - 40
    return float(numpy.abs(a[loud] - b[loud]).mean()), int(loud.sum())


def mean(moved: List[Tuple[float, int]]) -> float:
    """distance()s averaged over the frames they count."""
    return sum(d * n for d, n in moved) / sum(n for _, n in moved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.5, help="a clip's length, for the clips/s at best "
                        "(Common Voice's clips average about 4.5 s; the benchmarks' espeak clips about 2.5 s)")
    parser.add_argument("--leader-ms", type=float, default=1.2,
                        help="dstrain's own CPU per clip in the import (bench/scale.py prints it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dstrain-opus-") as work:
        sources, originals = zip(*mp3s(Path(work)))
    pcms = [_decode(io.BytesIO(mp3), 30.0).tobytes() for mp3 in sources]
    audio = sum(len(pcm) for pcm in pcms) / (2 * payload.SAMPLE_RATE)
    print(f"{len(pcms)} clips, {audio:.1f} s of audio; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"CPU ms per second of audio, on one core, fastest of {args.repeat}:")
    decode = fastest(lambda: [_decode(io.BytesIO(mp3), 30.0) for mp3 in sources], args.repeat) / audio
    wav = fastest(lambda: [payload.encode(pcm, "wav") for pcm in pcms], args.repeat) / audio
    print(f"  MP3 decoded and resampled to 16 kHz   {1000 * decode:6.2f} ms")
    moved = [distance(said, pcm[:len(said)]) for said, pcm in zip(originals, pcms)]
    print(f"  (the MP3 itself, 48 kbit/s, against what espeak-ng said: features move {mean(moved):.2f} dB)")
    print(f"  written as a WAV                      {1000 * wav:6.2f} ms   {3600 * 32000 / 1e6:6.1f} MB/h")
    rows = []
    for application, complexity in SETTINGS:
        encoded = [opus(pcm, application, complexity) for pcm in pcms]
        spent = fastest(partial(encode_all, pcms, application, complexity), args.repeat) / audio
        back = fastest(partial(decode_all, encoded), args.repeat) / audio
        moved = [distance(pcm, payload.decode(e, "opus")[1]) for pcm, e in zip(pcms, encoded)]
        per_hour = sum(map(len, encoded)) / audio * 3600
        name = f"{application}, complexity {9 if complexity is None else complexity}"
        name += " (DeepSpeech's)" if (application, complexity) == SETTINGS[0] else ""
        rows.append((name, spent))
        print(f"  Opus {name:35} {1000 * spent:6.2f} ms   {per_hour / 1e6:6.1f} MB/h; decoded again in "
              f"{1000 * back:5.2f} ms; features move {mean(moved):.2f} dB")
    print(f"\nat best, {args.seconds:.1f} s clips, dstrain's own {args.leader_ms:.2f} ms per clip (clips/s):")
    for name, spent in [("WAV", wav)] + rows:
        workers = args.seconds * (decode + spent) * 1000
        at_best = [min(1000 / args.leader_ms, 1000 * cores / (args.leader_ms + workers)) for cores in (2, 16)]
        print(f"  {name:48} 2 cores {at_best[0]:5.0f}   16 cores {at_best[1]:5.0f}")


if __name__ == "__main__":
    main()
