"""The second half of every importer: convert the audio, judge each clip, write the outputs.

An importer lists candidates (clip + normalised label + split) and the rows it
already rejected; this module converts the audio in parallel, rejects clips
that cannot train, and writes the CSVs, ``rejects.csv`` and ``manifest.json``.
"""
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

from tqdm import tqdm

from dstrain.pipeline.atomic import write_json, write_text
from dstrain.pipeline.formats.audio import FRAME_SECONDS, Clip, convert_all
from dstrain.pipeline.formats.deepspeech_csv import REJECTS_HEADER, Reject, Sample, write_rows, write_samples
from dstrain.pipeline.paths import SPLITS, ImportedDataset, folded, printable

log = logging.getLogger("dstrain")


class Candidate(NamedTuple):
    split: str
    #: How the user finds the row again, e.g. "train.tsv:12 common_voice_fr_1.mp3".
    source: str
    audio: Path
    #: The WAV's name inside ``clips/``.
    wav_name: str
    transcript: str


def claim_clips(out: ImportedDataset, source_sha256: str) -> None:
    """Keep converted WAVs across a crash, but never reuse those of another source archive."""
    marker = out.clips / ".source-sha256"
    if out.clips.exists() and (not marker.exists() or marker.read_text() != source_sha256):
        shutil.rmtree(str(out.clips))
    if not marker.exists():
        write_text(marker, source_sha256)


def judge(clip, transcript: str, max_seconds: float):
    """The reason a converted clip cannot train, or None."""
    if not clip.ok:
        return clip.reason, clip.detail
    if clip.seconds > max_seconds:
        return "too_long", f"{clip.seconds:.2f}s > {max_seconds}s"
    if clip.seconds / FRAME_SECONDS < len(transcript):
        return "too_short", f"{clip.seconds:.2f}s for {len(transcript)} characters"
    return None


def assemble(
    out: ImportedDataset,
    candidates: List[Candidate],
    rejects: List[Reject],
    max_seconds: float,
    workers: int,
    manifest: Dict[str, Any],
    converted: Optional[Dict[str, Clip]] = None,
) -> Dict[str, Any]:
    """Judge and write; ``converted`` (WAV name -> clip) is for importers that convert clips themselves."""
    claim_clips(out, manifest["source"]["sha256"])
    candidates = one_wav_each(candidates, rejects)
    kept: Dict[str, List[Sample]] = {split: [] for split in SPLITS}
    seconds: Counter = Counter()
    judged_out = set()
    with tqdm(total=len(candidates), unit="clip", desc="convert " + out.dir.name,
              disable=converted is not None) as bar:
        if converted is None:
            jobs = [(str(c.audio), str(out.clips / c.wav_name)) for c in candidates]
            clips: Iterable[Clip] = convert_all(jobs, workers, bar, max_seconds)
        else:
            clips = (converted[c.wav_name] for c in candidates)
        for cand, clip in zip(candidates, clips):
            problem = judge(clip, cand.transcript, max_seconds)
            if problem:
                rejects.append(Reject(cand.split, cand.source, problem[0], problem[1]))
                if clip.ok:
                    judged_out.add(cand.wav_name)
                continue
            kept[cand.split].append(Sample("clips/" + cand.wav_name, clip.size, cand.transcript))
            seconds[cand.split] += clip.seconds
    # Converted, then judged unfit: its WAV must not stay behind (unless another row of the same clip is kept).
    for name in judged_out - {s.wav_filename[len("clips/"):] for split in SPLITS for s in kept[split]}:
        (out.clips / name).unlink(missing_ok=True)
    for split in SPLITS:
        write_samples(out.csv(split), kept[split])
    rejects = [Reject(*map(printable, r)) for r in rejects]  # a name's undecodable bytes, shown
    rejects.sort(key=lambda r: (SPLITS.index(r.split), _natural(r.source)))
    write_rows(out.rejects, REJECTS_HEADER, rejects)
    reasons = Counter(r.reason for r in rejects)
    manifest = dict(
        manifest,
        counts={split: len(kept[split]) for split in SPLITS},
        hours={split: round(seconds[split] / 3600, 4) for split in SPLITS},
        rejected=dict(sorted(reasons.items())),
    )
    write_json(out.manifest, manifest)
    log.info(
        "%s: kept %s, rejected %d (%s)",
        out.dir.name,
        ", ".join(f"{len(kept[s])} {s}" for s in SPLITS),
        len(rejects),
        ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none",
    )
    return manifest


def _natural(text: str):
    """Sort key that puts "train.tsv:9" before "train.tsv:10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def wav_name(source_name: str) -> str:
    """The WAV of a clip, named after its file with the extension kept: ``x.mp3`` and ``x.ogg`` are two clips,
    and two WAVs (``x.mp3.wav``, ``x.ogg.wav``); ``x.wav`` stays ``x.wav``."""
    base = os.path.basename(source_name)
    return base if base.lower().endswith(".wav") else base + ".wav"


def one_wav_each(candidates: List[Candidate], rejects: List[Reject]) -> List[Candidate]:
    """The candidates that can each have a WAV of their own; the others go to ``rejects``, with their reason.

    Two inputs whose WAV names are one file where case is ignored (``X.mp3.wav``, ``x.mp3.wav``; macOS's disks,
    a Docker Desktop mount) would leave one clip's speech under the other's sentence: both are rejected,
    ``name_clash``.  An input listed again is kept once when the rows say the same, and rejected everywhere
    as ``duplicate`` when they do not (another sentence, another split).  A name that UTF-8 cannot write in
    a CSV is ``invalid_path``.  Call it before converting anything (assemble calls it again, to be sure).
    """
    groups: Dict[str, List[Candidate]] = {}
    for cand in candidates:
        groups.setdefault(folded(cand.wav_name), []).append(cand)
    dropped = set()
    for group in groups.values():
        for cand in group:
            reject = _not_one_wav(cand, group)
            if reject is not None:
                rejects.append(reject)
                dropped.add(id(cand))
    return [c for c in candidates if id(c) not in dropped]


def _not_one_wav(cand: Candidate, group: List[Candidate]) -> Optional[Reject]:
    """Why ``cand`` cannot have its WAV, among ``group`` (the candidates whose WAV names fold alike), or None."""
    if printable(cand.wav_name) != cand.wav_name:
        return Reject(cand.split, cand.source, "invalid_path", f"{printable(cand.wav_name)!r} has bytes that are not "
                                                                "UTF-8")
    if printable(cand.transcript) != cand.transcript:
        return Reject(cand.split, cand.source, "unreadable_row", "not valid UTF-8")
    inputs = sorted({str(c.audio) for c in group})
    if len(inputs) > 1:
        return _name_clash(cand, inputs)
    first = group[0]
    if any((c.split, c.transcript) != (first.split, first.transcript) for c in group):
        return Reject(cand.split, cand.source, "duplicate", "this clip is listed elsewhere with another sentence or "
                      "split: " + ", ".join(c.source for c in group if c is not cand))
    if cand is not first:
        return Reject(cand.split, cand.source, "duplicate", "listed again: " + first.source)
    return None


def _name_clash(cand: Candidate, inputs: List[str]) -> Reject:
    """Two inputs, one WAV (where case is ignored): neither is kept."""
    others = ", ".join(printable(i) for i in inputs if i != str(cand.audio))
    return Reject(cand.split, cand.source, "name_clash", f"its WAV, {printable(cand.wav_name)}, would be the file of "
                  f"{others} too (where case is ignored): neither is kept")
