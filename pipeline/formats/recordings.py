"""Long recordings cut into training clips: each recording decoded once, its segments written as WAVs.

A recording of hours would not fit in memory as float samples, so it is
decoded block by block (libsndfile, resampled by a streaming libsoxr) into a
16 kHz mono WAV (``Recording.decoded``, deleted once cut); one libsndfile
cannot read gets audio.py's second try with sox or ffmpeg.  Each
segment is then read from that WAV and written to its own file, under a
temporary name then renamed.  Recordings are
handled in parallel, one per worker process.  A segment whose WAV exists is
not cut again, so a rerun after a crash decodes only the recordings with
segments missing.  The importer then hands the cut WAVs to
importers/kit/assemble.py, which finds them in place and only judges them.
"""
import os
import wave
from pathlib import Path
from typing import Iterable, List, NamedTuple, Tuple

from dstrain.pipeline.advice import of_one_name
from dstrain.pipeline.formats.audio import (
    SAMPLE_RATE,
    Clip,
    convert,
    header_problem,
    noted,
    partial_wav,
    refused_name,
    wav_seconds,
)
from dstrain.pipeline.formats.notes import console_notes
from dstrain.pipeline.workers import ordered

#: Seconds of source audio decoded at a time.
BLOCK_SECONDS = 30
#: How far a segment may end past the decoded audio: decoders disagree on an MP3's padding by a few frames.
ENCODER_SLACK = 0.1


class BadHeader(Exception):
    """A recording whose header is not to be believed."""


class Segment(NamedTuple):
    start: float
    end: float
    #: The WAV to write.
    wav: str


class Recording(NamedTuple):
    audio: str
    segments: Tuple[Segment, ...]
    #: Where the whole recording is decoded to, then deleted once cut.
    decoded: str


def _pcm16(samples) -> bytes:
    import numpy

    return numpy.round(numpy.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _stream_decode(src: Path, dst: Path) -> None:
    import numpy
    import soundfile
    import soxr

    tmp = partial_wav(dst)
    with soundfile.SoundFile(str(src)) as sound:
        lie = header_problem(sound.samplerate, sound.channels)
        if lie:  # resampled, a recording whose header claims 1 Hz would fill the disk
            raise BadHeader(lie)
        with open(str(tmp), "wb") as raw, wave.open(raw, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            resampler = None
            if sound.samplerate != SAMPLE_RATE:
                resampler = soxr.ResampleStream(sound.samplerate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            for block in sound.blocks(blocksize=BLOCK_SECONDS * sound.samplerate, dtype="float32", always_2d=True):
                mono = block.mean(axis=1)
                out.writeframes(_pcm16(resampler.resample_chunk(mono) if resampler else mono))
            if resampler:
                out.writeframes(_pcm16(resampler.resample_chunk(numpy.zeros(0, dtype="float32"), last=True)))
    os.replace(str(tmp), str(dst))


def _done(path: Path) -> Clip:
    return Clip(True, wav_seconds(path), path.stat().st_size)


def decode(src: Path, dst: Path) -> Clip:
    """Decode a whole recording to a 16 kHz mono WAV; never raises, a failure is a reason."""
    if dst.exists():  # whole: it was renamed into place
        return _done(dst)
    if src.exists() and src.stat().st_size:
        try:
            with console_notes() as notes:
                _stream_decode(src, dst)
            return _done(dst)._replace(notes=notes[0])
        except BadHeader as lie:
            return Clip(False, reason="bad_header", detail=str(lie))
        except Exception:  # libsndfile's errors are plain RuntimeErrors; convert() says why, or tries sox/ffmpeg
            tmp = partial_wav(dst)
            if tmp.exists():
                tmp.unlink()
    return convert((str(src), str(dst)))


def _write(dst: Path, frames: bytes) -> None:
    tmp = partial_wav(dst)
    with open(str(tmp), "wb") as raw, wave.open(raw, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(frames)
    os.replace(str(tmp), str(dst))


def cut(recording: Recording) -> List[Clip]:
    """Write every segment of one recording; one result per segment, in order.  A recording whose segments'
    names (or its decoded copy's) the file system refuses is rejected whole, with that reason; an error of the
    machine (no space, a read-only disk) is raised, and stops the work."""
    try:
        return _cut(recording)
    except (OSError, ValueError) as exc:
        if not of_one_name(exc):
            raise
        refused = refused_name(os.path.basename(recording.audio), exc)
        return [refused if not os.path.exists(s.wav) else _done(Path(s.wav)) for s in recording.segments]


def _cut(recording: Recording) -> List[Clip]:
    missing = {s.wav for s in recording.segments if not os.path.exists(s.wav)}
    if not missing:
        return [_done(Path(s.wav)) for s in recording.segments]
    decoded = Path(recording.decoded)
    whole = decode(Path(recording.audio), decoded)
    if not whole.ok:
        return [Clip(False, reason=whole.reason, detail=whole.detail) if s.wav in missing else _done(Path(s.wav))
                for s in recording.segments]
    results = []
    with wave.open(str(decoded), "rb") as source:
        length = source.getnframes()
        for segment in recording.segments:
            if segment.wav in missing:
                first, last = round(segment.start * SAMPLE_RATE), round(segment.end * SAMPLE_RATE)
                if first >= length or last > length + ENCODER_SLACK * SAMPLE_RATE:
                    detail = f"segment ends at {segment.end:.2f}s, the recording at {length / SAMPLE_RATE:.2f}s"
                    results.append(Clip(False, reason="outside_audio", detail=detail))
                    continue
                source.setpos(first)
                _write(Path(segment.wav), source.readframes(min(last, length) - first))
            results.append(_done(Path(segment.wav)))
    decoded.unlink()
    # The decoder's notes are the recording's: they go with its first segment, to be logged once.
    return [results[0]._replace(notes=whole.notes)] + results[1:] if results else results


def cut_all(recordings: List[Recording], workers: int, progress) -> Iterable[List[Clip]]:
    """Cut in a pool of ``workers`` processes, yielding each recording's results in the order given."""
    if workers <= 1 or len(recordings) < 2:
        for recording in recordings:
            yield _noted(recording, cut(recording))
            progress.update(len(recording.segments))
        return
    for recording, clips in zip(recordings, ordered(cut, recordings, workers, window=2 * workers)):
        progress.update(len(recording.segments))
        yield _noted(recording, clips)


def _noted(recording: Recording, clips: List[Clip]) -> List[Clip]:
    for clip in clips:
        noted(recording.audio, clip)
    return clips
