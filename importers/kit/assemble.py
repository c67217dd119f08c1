"""The second half of every importer: convert the audio, judge each clip, write the outputs.

An importer lists candidates (clip + normalised label + split) and the rows it
already rejected; this module converts the audio in parallel, rejects clips
that cannot train, and writes the sets (CSVs of WAVs, or sample databases: clipstore.py),
``rejects.csv`` and ``manifest.json``.  What it knows of the rows meanwhile is on disk (ledger.py), so its
memory does not grow with the corpus.
"""
import csv
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, NamedTuple, Optional, Tuple

from tqdm import tqdm

from dstrain.importers.kit.clipstore import clip_store
from dstrain.importers.kit.ledger import Ledger
from dstrain.pipeline.atomic import temporary_path, write_json
from dstrain.pipeline.formats.audio import FRAME_SECONDS, Clip, convert_all, convert_stream
from dstrain.pipeline.formats.deepspeech_csv import REJECTS_HEADER, Reject
from dstrain.pipeline.formats.payload import OPUS_COMPLEXITY
from dstrain.pipeline.paths import SPLITS, ImportedDataset

log = logging.getLogger("dstrain")


class Candidate(NamedTuple):
    split: str
    #: How the user finds the row again, e.g. "train.tsv:12 common_voice_fr_1.mp3".
    source: str
    audio: Path
    #: The WAV's name inside ``clips/``.
    wav_name: str
    transcript: str


#: (member name, how to read its content: None when it is too big for a clip) of each file of an archive.
Members = Iterable[Tuple[str, Callable[[], Optional[bytes]]]]


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
    candidates: Iterable[Candidate],
    rejects: Iterable[Reject],
    max_seconds: float,
    workers: int,
    manifest: Dict[str, Any],
    members: Optional[Members] = None,
    clips: Tuple[str, str, int] = ("wav", "opus", OPUS_COMPLEXITY),
    facts: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Convert, judge and write.  ``members`` is for a corpus whose clips are read from its archive in one pass
    (Common Voice); ``clips`` is (clips.format, clips.sdb_audio, clips.opus_complexity): the store the clips go
    to (clipstore.py).

    The candidates are read once, as they come: a corpus may produce them lazily, and fill ``rejects`` and
    ``facts`` (added to the manifest) meanwhile.
    """
    store = clip_store(out, manifest["source"]["sha256"], *clips)
    kept: Counter = Counter()
    seconds: Counter = Counter()
    with Ledger(out.ledger) as ledger:
        ledger.add_candidates(candidates)
        ledger.add_rejects(rejects)
        ledger.one_clip_each()
        store.forget_others(ledger.names)
        _convert(out, ledger, store, members, workers, max_seconds)
        with ledger.transaction():
            for seq, fields, clip in ledger.judged():
                cand = Candidate(*fields)
                problem = judge(clip, cand.transcript, max_seconds)
                if problem:
                    ledger.reject(Reject(cand.split, cand.source, problem[0], problem[1]))
                    continue
                ledger.keep(seq)
                kept[cand.split] += 1
                seconds[cand.split] += clip.seconds
        # Converted, then judged unfit: its clip must not stay behind.
        store.discard(ledger.unkept_clips())
        for split in SPLITS:
            store.write_set(split, ledger.kept(split, store.by_length))
        reasons: Counter = Counter()
        with temporary_path(out.rejects) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(REJECTS_HEADER)
            for reject in ledger.rejects():
                writer.writerow(reject)
                reasons[reject.reason] += 1
    store.finish()
    manifest = dict(
        manifest,
        **(facts or {}),
        counts={split: kept[split] for split in SPLITS},
        hours={split: round(seconds[split] / 3600, 4) for split in SPLITS},
        rejected=dict(sorted(reasons.items())),
    )
    write_json(out.manifest, manifest)
    log.info(
        "%s: kept %s, rejected %d (%s)",
        out.dir.name,
        ", ".join(f"{kept[s]} {s}" for s in SPLITS),
        sum(reasons.values()),
        ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none",
    )
    return manifest


def _convert(out: ImportedDataset, ledger: Ledger, store, members: Optional[Members], workers: int,
             max_seconds: float) -> None:
    """Every candidate's clip converted into the store, its result in the ledger; those the store already holds
    (from a run that was stopped) are not converted again."""
    desc = "convert " + out.dir.name
    ledger.shrink()
    if members is None:
        count, jobs = ledger.unconverted()

        def files():
            for audio, clip in jobs:
                done = store.done(clip)
                if done is None:
                    yield audio, str(store.destination(clip))
                else:
                    ledger.record([(clip, done)])
                    bar.update(1)

        with tqdm(total=count, unit="clip", desc=desc) as bar:
            # The destination's name is the clip's, in either store.
            ledger.record(_stored(store, ((Path(dst).name, clip) for (_, dst), clip in
                                          convert_all(files(), count, workers, bar, max_seconds, store.encoding))))
        return
    in_flight: Dict[str, str] = {}

    def wanted():
        for name, read in members:
            clip = ledger.wanted(name)
            if clip is None:
                continue
            done = store.done(clip)
            if done is not None:
                ledger.record([(clip, done)])
                bar.update(1)
                continue
            in_flight[name] = clip
            yield name, read(), str(store.destination(clip))

    with tqdm(total=ledger.unconverted()[0], unit="clip", desc=desc) as bar:
        ledger.record(_stored(store, ((in_flight.pop(name), clip) for name, clip in
                                      convert_stream(wanted(), workers, bar, max_seconds, store.encoding))))
    for clip in ledger.held_twice():  # read to its end: each is recorded a name_clash as it is given
        store.discard([clip])


def _stored(store, results: Iterable[Tuple[str, Clip]]) -> Iterator[Tuple[str, Clip]]:
    for clip, result in results:
        yield clip, store.put(clip, result)


def wav_name(source_name: str) -> str:
    """The WAV of a clip, named after its file with the extension kept: ``x.mp3`` and ``x.ogg`` are two clips,
    and two WAVs (``x.mp3.wav``, ``x.ogg.wav``); ``x.wav`` stays ``x.wav``."""
    base = os.path.basename(source_name)
    return base if base.lower().endswith(".wav") else base + ".wav"
