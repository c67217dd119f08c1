"""clean: merge the datasets, check every row, and keep dev/test sentences out of train.

Rows are checked as they are read.  What must be remembered meanwhile (the clips seen, for duplicates; the
rows kept; the dev and test sentences) is in an SQLite file, ``clean/.clean.sqlite``, deleted at the end: the
memory used does not grow with the corpus.

The sets are written in the run's format (clips.format, docs/training.md):
- wav: ``clean/train.csv`` (dev, test) names the imported WAVs where they are; nothing is copied;
- sdb: ``clean/train.sdb`` holds the kept clips, their bytes copied from the imported databases as they are
  (never encoded again), shortest first as DeepSpeech expects, with the listing ``train.sdb.csv``.  That is a
  second copy of the kept audio, at the size of Opus: about 6 MB an hour, where the WAVs the other format
  trains on take 115 MB.
"""
import csv
import hashlib
import json
import logging
import os
import sqlite3
import wave
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from dstrain.pipeline.atomic import read_json, temporary_path, write_text
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats import payload
from dstrain.pipeline.formats.audio import SAMPLE_RATE, WAV_HEADER_BYTES, pcm_seconds
from dstrain.pipeline.formats.deepspeech_csv import REJECTS_HEADER, Reject, Sample
from dstrain.pipeline.formats.loudness import activity
from dstrain.pipeline.formats.sdb import SdbReader
from dstrain.pipeline.formats.sets import Entry, SetWriter, entries, present
from dstrain.pipeline.language import ENGLISH_LETTERS, to_english
from dstrain.pipeline.paths import SPLITS, ImportedDataset

log = logging.getLogger("dstrain")
#: A header may carry small extra chunks (LIST, fact) beyond the canonical 44 bytes.
HEADER_SLACK_SECONDS = 0.01
#: Less than this much louder than the silence threshold is no speech: a click or a breath, not a word.
MIN_SPEECH_SECONDS = 0.1


def allowed_characters(ctx) -> str:
    letters = ENGLISH_LETTERS if ctx.config.settings.english_compatible else ctx.language.letters
    return " " + letters


def wav_problem(wav: Path, listed_size: int) -> Optional[str]:
    """Why a WAV cannot feed DeepSpeech, or None."""
    try:
        size = wav.stat().st_size
        with wave.open(str(wav), "rb") as handle:
            rate, channels, width, frames = (handle.getframerate(), handle.getnchannels(),
                                             handle.getsampwidth(), handle.getnframes())
    except FileNotFoundError:
        return "missing file"
    except (wave.Error, EOFError, OSError) as exc:
        return f"unreadable WAV header: {exc}"
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        return f"{rate} Hz, {channels} channel(s), {width * 8}-bit; DeepSpeech needs 16000 Hz mono 16-bit"
    if frames == 0:
        return "no audio samples"
    declared = frames / rate
    on_disk = (size - WAV_HEADER_BYTES) / (rate * width)
    if abs(declared - on_disk) > HEADER_SLACK_SECONDS:
        return f"header says {declared:.3f}s but the file holds {on_disk:.3f}s (truncated?)"
    if size != listed_size:
        return f"file is {size} bytes, CSV says {listed_size}"
    return None


def speech_problem(clip: Union[Path, bytes], transcript: str, settings) -> Optional[Tuple[str, str]]:
    """Why a readable clip (a WAV file, or its PCM) cannot hold its transcript (silence, or a speaking rate nobody
    has), as a (reason, detail) pair, or None.  ``settings`` is the clean section."""
    heard = activity(clip, settings.silence_dbfs)
    if heard.loud_seconds < MIN_SPEECH_SECONDS:
        return ("silent", f"{heard.loud_seconds:.2f}s louder than {settings.silence_dbfs:g} dBFS; "
                          f"the loudest 20 ms is at {heard.loudest_dbfs:.1f} dBFS")
    rate = len(transcript) / heard.span_seconds
    if not settings.min_chars_per_second <= rate <= settings.max_chars_per_second:
        return ("speaking_rate", f"{len(transcript)} characters in {heard.span_seconds:.2f}s of speech: "
                                 f"{rate:.1f} per second, outside {settings.min_chars_per_second:g} to "
                                 f"{settings.max_chars_per_second:g}")
    return None


def payload_problem(entry: Entry) -> Tuple[Optional[str], bytes]:
    """Why a clip of a sample database cannot feed DeepSpeech, or None; and its PCM."""
    try:
        rate, pcm = payload.decode(entry.data, entry.audio)
        declared = payload.pcm_bytes(entry.data, entry.audio)
    except Exception as exc:  # opuslib and wave raise their own errors for damaged data
        return f"unreadable {entry.audio} audio: {exc}", b""
    if rate != SAMPLE_RATE:
        return f"{rate} Hz; DeepSpeech needs 16000 Hz", pcm
    if not pcm:
        return "no audio samples", pcm
    if len(pcm) != declared:
        return f"header says {declared / (2 * rate):.3f}s but it holds {len(pcm) / (2 * rate):.3f}s (truncated?)", pcm
    if WAV_HEADER_BYTES + len(pcm) != entry.sample.wav_filesize:
        return (f"holds {WAV_HEADER_BYTES + len(pcm)} bytes of WAV, its listing says {entry.sample.wav_filesize}",
                pcm)
    return None, pcm


def inputs(ctx) -> dict:
    clips = ctx.config.settings.clips
    return {
        "datasets": [d.key for d in ctx.config.datasets],
        "shared_transcripts": ctx.config.settings.clean.shared_transcripts,
        "speech": [ctx.config.settings.clean.silence_dbfs, ctx.config.settings.clean.min_chars_per_second,
                   ctx.config.settings.clean.max_chars_per_second, MIN_SPEECH_SECONDS],
        "allowed": allowed_characters(ctx),
        "english_compatible": ctx.config.settings.english_compatible,
        **({"clips": [clips.format, clips.sdb_audio]} if clips.format != "wav" else {}),
    }


#: The training rows whose sentence is also in dev or test.
_SHARED = "split = 'train' AND transcript IN (SELECT transcript FROM held)"


class _Memory:
    """What clean must remember across rows, on disk: the clips seen, the rows kept, the dev/test sentences."""

    def __init__(self, path: Path):
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.executescript("""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -4096; PRAGMA temp_store = FILE;
            CREATE TABLE seen (key TEXT PRIMARY KEY, split TEXT);
            CREATE TABLE kept (seq INTEGER PRIMARY KEY, split TEXT, dataset TEXT, number INTEGER, file TEXT,
                               name TEXT, size INTEGER, transcript TEXT, dropped INTEGER DEFAULT 0);
            CREATE INDEX kept_text ON kept (split, transcript);
            CREATE TABLE held (transcript TEXT PRIMARY KEY);
            BEGIN;
        """)

    def first(self, key: str, split: str) -> Optional[str]:
        """The split ``key`` was seen in before, or None (and it is remembered in ``split``)."""
        found = self.db.execute("SELECT split FROM seen WHERE key = ?", (key,)).fetchone()
        if found is None:
            self.db.execute("INSERT INTO seen VALUES (?, ?)", (key, split))
        return found[0] if found else None

    def keep(self, split: str, dataset: str, entry: Entry, name: str, transcript: str) -> None:
        self.db.execute("INSERT INTO kept (split, dataset, number, file, name, size, transcript) VALUES "
                        "(?,?,?,?,?,?,?)", (split, dataset, entry.number, str(entry.wav) if entry.wav else None,
                                            name, entry.sample.wav_filesize, transcript))
        if split != "train":
            self.db.execute("INSERT OR IGNORE INTO held VALUES (?)", (transcript,))

    def shared(self) -> int:
        return self.db.execute(f"SELECT count(DISTINCT transcript) FROM kept WHERE {_SHARED}").fetchone()[0]

    def drop_shared(self) -> Iterator[Tuple[str, str, int]]:
        """(name, transcript, size) of each training row whose sentence is also in dev or test; then they go."""
        yield from self.db.execute(f"SELECT name, transcript, size FROM kept WHERE {_SHARED} ORDER BY seq")
        self.db.execute(f"UPDATE kept SET dropped = 1 WHERE {_SHARED}")

    def kept(self, split: str, by_length: bool) -> Iterator[Tuple[str, Optional[int], Optional[str], str, int, str]]:
        """(dataset, number, WAV file, name, size, transcript) of each row kept in ``split``."""
        order = "size, seq" if by_length else "seq"
        yield from self.db.execute("SELECT dataset, number, file, name, size, transcript FROM kept WHERE split = ? "
                                   f"AND NOT dropped ORDER BY {order}", (split,))

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)


def run(ctx) -> dict:
    clips = ctx.config.settings.clips
    kept: Counter = Counter()
    seconds: Counter = Counter()
    reasons: Counter = Counter()
    memory = _Memory(ctx.paths.clean_work)
    try:
        with temporary_path(ctx.paths.quarantine) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            rows = csv.writer(handle, lineterminator="\n")
            rows.writerow(REJECTS_HEADER)

            def quarantine(reject: Reject) -> None:
                rows.writerow(reject)
                reasons[reject.reason] += 1

            for split in SPLITS:
                for dataset in ctx.config.datasets:
                    for entry in _imported(ctx, dataset.key, split):
                        if _check(ctx, memory, split, dataset.key, entry, quarantine):
                            kept[split] += 1
                            seconds[split] += pcm_seconds(entry.sample.wav_filesize)
            shared = memory.shared()
            policy = ctx.config.settings.clean.shared_transcripts
            if policy == "drop" and shared:
                for name, transcript, size in memory.drop_shared():
                    quarantine(Reject("train", name, "shared_transcript", "sentence also in dev/test: " + transcript))
                    seconds["train"] -= pcm_seconds(size)
                    kept["train"] -= 1
        digest = hashlib.sha256(json.dumps([clips.format, clips.sdb_audio if clips.format == "sdb" else None]).encode())
        for split in SPLITS:
            _write_set(ctx, memory, split)
            digest.update(ctx.paths.clean_set(split).listing.read_bytes())
    finally:
        memory.close()
    write_text(ctx.paths.clean_report, _report(ctx, kept, seconds, reasons, shared, policy))
    for split in SPLITS:
        log.info("%-5s %7d clips %8.2f h", split, kept[split], seconds[split] / 3600)
    quarantined = sum(reasons.values())
    log.info("quarantined %d (%s); %d sentences shared between train and dev/test (%s)",
             quarantined, ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none",
             shared, "removed from train" if policy == "drop" else "kept")
    if not kept["train"]:
        raise StageError(f"no training clip survived cleaning; see {ctx.paths.quarantine}")
    counts = {split: kept[split] for split in SPLITS}
    counts.update(quarantined=quarantined, shared_transcripts=shared)
    return {"counts": counts, "outputs": digest.hexdigest()}


def _check(ctx, memory: _Memory, split: str, key: str, entry: Entry, quarantine) -> bool:
    """Whether a row is kept (then remembered); if not, its reason goes to ``quarantine``."""
    sample = entry.sample
    where = f"{key}/{sample.wav_filename}"
    transcript = to_english(sample.transcript) if ctx.config.settings.english_compatible else sample.transcript
    clip: Union[Path, bytes]
    if entry.wav is not None:
        problem, clip = wav_problem(entry.wav, sample.wav_filesize), entry.wav
    else:
        problem, clip = payload_problem(entry)
    if problem:
        quarantine(Reject(split, where, "bad_audio", problem))
        return False
    outside = sorted(set(transcript) - set(allowed_characters(ctx)))
    if outside or not transcript.strip():
        quarantine(Reject(split, where, "outside_alphabet",
                          "characters {} in {!r}".format("".join(outside), transcript)))
        return False
    first = memory.first(os.path.realpath(str(entry.wav)) if entry.wav is not None else where, split)
    if first is not None:
        quarantine(Reject(split, where, "duplicate", "already in " + first))
        return False
    unheard = speech_problem(clip, transcript, ctx.config.settings.clean)
    if unheard:
        quarantine(Reject(split, where, *unheard))
        return False
    relative = ctx.config.settings.clips.format == "wav"
    memory.keep(split, key, entry, os.path.relpath(str(entry.wav), str(ctx.paths.clean)) if relative else where,
                transcript)
    return True


def _imported(ctx, key: str, split: str) -> Iterator[Entry]:
    """The clips of one imported set; a database can feed a run of either format but one of WAVs, a CSV."""
    imported = ImportedDataset(ctx.paths.imported(key))
    if ctx.config.settings.clips.format == "wav" and present(imported.set(split, "sdb")):
        raise StageError(f"{imported.dir} holds sample databases, and this run's clips.format is wav: run the "
                         "import stage again (dstrain run --from import) to import it as WAVs")
    return entries(imported.dir, split)


def _write_set(ctx, memory: _Memory, split: str) -> None:
    """The kept rows of ``split`` in the run's format: a CSV naming the imported WAVs, or a database of their
    clips copied as they are (shortest first, as DeepSpeech expects), each payload read from its own database."""
    clips = ctx.config.settings.clips
    readers: Dict[Tuple[str, str], SdbReader] = {}
    try:
        with SetWriter(ctx.paths.clean_set(split), clips.sdb_audio) as writer:
            for dataset, number, wav, name, size, transcript in memory.kept(split, clips.format == "sdb"):
                sample = Sample(name, size, transcript)
                if clips.format == "wav":
                    writer.add(sample)
                elif wav is not None:
                    writer.add(sample, Path(wav).read_bytes(), "wav")
                else:
                    source = ImportedDataset(ctx.paths.imported(dataset)).set(split, "sdb").data
                    reader = readers.get((dataset, split)) or readers.setdefault((dataset, split), SdbReader(source))
                    writer.add(sample, reader.read(number)[0], reader.audio)
    finally:
        for reader in readers.values():
            reader.close()


def _report(ctx, kept, seconds, reasons, shared, policy) -> str:
    lines = [
        f"# Cleaned data for run `{ctx.config.run_name}` ({ctx.language.name})",
        "",
        "| split | clips | hours |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s} | {kept[s]} | {seconds[s] / 3600:.2f} |" for s in SPLITS]
    lines += ["", "## Quarantined (see quarantine.csv)", ""]
    if reasons:
        lines += ["| reason | clips |", "|---|---:|"]
        lines += [f"| {r} | {n} |" for r, n in sorted(reasons.items())]
    else:
        lines.append("Nothing was quarantined.")
    clean = ctx.config.settings.clean
    lines += [
        "",
        "## Silence and speaking rate",
        "",
        f"{reasons['silent']} clips were silent: less than {MIN_SPEECH_SECONDS:g} s of them was louder than "
        f"{clean.silence_dbfs:g} dBFS (`clean.silence_dbfs`). {reasons['speaking_rate']} clips had a speaking rate "
        f"nobody has: their transcript, over the time from the first sound to the last, made fewer than "
        f"{clean.min_chars_per_second:g} or more than {clean.max_chars_per_second:g} characters per second "
        "(`clean.min_chars_per_second`, `clean.max_chars_per_second`): the recording does not say its sentence. "
        "quarantine.csv lists each with its level or rate.",
        "",
        "## Sentences in both train and dev/test",
        "",
        "{} sentences were found in both. Policy `{}`: {}.".format(
            shared, policy,
            "their training clips were removed, so the test measures unseen sentences" if policy == "drop"
            else "they were kept; the test results will look better than they are"),
        "",
    ]
    return "\n".join(lines + _how_split(ctx))


def _how_split(ctx) -> List[str]:
    """How each dataset was split into train, dev and test, as its import recorded it (manifest.json)."""
    lines = ["## How each dataset was split", ""]
    for dataset in ctx.config.datasets:
        manifest = read_json(ImportedDataset(ctx.paths.imported(dataset.key)).manifest) or {}
        split = dict(manifest.get("split") or {"by": "not recorded"})
        rule, counts = split.pop("rule", ""), split.pop("counts", {})
        facts = ", ".join(f"{key} {value}" for key, value in split.items())
        lines.append(f"- {dataset.key}: {facts}" + (f". {rule}" if rule else ""))
        lines += [f"  - {key}: {value}" for key, value in counts.items()]
    return lines + [""]
