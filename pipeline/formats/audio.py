"""Audio to DeepSpeech's input format: 16 kHz, mono, 16-bit PCM WAV.

Decoding (libsndfile, which reads MP3, OGG, FLAC and WAV) and resampling
(libsoxr) happen inside worker processes, so no process is started per clip.
A clip libsndfile cannot read gets one more try with sox or ffmpeg when they
are installed.  Each WAV is written to a temporary name and renamed, so a WAV
that exists is whole and a rerun after a crash converts only what is missing.
"""
import io
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Iterable, Iterator, List, NamedTuple, Optional, Tuple

SAMPLE_RATE = 16000
#: DeepSpeech computes one feature frame per 20 ms; CTC needs one per character.
FRAME_SECONDS = 0.02
#: What the wave module writes before the samples of a mono 16-bit file.
WAV_HEADER_BYTES = 44
#: Clips read from an archive but not yet converted, at most (about 30 KB each for Common Voice).
IN_FLIGHT = 256


class Clip(NamedTuple):
    ok: bool
    seconds: float = 0.0
    size: int = 0
    reason: str = ""
    detail: str = ""


def pcm_seconds(wav_size: int) -> float:
    """The length of one of our WAVs (mono, 16-bit, 16 kHz, canonical header) from its size."""
    return (wav_size - WAV_HEADER_BYTES) / (SAMPLE_RATE * 2)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


def external_decoder() -> Optional[str]:
    return shutil.which("sox") or shutil.which("ffmpeg")


def decoder_report() -> Tuple[bool, str]:
    """Whether MP3 can be decoded here, and how."""
    import soundfile

    mp3 = "MP3" in soundfile.available_formats()
    tool = external_decoder()
    parts = ["libsndfile {} ({})".format(soundfile.__libsndfile_version__, "MP3 ok" if mp3 else "no MP3")]
    parts.append("fallback: " + (tool or "none (sox or ffmpeg)"))
    return mp3 or tool is not None, "; ".join(parts)


def _decode(src: Path):
    import numpy
    import soundfile
    import soxr

    data, rate = soundfile.read(src if isinstance(src, io.BytesIO) else str(src), dtype="float32",
                                always_2d=True)
    # A view for mono files (nearly all of them): mean() over a single channel costs as much as resampling.
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if rate != SAMPLE_RATE and len(mono):
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return numpy.round(numpy.clip(mono, -1.0, 1.0) * 32767).astype("<i2")


def _write_wav(dst: Path, pcm) -> Clip:
    tmp = dst.with_name(dst.name + ".part")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    os.replace(str(tmp), str(dst))
    return Clip(True, seconds=len(pcm) / SAMPLE_RATE, size=WAV_HEADER_BYTES + 2 * len(pcm))


def _external(src: Path, dst: Path, tool: str) -> None:
    tmp = dst.with_name(dst.name + ".part.wav")
    if os.path.basename(tool) == "sox":
        cmd = [tool, "-q", str(src), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)]
    else:
        cmd = [tool, "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
               "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "pcm_s16le", str(tmp)]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        os.replace(str(tmp), str(dst))
    finally:
        if tmp.exists():
            tmp.unlink()


def convert_bytes(job: Tuple[str, bytes, str]) -> Clip:
    """Convert one clip read from an archive (name, content, destination); never raises."""
    name, data, dst = job
    if not data:
        return Clip(False, reason="empty_audio", detail="0 bytes")
    try:
        pcm = _decode(io.BytesIO(data))
    except Exception:  # let the file-based path try the external decoders and word the reason
        with tempfile.NamedTemporaryFile(suffix="-" + os.path.basename(name), dir=os.path.dirname(dst)) as tmp:
            tmp.write(data)
            tmp.flush()
            clip = convert((tmp.name, dst))
        return clip._replace(detail=clip.detail.replace(os.path.basename(tmp.name), os.path.basename(name)))
    if len(pcm) == 0:
        return Clip(False, reason="empty_audio", detail="decodes to no samples")
    return _write_wav(Path(dst), pcm)


def convert(job: Tuple[str, str]) -> Clip:
    """Convert one clip; never raises, a failure is a reason."""
    src, dst = Path(job[0]), Path(job[1])
    if dst.exists():
        return _done(dst)
    if not src.exists():
        return Clip(False, reason="missing_audio", detail="no such file: " + src.name)
    if src.stat().st_size == 0:
        return Clip(False, reason="empty_audio", detail="0 bytes")
    try:
        pcm = _decode(src)
    except Exception as exc:  # libsndfile's errors are plain RuntimeErrors with a message
        problem = _tidy(str(exc), src)
        tool = external_decoder()
        if tool is None:
            return Clip(False, reason="undecodable_audio", detail=problem)
        try:
            _external(src, dst, tool)
        except (subprocess.SubprocessError, OSError) as ext:
            stderr = (getattr(ext, "stderr", b"") or b"").decode(errors="replace")
            return Clip(False, reason="undecodable_audio", detail=problem + "; " + _tidy(stderr, src))
        return _done(dst)
    if len(pcm) == 0:
        return Clip(False, reason="empty_audio", detail="decodes to no samples")
    return _write_wav(dst, pcm)


def _tidy(message: str, src: Path) -> str:
    """One short line, without the machine-specific directory."""
    return " ".join(message.replace(str(src), src.name).split())[:160]


def _done(dst: Path) -> Clip:
    return Clip(True, seconds=wav_seconds(dst), size=dst.stat().st_size)


def _pool(workers: int):
    # Loaded once here, the decoding libraries are inherited by every forked worker.
    import numpy  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    return multiprocessing.get_context("fork").Pool(workers)


def convert_stream(jobs: Iterable[Tuple[str, bytes, str]], workers: int, progress) -> Iterator[Tuple[str, Clip]]:
    """(name, clip) for clips read one by one from an archive, converted as they arrive.

    At most ``IN_FLIGHT`` clips are held in memory: the pool's feeder thread
    waits for results before it reads further into the archive.
    """
    if workers <= 1:
        for job in jobs:
            yield job[0], convert_bytes(job)
            progress.update(1)
        return
    room = threading.BoundedSemaphore(IN_FLIGHT)

    def bounded():
        for job in jobs:
            room.acquire()
            yield job

    with _pool(workers) as pool:
        for name, clip in pool.imap(_named_convert_bytes, bounded(), chunksize=4):
            room.release()
            progress.update(1)
            yield name, clip


def _named_convert_bytes(job: Tuple[str, bytes, str]) -> Tuple[str, Clip]:
    return job[0], convert_bytes(job)


def convert_all(jobs: List[Tuple[str, str]], workers: int, progress) -> Iterable[Clip]:
    """Convert in a pool of ``workers`` processes, yielding results in the order of ``jobs``."""
    if workers <= 1 or len(jobs) < 2:
        for job in jobs:
            yield convert(job)
            progress.update(1)
        return
    chunk = max(1, min(64, len(jobs) // (workers * 8)))
    with _pool(workers) as pool:
        for clip in pool.imap(convert, jobs, chunksize=chunk):
            progress.update(1)
            yield clip
