"""The audio of one sample in a sample database (sdb.py): Opus in DeepSpeech's own framing, or a WAV file.

Opus is a sixth of a WAV's size or less.  DeepSpeech 0.9.3 (``util/audio.py``) does not use Ogg: a
sample is its PCM length in bytes (4 bytes), sample rate (4), channels (1) and sample width (1), all
big-endian, then the audio cut into 60 ms frames, each encoded alone and stored as its length (2 bytes)
and the Opus packet.  The last frame is padded with silence and the PCM length cuts it off again.  The
encoder is libopus through opuslib, as DeepSpeech's, with its settings (application "audio", libopus's
default bit rate and complexity), so by default the bytes are those DeepSpeech's own data_set_tool.py would
write; libopus is deterministic, so the same clip always gives the same bytes.  A lower complexity
(clips.opus_complexity) encodes faster and a little less faithfully; Opus's decoder, DeepSpeech's included,
reads any (bench/opus_cost.py measures both).
"""
import io
import wave
from typing import NamedTuple, Tuple

#: What DeepSpeech trains on: 16 kHz, mono, 16-bit.
SAMPLE_RATE = 16000
#: What the wave module writes before the samples of a mono 16-bit file.
WAV_HEADER_BYTES = 44
#: 60 ms at 16 kHz, DeepSpeech's frame.
FRAME = 60 * SAMPLE_RATE // 1000
WIDTH = 2
HEADER_BYTES = 4 + 4 + 1 + 1
#: libopus's default encoder complexity (0 to 10), which DeepSpeech's writer keeps.
OPUS_COMPLEXITY = 9


class Encoding(NamedTuple):
    """What a payload is made as: ``audio`` "opus" or "wav"; Opus at ``complexity``."""

    audio: str
    complexity: int = OPUS_COMPLEXITY


def _opuslib():
    # Loaded when first needed: it finds libopus when imported, and only sample databases need it.
    try:
        import opuslib
    except Exception as exc:  # opuslib raises a plain Exception when libopus is missing
        from dstrain.pipeline.errors import DstrainError

        raise DstrainError(f"Opus is not available ({exc}): install libopus (Debian: apt-get install libopus0), "
                           "or set clips.sdb_audio = \"wav\"") from None
    return opuslib


def opus_available() -> Tuple[bool, str]:
    """Whether Opus can be encoded here, and what says so."""
    try:
        _opuslib()
    except Exception as exc:
        return False, str(exc)
    return True, "libopus found"


def encode(pcm: bytes, audio: str, complexity: int = OPUS_COMPLEXITY) -> bytes:
    """16 kHz mono 16-bit little-endian PCM as a sample's payload: ``audio`` is "opus" (at libopus's
    ``complexity``) or "wav"."""
    if audio == "wav":
        return _wav(pcm, SAMPLE_RATE)
    encoder = _opuslib().Encoder(SAMPLE_RATE, 1, "audio")
    encoder.complexity = complexity  # set even when it is the default: another libopus may default otherwise
    step = FRAME * WIDTH
    parts = [len(pcm).to_bytes(4, "big"), SAMPLE_RATE.to_bytes(4, "big"), (1).to_bytes(1, "big"),
             WIDTH.to_bytes(1, "big")]
    for start in range(0, len(pcm), step):
        chunk = pcm[start:start + step]
        packet = encoder.encode(chunk + bytes(step - len(chunk)), FRAME)
        parts += [len(packet).to_bytes(2, "big"), packet]
    return b"".join(parts)


def pcm_bytes(payload: bytes, audio: str) -> int:
    """The length of the PCM a payload holds, read from its header alone."""
    if audio == "wav":
        with wave.open(io.BytesIO(payload[:WAV_HEADER_BYTES + 64]), "rb") as wav:
            return wav.getnframes() * wav.getsampwidth() * wav.getnchannels()
    return int.from_bytes(payload[:4], "big")


def seconds(payload: bytes, audio: str) -> float:
    return pcm_bytes(payload, audio) / (WIDTH * SAMPLE_RATE)


def decode(payload: bytes, audio: str) -> Tuple[int, bytes]:
    """A payload's sample rate and its PCM (16-bit, mono as dstrain writes it)."""
    if audio == "wav":
        with wave.open(io.BytesIO(payload), "rb") as wav:
            return wav.getframerate(), wav.readframes(wav.getnframes())
    length = int.from_bytes(payload[:4], "big")
    rate = int.from_bytes(payload[4:8], "big")
    channels = payload[8]
    decoder = _opuslib().Decoder(rate, channels)
    frame = 60 * rate // 1000
    out, at = bytearray(), HEADER_BYTES
    while len(out) < length and at < len(payload):
        size = int.from_bytes(payload[at:at + 2], "big")
        out += decoder.decode(payload[at + 2:at + 2 + size], frame)
        at += 2 + size
    return rate, bytes(out[:length])


def to_wav(payload: bytes, audio: str) -> bytes:
    """A WAV file of the sample, for a player or a check."""
    if audio == "wav":
        return payload
    rate, pcm = decode(payload, audio)
    return _wav(pcm, rate)  # a rate not dstrain's is kept


def _wav(pcm: bytes, rate: int) -> bytes:
    """Mono 16-bit PCM at ``rate`` as the bytes of a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(WIDTH)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()
