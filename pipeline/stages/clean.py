"""clean: merge the datasets, check every row, and keep dev/test sentences out of train."""
import hashlib
import logging
import os
import wave
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dstrain.pipeline.atomic import read_json, write_text
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats.audio import SAMPLE_RATE, WAV_HEADER_BYTES, activity, pcm_seconds
from dstrain.pipeline.formats.deepspeech_csv import (
    REJECTS_HEADER,
    Reject,
    Sample,
    read_samples,
    write_rows,
    write_samples,
)
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


def speech_problem(wav: Path, transcript: str, settings) -> Optional[Tuple[str, str]]:
    """Why a readable WAV cannot hold its transcript (silence, or a speaking rate nobody has), as a
    (reason, detail) pair, or None.  ``settings`` is the clean section."""
    heard = activity(wav, settings.silence_dbfs)
    if heard.loud_seconds < MIN_SPEECH_SECONDS:
        return ("silent", f"{heard.loud_seconds:.2f}s louder than {settings.silence_dbfs:g} dBFS; "
                          f"the loudest 20 ms is at {heard.loudest_dbfs:.1f} dBFS")
    rate = len(transcript) / heard.span_seconds
    if not settings.min_chars_per_second <= rate <= settings.max_chars_per_second:
        return ("speaking_rate", f"{len(transcript)} characters in {heard.span_seconds:.2f}s of speech: "
                                 f"{rate:.1f} per second, outside {settings.min_chars_per_second:g} to "
                                 f"{settings.max_chars_per_second:g}")
    return None


def inputs(ctx) -> dict:
    return {
        "datasets": [d.key for d in ctx.config.datasets],
        "shared_transcripts": ctx.config.settings.clean.shared_transcripts,
        "speech": [ctx.config.settings.clean.silence_dbfs, ctx.config.settings.clean.min_chars_per_second,
                   ctx.config.settings.clean.max_chars_per_second, MIN_SPEECH_SECONDS],
        "allowed": allowed_characters(ctx),
        "english_compatible": ctx.config.settings.english_compatible,
    }


def run(ctx) -> dict:
    allowed = set(allowed_characters(ctx))
    english = ctx.config.settings.english_compatible
    clean_dir = ctx.paths.clean
    kept: Dict[str, List[Sample]] = {split: [] for split in SPLITS}
    seconds: Counter = Counter()
    quarantine: List[Reject] = []
    first_seen: Dict[str, str] = {}
    for split in SPLITS:
        for dataset in ctx.config.datasets:
            imported = ImportedDataset(ctx.paths.imported(dataset.key))
            for sample in read_samples(imported.csv(split)):
                wav = imported.dir / sample.wav_filename
                where = f"{dataset.key}/{sample.wav_filename}"
                transcript = to_english(sample.transcript) if english else sample.transcript
                problem = wav_problem(wav, sample.wav_filesize)
                if problem:
                    quarantine.append(Reject(split, where, "bad_audio", problem))
                    continue
                outside = sorted(set(transcript) - allowed)
                if outside or not transcript.strip():
                    quarantine.append(Reject(split, where, "outside_alphabet",
                                             "characters {} in {!r}".format("".join(outside), transcript)))
                    continue
                key = os.path.realpath(str(wav))
                if key in first_seen:
                    quarantine.append(Reject(split, where, "duplicate", "already in " + first_seen[key]))
                    continue
                unheard = speech_problem(wav, transcript, ctx.config.settings.clean)
                if unheard:
                    quarantine.append(Reject(split, where, *unheard))
                    continue
                first_seen[key] = split
                relative = os.path.relpath(str(wav), str(clean_dir))
                kept[split].append(Sample(relative, sample.wav_filesize, transcript))
                seconds[split] += pcm_seconds(sample.wav_filesize)

    held_out = {s.transcript for split in ("dev", "test") for s in kept[split]}
    shared = sorted({s.transcript for s in kept["train"]} & held_out)
    policy = ctx.config.settings.clean.shared_transcripts
    if policy == "drop" and shared:
        shared_set = set(shared)
        for sample in kept["train"]:
            if sample.transcript in shared_set:
                quarantine.append(Reject("train", sample.wav_filename, "shared_transcript",
                                         "sentence also in dev/test: " + sample.transcript))
                seconds["train"] -= pcm_seconds(sample.wav_filesize)
        kept["train"] = [s for s in kept["train"] if s.transcript not in shared_set]

    for split in SPLITS:
        write_samples(ctx.paths.clean_csv(split), kept[split])
    write_rows(ctx.paths.quarantine, REJECTS_HEADER, quarantine)
    reasons = Counter(q.reason for q in quarantine)
    write_text(ctx.paths.clean_report, _report(ctx, kept, seconds, reasons, shared, policy))
    for split in SPLITS:
        log.info("%-5s %7d clips %8.2f h", split, len(kept[split]), seconds[split] / 3600)
    log.info("quarantined %d (%s); %d sentences shared between train and dev/test (%s)",
             len(quarantine), ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none",
             len(shared), "removed from train" if policy == "drop" else "kept")
    if not kept["train"]:
        raise StageError(f"no training clip survived cleaning; see {ctx.paths.quarantine}")
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(ctx.paths.clean_csv(split).read_bytes())
    counts = {split: len(kept[split]) for split in SPLITS}
    counts.update(quarantined=len(quarantine), shared_transcripts=len(shared))
    return {"counts": counts, "outputs": digest.hexdigest()}


def _report(ctx, kept, seconds, reasons, shared, policy) -> str:
    lines = [
        f"# Cleaned data for run `{ctx.config.run_name}` ({ctx.language.name})",
        "",
        "| split | clips | hours |",
        "|---|---:|---:|",
    ]
    lines += [f"| {s} | {len(kept[s])} | {seconds[s] / 3600:.2f} |" for s in SPLITS]
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
            len(shared), policy,
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
