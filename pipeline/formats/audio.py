"""Audio to DeepSpeech's input format: 16 kHz, mono, 16-bit PCM WAV.

Decoding (libsndfile, which reads MP3, OGG, FLAC and WAV) and resampling
(libsoxr) happen inside worker processes, so no process is started per clip.
A clip libsndfile cannot read gets one more try with sox or ffmpeg when they
are installed.  Each WAV is written to a temporary name and renamed, so a WAV
that exists is whole and a rerun after a crash converts only what is missing.

Decoding is bounded, whatever the input claims: the header's sample rate and
channels are checked before any sample is read (a WAV claiming 1 Hz would
be resampled into gigabytes), a file bigger than any clip of ``max_seconds``
can be is refused unread, and no more than ``max_seconds`` (plus a little)
is ever decoded.  A clip refused for any of these leaves no WAV behind.
"""
import hashlib
import io
import logging
import os
import shutil
import subprocess
import wave
from functools import partial
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, NamedTuple, Optional, Tuple, Union

from dstrain.pipeline import processes
from dstrain.pipeline.advice import name_refused, of_one_name
from dstrain.pipeline.formats.notes import console_notes
from dstrain.pipeline.formats.payload import SAMPLE_RATE, WAV_HEADER_BYTES, Encoding, encode
from dstrain.pipeline.workers import ordered

#: DeepSpeech computes one feature frame per 20 ms; CTC needs one per character.
FRAME_SECONDS = 0.02
#: The sample rates recordings are made at; a header outside them is lying.
MIN_RATE, MAX_RATE = 4000, 192000
MAX_CHANNELS = 8
#: The most a second of audio takes in any file: 192 kHz, two 32-bit channels, uncompressed.
MAX_BYTES_PER_SECOND = MAX_RATE * 2 * 4
#: Room beyond that for tags and cover art.
TAG_BYTES = 1 << 20
#: How far past ``max_seconds`` decoding goes: headers and decoders round a clip's length differently.
LENGTH_SLACK = 0.5
#: Smaller than the smallest audio header: no decoder is tried (sox would be started for each).
MIN_BYTES = WAV_HEADER_BYTES
#: Bytes of clips read from an archive but not yet converted, at most (Common Voice's are about 30 KB each),
#: each counted with ``JOB_BYTES`` more, so a million empty members are not all queued either.
IN_FLIGHT_BYTES = 32 << 20
JOB_BYTES = 4096
#: What a clip converted for a sample database is counted for besides, while it waits to be taken: its payload
#: comes back in memory (a WAV payload is several times its MP3).
PAYLOAD_BYTES = 64 << 10

log = logging.getLogger("dstrain")


class Clip(NamedTuple):
    ok: bool
    seconds: float = 0.0
    size: int = 0
    reason: str = ""
    detail: str = ""
    #: What the decoder wrote to the console while reading it (libmpg123's "Illegal Audio-MPEG-Header", ...).
    notes: str = ""
    #: The clip encoded for a sample database (payload.py), when that was asked instead of a WAV file.
    payload: bytes = b""


class _Refused(Exception):
    """A clip that must not be decoded (further): its reason and detail."""


def pcm_seconds(wav_size: int) -> float:
    """The length of one of our WAVs (mono, 16-bit, 16 kHz, canonical header) from its size."""
    return (wav_size - WAV_HEADER_BYTES) / (SAMPLE_RATE * 2)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


def max_bytes(max_seconds: float) -> int:
    """The biggest file a clip of ``max_seconds`` can be, in any format."""
    return int((max_seconds + LENGTH_SLACK) * MAX_BYTES_PER_SECOND) + TAG_BYTES


def read_member(handle: BinaryIO, max_seconds: float) -> Optional[bytes]:
    """An archive member's content, or None when it is bigger than any clip of ``max_seconds``: a member of
    2 GB of zeros fits in a 10 MB archive, and is never held in memory."""
    limit = max_bytes(max_seconds)
    data = handle.read(limit + 1)
    return None if len(data) > limit else data


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


def header_problem(rate: int, channels: int) -> Optional[str]:
    """Why a header that gives this sample rate and channel count is not to be believed, or None."""
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"header says {rate} Hz; recordings have {MIN_RATE} to {MAX_RATE} Hz"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"header says {channels} channels; at most {MAX_CHANNELS}"
    return None


def _decode(source, max_seconds: Optional[float]):
    """16 kHz mono 16-bit samples; raises _Refused on a lying header or a clip too long, and libsndfile's
    error when it cannot read the file at all."""
    import numpy
    import soundfile
    import soxr

    with soundfile.SoundFile(source) as sound:
        rate, channels = sound.samplerate, sound.channels
        lie = header_problem(rate, channels)
        if lie:
            raise _Refused("bad_header", lie)
        limit = -1 if max_seconds is None else int((max_seconds + LENGTH_SLACK) * rate)
        # An MP3's frame count is an estimate (a VBR file without a Xing header can say 13 s for 1.5 s),
        # so only the other formats' headers are trusted to say the length before decoding.
        if limit >= 0 and sound.format != "MP3" and sound.frames > limit:
            raise _Refused("too_long", f"header says {sound.frames / rate:.2f}s > {max_seconds}s")
        data = sound.read(frames=limit, dtype="float32", always_2d=True)
        if limit >= 0 and len(data) == limit and len(sound.read(frames=1, always_2d=True)):
            raise _Refused("too_long", f"decodes to more than {max_seconds + LENGTH_SLACK}s (> {max_seconds}s)")
    # A view for mono files (nearly all of them): mean() over a single channel costs as much as resampling.
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if rate != SAMPLE_RATE and len(mono):
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return numpy.round(numpy.clip(mono, -1.0, 1.0) * 32767).astype("<i2")


def _libsndfile_reason(exc: Exception) -> str:
    """libsndfile's own words, without the file object or path it names."""
    message = str(exc).split(": ", 1)[-1] if str(exc).startswith("Error opening") else str(exc)
    # What libsndfile says of a file no format reader accepts, when it is named .mp3 or is too short.
    if message.startswith("File does not exist or is not a regular file"):
        return "not a readable audio file (no MP3, WAV, FLAC or OGG stream found)"
    return message.rstrip(".")


def _output(dst: Path, pcm, encoding: Optional[Encoding]) -> Clip:
    """The clip as a WAV file at ``dst``, or (with an ``encoding``) as a payload for a sample database;
    ``size`` is its WAV's either way, as DeepSpeech's CSVs and sort order count it."""
    if encoding is None:
        return _write_wav(dst, pcm)
    data = pcm.tobytes() if hasattr(pcm, "tobytes") else pcm
    return Clip(True, seconds=len(data) / (2 * SAMPLE_RATE), size=WAV_HEADER_BYTES + len(data),
                payload=encode(data, *encoding))


def partial_wav(dst: Path, suffix: str = ".part") -> Path:
    """Where a WAV is written before it is renamed to ``dst``: a name of a fixed length, so that a WAV whose own
    name the file system takes is never refused for its temporary name's."""
    return dst.with_name("." + hashlib.sha256(os.fsencode(dst.name)).hexdigest()[:24] + suffix)


def _write_wav(dst: Path, pcm) -> Clip:
    tmp = partial_wav(dst)
    # Opened first: a name the file system refuses fails here, not inside the wave module, which then
    # complains again when it is collected.
    with open(str(tmp), "wb") as raw, wave.open(raw, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    os.replace(str(tmp), str(dst))
    return Clip(True, seconds=len(pcm) / SAMPLE_RATE, size=WAV_HEADER_BYTES + 2 * len(pcm))


def _external(src: Union[Path, bytes], name: str, dst: Path, tool: str, max_seconds: Optional[float]) -> None:
    """sox or ffmpeg, reading the file or (for a clip read from an archive) its bytes on stdin."""
    tmp = partial_wav(dst, ".part.wav")
    piped = isinstance(src, bytes)
    kind = os.path.splitext(name)[1].lstrip(".")
    # One sample past the limit is enough to tell a clip too long, without decoding an hour of it.
    stop = [] if max_seconds is None else [str(max_seconds + LENGTH_SLACK + 1.0 / SAMPLE_RATE)]
    if os.path.basename(tool) == "sox":
        given = (["-t", kind] if piped and kind else []) + ["-" if piped else str(src)]
        cmd = [tool, "-q", *given, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)]
        cmd += ["trim", "0", *stop] if stop else []
    else:
        cmd = [tool, "-nostdin", "-loglevel", "error", "-y", "-i", "pipe:0" if piped else str(src),
               *(["-t", stop[0]] if stop else []), "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "pcm_s16le", str(tmp)]
        if piped:
            cmd.remove("-nostdin")
    try:
        processes.run(cmd, check=True, input=src if piped else None, stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, timeout=300)
        if max_seconds is not None and wav_seconds(tmp) > max_seconds + LENGTH_SLACK:
            raise _Refused("too_long", f"decodes to more than {max_seconds + LENGTH_SLACK}s (> {max_seconds}s)")
        os.replace(str(tmp), str(dst))
    finally:
        if tmp.exists():
            tmp.unlink()


def _convert(src: Union[Path, bytes], name: str, dst: Path, max_seconds: Optional[float],
             encoding: Optional[Encoding] = None) -> Clip:
    """Decode a file, or the bytes of one read from an archive; a failure is a reason.  So is a name the file
    system cannot hold (too long, bytes it refuses): an error of the machine (no space, a read-only disk) is
    raised, and stops the work.  With an ``encoding``, ``dst`` is only where sox or ffmpeg may write
    meanwhile: the clip comes back as a payload."""
    try:
        return _decoded(src, name, dst, max_seconds, encoding)
    except (OSError, ValueError) as exc:
        if not of_one_name(exc):
            raise
        return refused_name(name, exc)


def refused_name(name: str, exc: BaseException) -> Clip:
    """The clip of a row whose name the file system refused, as a reason."""
    return Clip(False, reason="invalid_path", detail=f"{name!r} cannot be a file here: {name_refused(exc)}")


def _decoded(src: Union[Path, bytes], name: str, dst: Path, max_seconds: Optional[float],
             encoding: Optional[Encoding]) -> Clip:
    """Decode a file, or the bytes of one read from an archive; never raises, a failure is a reason."""
    size = len(src) if isinstance(src, bytes) else src.stat().st_size
    if size == 0:
        return Clip(False, reason="empty_audio", detail="0 bytes")
    if max_seconds is not None and size > max_bytes(max_seconds):
        return Clip(False, reason="too_large",
                    detail=f"{size} bytes; no clip of {max_seconds}s takes more than {max_bytes(max_seconds)}")
    if size < MIN_BYTES:
        return Clip(False, reason="undecodable_audio", detail=f"{size} bytes, smaller than any audio header")
    with console_notes() as notes:
        try:
            pcm = _decode(io.BytesIO(src) if isinstance(src, bytes) else str(src), max_seconds)
            problem = None
        except _Refused as refusal:
            return Clip(False, reason=refusal.args[0], detail=refusal.args[1])
        except Exception as exc:  # libsndfile's errors are plain RuntimeErrors with a message
            problem = "libsndfile: " + _libsndfile_reason(exc)
    if problem is not None:
        tool = external_decoder()
        if tool is None:
            return Clip(False, reason="undecodable_audio", detail=problem, notes=notes[0])
        try:
            _external(src, name, dst, tool, max_seconds)
        except _Refused as refusal:
            return Clip(False, reason=refusal.args[0], detail=refusal.args[1], notes=notes[0])
        except (subprocess.SubprocessError, OSError) as ext:
            stderr = (getattr(ext, "stderr", b"") or b"").decode(errors="replace")
            # sox names itself by its full path, and stdin as `-'.
            stderr = stderr.replace(tool + " ", "").replace("`-'", f"`{name}'")
            said = _tidy(stderr, src if isinstance(src, Path) else Path(name)) or "failed too"
            return Clip(False, reason="undecodable_audio",
                        detail=f"{problem}; {os.path.basename(tool)}: {said}", notes=notes[0])
        if encoding is None:
            return _done(dst)._replace(notes=notes[0])
        with wave.open(str(dst), "rb") as wav:
            pcm = wav.readframes(wav.getnframes())
        dst.unlink()
    if len(pcm) == 0:
        return Clip(False, reason="empty_audio", detail="decodes to no samples", notes=notes[0])
    return _output(dst, pcm, encoding)._replace(notes=notes[0])


def convert_bytes(job: Tuple[str, Optional[bytes], str], max_seconds: Optional[float] = None,
                  encoding: Optional[Encoding] = None) -> Clip:
    """Convert one clip read from an archive (name, content or None when too big to read, destination)."""
    name, data, dst = job
    if data is None:
        return Clip(False, reason="too_large", detail=f"over {max_bytes(max_seconds or 0)} bytes; no clip of "
                                                      f"{max_seconds}s takes that much")
    return _convert(data, os.path.basename(name), Path(dst), max_seconds, encoding)


def convert(job: Tuple[str, str], max_seconds: Optional[float] = None, encoding: Optional[Encoding] = None) -> Clip:
    """Convert one clip (source file, destination WAV); a failure is a reason, as for ``_convert``.  A WAV
    already at the destination is the clip, converted before a crash; with an ``encoding`` there is none."""
    src, dst = Path(job[0]), Path(job[1])
    try:
        if encoding is None and _exists(dst):
            return _done(dst)
        if not _exists(src):
            return Clip(False, reason="missing_audio", detail="no such file: " + src.name)
    except (OSError, ValueError) as exc:
        if not of_one_name(exc):
            raise
        return refused_name(src.name, exc)
    return _convert(src, src.name, dst, max_seconds, encoding)


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a name the file system refuses raises, as Path.exists does only before 3.12."""
    try:
        os.stat(str(path))
    except FileNotFoundError:
        return False
    return True


def _tidy(message: str, src: Path) -> str:
    """One short line, without the machine-specific directory."""
    return " ".join(message.replace(str(src), src.name).split())[:160]


def _done(dst: Path) -> Clip:
    return Clip(True, seconds=wav_seconds(dst), size=dst.stat().st_size)


def noted(name: str, clip: Clip) -> Clip:
    """Log the decoder's console notes with the clip they are about: the stage log keeps them, the console
    shows them only with -v."""
    if clip.notes:
        log.debug("%s: the decoder said: %s", name, clip.notes)
    return clip


def _load_decoders() -> None:
    """Loaded once before the workers start, the decoding libraries are inherited by every forked worker."""
    import numpy  # noqa: F401
    import soundfile  # noqa: F401
    import soxr  # noqa: F401


def convert_stream(jobs: Iterable[Tuple[str, Optional[bytes], str]], workers: int, progress,
                   max_seconds: float, encoding: Optional[Encoding] = None) -> Iterator[Tuple[str, Clip]]:
    """(name, clip) for clips read one by one from an archive, converted as they arrive.

    At most ``IN_FLIGHT_BYTES`` of clips are held in memory: the archive is read further only as results
    come back.
    """
    if workers <= 1:
        for job in jobs:
            yield job[0], noted(job[0], convert_bytes(job, max_seconds, encoding))
            progress.update(1)
        return
    _load_decoders()
    for name, clip in ordered(partial(_named_convert_bytes, max_seconds=max_seconds, encoding=encoding), jobs,
                              workers, window=8 * workers, chunk=4, cost=partial(_cost, encoding=encoding),
                              budget=IN_FLIGHT_BYTES):
        progress.update(1)
        yield name, noted(name, clip)


def _named_convert_bytes(job: Tuple[str, Optional[bytes], str], max_seconds: float,
                         encoding: Optional[Encoding]) -> Tuple[str, Clip]:
    return job[0], convert_bytes(job, max_seconds, encoding)


def _cost(job: Tuple[str, Optional[bytes], str], encoding: Optional[Encoding]) -> int:
    return JOB_BYTES + len(job[1] or b"") + (PAYLOAD_BYTES if encoding else 0)


def convert_all(jobs: Iterable[Tuple[str, str]], count: int, workers: int, progress, max_seconds: float,
                encoding: Optional[Encoding] = None) -> Iterator[Tuple[Tuple[str, str], Clip]]:
    """(job, clip) for ``count`` jobs converted in a pool of ``workers`` processes, in the order of ``jobs``;
    the jobs are read as the pool needs them, so they may come from a generator."""
    work = partial(convert, max_seconds=max_seconds, encoding=encoding)
    if workers <= 1 or count < 2:
        for job in jobs:
            yield job, noted(job[0], work(job))
            progress.update(1)
        return
    chunk = max(1, min(64, count // (workers * 8)))
    _load_decoders()
    for job, clip in ordered(partial(_paired_convert, max_seconds=max_seconds, encoding=encoding), jobs, workers,
                             window=4 * workers, chunk=chunk):
        progress.update(1)
        yield job, noted(job[0], clip)


def _paired_convert(job: Tuple[str, str], max_seconds: float,
                    encoding: Optional[Encoding]) -> Tuple[Tuple[str, str], Clip]:
    """The job with its clip: the jobs may come from a generator, read once."""
    return job, convert(job, max_seconds, encoding)
