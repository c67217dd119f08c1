"""Small corpora in the real formats of CCPMF and Multilingual LibriSpeech, with espeak-ng speech.

Each corpus comes with what the importer must do with every piece of it, so
tests assert exactly what is kept, in which split, and why the rest is
rejected.
"""
import io
import random
import subprocess
import tarfile
import tempfile
import wave
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

KEPT = "kept"
#: The split shares the tests use, so a few speakers (days, for CCPMF) fill all three splits.
SHARES = (0.5, 0.25, 0.25)


def espeak(text: str, voice: str, speed: int = 175) -> Tuple[bytes, int]:
    """espeak-ng speech as 16-bit mono PCM, and its sample rate."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", out.name, text], check=True)
        with wave.open(out.name) as wav:
            return wav.readframes(wav.getnframes()), wav.getframerate()


def noise(seed: str, size: int = 3000) -> bytes:
    return bytes(random.Random(seed).getrandbits(8) for _ in range(size))


# CCPMF ----------------------------------------------------------------------------------------------------------

CCPMF_ROOT = "transcriptionsXML_audioMP3_MEFR_CCPMF_2012-2020"
CCPMF_ARCHIVE = "transcriptionsxml_audiomp3_mefr_ccpmf_2012-2020_2.zip"
#: The French max_duration for CCPMF.
CCPMF_MAX = 4.5


class Row(NamedTuple):
    text: str
    #: What espeak says; defaults to the text.
    spoken: Optional[str] = None
    speed: int = 175
    #: Replaces the row's XML attributes (broken rows); the row then has no audio.
    attrs: Optional[Dict[str, str]] = None
    #: Silence before the row, in seconds: 0.1 joins it to the row before (max_gap 0.3), 1.0 does not.
    gap: float = 1.0


class Segment(NamedTuple):
    rows: Tuple[Row, ...]
    #: KEPT, or the reason the importer must give.
    outcome: str
    #: The transcript expected in the CSV, for a kept segment.
    label: str = ""


class Recording(NamedTuple):
    folder: str
    xml: Optional[str]
    mp3: Optional[str]
    segments: Tuple[Segment, ...]
    #: "speech" or "corrupt" (random bytes).
    audio: str = "speech"
    #: The reason the whole file is rejected, "" when each segment has its own.
    rejected: str = ""


def _one(text: str, outcome: str = "", label: str = "", **row) -> Segment:
    return Segment((Row(text, **row),), outcome, label)


CCPMF = [
    # Day 20190312 (train), two recordings; the MP3s are not named exactly like their XMLs.
    Recording("2019", "20190312_Conference_Budget_1_wmv_0_fre_minefi.xml", "20190312_Conference_Budget_1.mp3", (
        Segment((Row("Bonjour à tous."), Row("Merci d'être venus.", gap=0.1)), KEPT,
                "bonjour à tous merci d'être venus"),
        _one("Le budget atteint 3 000 euros.", KEPT, "le budget atteint trois mille euros",
             spoken="le budget atteint trois mille euros"),
        _one("Nous parlons du B2B.", "invalid_label", spoken="nous parlons du bé to bé"),
        _one("Cette ligne n'a pas de durée.", "unreadable_row", attrs={"timestamp": "30.0"}),
        _one("La séance est levée.", KEPT, "la séance est levée"),
        _one("", "empty_label", spoken="euh"),
        _one("Cette phrase est bien trop longue pour le peu de son qui la porte dans cet enregistrement.",
             "too_short", spoken="oui", speed=400),
        _one("Une phrase lente.", "too_long", spoken="une phrase lente, lente, très lente, qui dure vraiment",
             speed=80),
        _one("Cette ligne est après la fin.", "outside_audio", attrs={"timestamp": "900.0", "timedur": "1.5"}),
    )),
    Recording("2019", "20190312_Conference_Budget_2_wmv_0_fre_minefi.xml", "20190312_Conference_Budget_2.mp3", (
        # Close enough to join, but together longer than max_duration: two segments.
        _one("Le ministre présente aujourd'hui les grandes orientations du budget.", KEPT,
             "le ministre présente aujourd'hui les grandes orientations du budget"),
        _one("Les régions et les communes seront toutes consultées.", KEPT,
             "les régions et les communes seront toutes consultées", gap=0.1),
    )),
    # Day 20180606 (dev): the MP3 has the XML's name.
    Recording("2018", "20180606_Bilan.xml", "20180606_Bilan.mp3", (
        _one("La croissance atteint 2,5 %.", KEPT, "la croissance atteint deux virgule cinq pour cent",
             spoken="la croissance atteint deux virgule cinq pour cent"),
        _one("Le chômage recule.", KEPT, "le chômage recule"),
    )),
    # Day 20181210 (test).
    Recording("2018", "20181210_EtatsGeneraux-1000_fre_750_und.xml", "20181210_EtatsGeneraux-1000.mp3", (
        _one("Les états généraux commencent.", KEPT, "les états généraux commencent"),
        _one("Nous écoutons les citoyens.", KEPT, "nous écoutons les citoyens"),
    )),
    # A second transcript of the same name, in another folder.
    Recording("2018_copie", "20180606_Bilan.xml", "20180606_Bilan.mp3", (_one("Le chômage recule."),),
              audio="corrupt", rejected="duplicate"),
    Recording("2016", "20160401_Orphelin.xml", None, (_one("Aucun son."),), rejected="missing_audio"),
    Recording("2015", None, "20150203_Sans_Transcription.mp3", (_one("rien"),), rejected="no_transcript"),
    Recording("2014", "20140909_Abime.xml", "20140909_Abime.mp3", (_one("Ce fichier est abîmé.", "undecodable_audio"),),
              audio="corrupt"),
    Recording("2013", "20130101_Casse.xml", "20130101_Casse.mp3", (_one("Ce XML est cassé."),), audio="corrupt",
              rejected="unreadable_row"),
]

#: The split of each day, with SHARES (pinned by the hash of importers.split).
CCPMF_SPLITS = {"20190312": "train", "20180606": "dev", "20181210": "test", "20160401": "dev",
                "20150203": "dev", "20140909": "train", "20130101": "train"}


class Expect(NamedTuple):
    #: For a reject, its source in rejects.csv; for a kept segment, its transcript.
    key: str
    outcome: str
    split: str
    #: The day: all of a day's segments land in one split.
    group: str


def _layout(recording: Recording, voice: str) -> Tuple[bytes, int, List[Tuple[Row, Optional[float], float]]]:
    """The recording's PCM and each row's (row, start or None when it has no audio, duration)."""
    rows = [row for segment in recording.segments for row in segment.rows]
    with ThreadPoolExecutor(4) as pool:
        speech = list(pool.map(lambda r: None if r.attrs else espeak(r.spoken or r.text, voice, r.speed), rows))
    rate = next(said[1] for said in speech if said)
    pcm, placed = bytearray(b"\0\0" * rate), []  # a second of silence first
    for row, said in zip(rows, speech):
        if said is None:
            placed.append((row, None, 0.0))
            continue
        pcm += b"\0\0" * round(row.gap * rate)
        start = len(pcm) / 2 / rate
        pcm += said[0]
        placed.append((row, start, len(said[0]) / 2 / rate))
    pcm += b"\0\0" * rate
    return bytes(pcm), rate, placed


def _check(recording: Recording, placed, max_seconds: float) -> None:
    """Fail early if espeak's durations would not make the segments the corpus means."""
    index, previous = 0, None
    for segment in recording.segments:
        timed = [(start, length) for _, start, length in placed[index:index + len(segment.rows)] if start is not None]
        index += len(segment.rows)
        if not timed:
            continue
        span = timed[-1][0] + timed[-1][1] - timed[0][0]
        assert (span > max_seconds) == (segment.outcome == "too_long"), (segment, span)
        if previous is not None and segment.rows[0].gap < 1:
            assert timed[-1][0] + timed[-1][1] - previous > max_seconds, ("would join the one before", segment)
        previous = timed[0][0]


def _xml(placed) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<transcription>"]
    for row, start, length in placed:
        attrs = row.attrs or {"timestamp": f"{start:.3f}", "timedur": f"{length:.3f}"}
        text = row.text.replace("&", "&amp;").replace("<", "&lt;")
        lines.append("  <row {}>{}</row>".format(" ".join(f'{k}="{v}"' for k, v in attrs.items()), text))
    return ("\n".join(lines + ["</transcription>"]) + "\n").encode("utf-8")


def _mp3(pcm: bytes, rate: int) -> bytes:
    """Conference audio as the ministry ships it: MP3 at 44.1 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        with wave.open(tmp + "/in.wav", "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(pcm)
        subprocess.run(["lame", "--quiet", "--resample", "44.1", tmp + "/in.wav", tmp + "/out.mp3"], check=True)
        return Path(tmp + "/out.mp3").read_bytes()


def _expectations(recording: Recording) -> List[Expect]:
    name = recording.xml or recording.mp3
    day = name.split("_")[0]
    split, where = CCPMF_SPLITS[day], f"{recording.folder}/{name}"
    if recording.rejected:
        return [Expect(where, recording.rejected, split, day)]
    found, number = [], 0
    for segment in recording.segments:
        first, number = number + 1, number + len(segment.rows)
        source = f"{where} row {first}" if first == number else f"{where} rows {first}-{number}"
        found.append(Expect(segment.label if segment.outcome == KEPT else source, segment.outcome, split, day))
    return found


def _recording(recording: Recording, voice: str):
    """The recording's MP3 (or None) and its XML (or None)."""
    audio, placed = None, [(row, 1.0, 1.0) for segment in recording.segments for row in segment.rows]
    if recording.mp3 and recording.audio == "speech":
        pcm, rate, placed = _layout(recording, voice)
        _check(recording, placed, CCPMF_MAX)
        audio = _mp3(pcm, rate)
    elif recording.mp3:
        audio = noise(recording.mp3)
    xml = None
    if recording.xml and recording.rejected == "unreadable_row":
        xml = b'<?xml version="1.0"?>\n<transcription>\n  <row timestamp="1.0" timedur='
    elif recording.xml:
        xml = _xml(placed)
    return audio, xml


def build_ccpmf(out_dir: Path, parts: int = 3, voice: str = "fr") -> Tuple[List[Path], Path, List[Expect]]:
    """The published layout: numbered parts of a zip holding a zip of ``<root>/<year>/`` folders.

    Returns the parts, the whole zip they join into, and what the importer must do.
    """
    inner = io.BytesIO()
    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(lambda r: _recording(r, voice), CCPMF))
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for recording, (audio, xml) in zip(CCPMF, made):
            if audio is not None:
                zip_file.writestr(f"{CCPMF_ROOT}/{recording.folder}/{recording.mp3}", audio)
            if xml is not None:
                zip_file.writestr(f"{CCPMF_ROOT}/{recording.folder}/{recording.xml}", xml)
    whole = out_dir / CCPMF_ARCHIVE
    # The outer zip holds the inner one.
    with zipfile.ZipFile(str(whole), "w", zipfile.ZIP_STORED) as zip_file:
        zip_file.writestr(CCPMF_ROOT + ".zip", inner.getvalue())
    data = whole.read_bytes()
    size = -(-len(data) // parts)
    pieces = []
    for number in range(parts):
        piece = out_dir / f"{CCPMF_ARCHIVE}.{number + 1:03d}"
        piece.write_bytes(data[number * size:(number + 1) * size])
        pieces.append(piece)
    return pieces, whole, [e for r in CCPMF for e in _expectations(r)]


# Multilingual LibriSpeech ------------------------------------------------------------------------------------------

class Utterance(NamedTuple):
    split: str
    #: <speaker>_<book>_<utterance>, or a broken id.
    ident: str
    text: str
    outcome: str
    spoken: Optional[str] = None
    #: "speech", "corrupt", or "none" (no file).
    audio: str = "speech"
    speed: int = 160
    #: The transcripts.txt line, when the builder cannot write it from the fields above.
    line: Optional[bytes] = None


MLS_GERMAN = [
    Utterance("train", "1844_931_000001", "der große bär schläft im wald", KEPT),
    Utterance("train", "1844_931_000002", "die kinder spielen im garten", KEPT),
    Utterance("train", "1844_931_000003", "ein schöner tag am see", "missing_audio", audio="none"),
    Utterance("train", "1844_931_000004", "es war einmal ein könig", "undecodable_audio", audio="corrupt"),
    Utterance("train", "2127_1001_000001", "wir fahren morgen nach münchen", KEPT),
    Utterance("train", "2127_1001_000002", "ich habe 3 katzen", "invalid_label", spoken="ich habe drei katzen"),
    Utterance("train", "2127_1001_000003", "", "empty_label", spoken="äh"),
    Utterance("train", "2127_1001_000004", "langsam", "too_long",
              spoken="langsam langsam sehr langsam und immer noch langsamer als gedacht wirklich", speed=80),
    Utterance("train", "2127_1001_000005", "straße", "unreadable_row", line=b"2127_1001_000005\tstra\xdfe"),
    Utterance("train", "kapitel_eins", "das ist kaputt", "unreadable_row", audio="none"),
    Utterance("train", "1844_931_000001", "der große bär schläft im wald", "duplicate", audio="none"),
    Utterance("dev", "3000_55_000001", "das wetter ist heute schön", KEPT),
    Utterance("dev", "3000_55_000002", "öl und essig für den salat", KEPT),
    Utterance("test", "4000_77_000001", "der zug kommt pünktlich an", KEPT),
    Utterance("test", "4000_77_000002", "über den wolken fliegt ein vogel", KEPT),
]


def _mls_audio(utterance: Utterance, fmt: str, target: Path) -> None:
    import numpy
    import soundfile
    import soxr

    target.parent.mkdir(parents=True, exist_ok=True)
    if utterance.audio == "corrupt":
        target.write_bytes(noise(utterance.ident))
        return
    pcm, rate = espeak(utterance.spoken or utterance.text, "de", utterance.speed)
    samples = soxr.resample(numpy.frombuffer(pcm, "<i2").astype("float32") / 32768, rate, 16000)
    if fmt == "opus":  # libsndfile writes Ogg Opus, as MLS ships it (16 kHz input)
        soundfile.write(str(target), samples, 16000, format="OGG", subtype="OPUS")
    else:
        with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
            soundfile.write(wav.name, samples, 16000, subtype="PCM_16")
            subprocess.run(["sox", wav.name, str(target)], check=True)


def build_mls(out_dir: Path, language: str = "german", fmt: str = "opus",
              utterances: List[Utterance] = MLS_GERMAN) -> Path:
    """``mls_<language>[_opus].tar.gz`` in the layout of OpenSLR 94."""
    root = f"mls_{language}" + ("_opus" if fmt == "opus" else "")
    stage = Path(tempfile.mkdtemp(dir=str(out_dir)))

    def place(u: Utterance) -> None:
        if u.audio != "none":
            speaker, book, _ = u.ident.split("_")
            _mls_audio(u, fmt, stage / root / u.split / "audio" / speaker / book / f"{u.ident}.{fmt}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(place, utterances))
    for split in ("train", "dev", "test"):
        lines = [u.line or f"{u.ident}\t{u.text}".encode() for u in utterances if u.split == split]
        (stage / root / split).mkdir(parents=True, exist_ok=True)
        (stage / root / split / "transcripts.txt").write_bytes(b"\n".join(lines) + b"\n")
        (stage / root / split / "segments.txt").write_text(
            "".join(f"{u.ident}\thttp://www.archive.org/download/x/{u.ident}.mp3\t0.0\t10.0\n"
                    for u in utterances if u.split == split))
    (stage / root / "train" / "limited_supervision" / "1hr" / "0").mkdir(parents=True)
    (stage / root / "train" / "limited_supervision" / "1hr" / "0" / "handles.txt").write_text("1844_931_000001\n")
    (stage / root / "metainfo.txt").write_text(
        "SPEAKER   |   GENDER   | PARTITION  |  MINUTES   |  BOOK ID   |             TITLE              |"
        "            CHAPTER            \n"
        "  1844    |     F      |   train    |   10.0     |    931     | Ein Buch | Kapitel 1\n")
    archive = out_dir / (root + ".tar.gz")
    with tarfile.open(str(archive), "w:gz") as tar:
        tar.add(str(stage / root), arcname=root)
    return archive
