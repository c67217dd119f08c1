"""The smoke training: DeepSpeech trains a few steps on a handful of clips, tests and exports the result, in a
throwaway directory.  About a minute, it proves the trainer, the GPU (or CPU), the decoder and the export
before hours of downloads and training; the original pipeline's checks did the same.

The clips are DeepSpeech's own sample (``data/smoke_test/`` in its source tree, which the image holds beside
lm_optimizer.py), else the first clips this run imported.  The command lines are trainer.py's, the same the
train, evaluate and export stages build; only the paths (the throwaway directory) and the model's size differ.
"""
import itertools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

from dstrain.pipeline.deepspeech import decoding, trainer
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats import sets
from dstrain.pipeline.formats.alphabet import alphabet_text
from dstrain.pipeline.formats.deepspeech_csv import Sample, read_samples, write_samples
from dstrain.pipeline.language import Language
from dstrain.pipeline.paths import SPLITS, DataRoot, ImportedDataset
from dstrain.pipeline.settings import Settings

log = logging.getLogger("dstrain")

#: In DeepSpeech's source tree: 16 kHz mono WAVs of one TIMIT sentence, and its transcript ("0 46797 She had...").
SAMPLE_DIR = Path("data") / "smoke_test"
SAMPLE_CLIPS = ("LDC93S1.wav", "LDC93S1_pcms16le_1_16000.wav")
SAMPLE_TRANSCRIPT = "LDC93S1.txt"
#: Clips taken from an import when there is no sample.
IMPORTED_CLIPS = 4
#: Small enough to train in seconds on a CPU; the real settings' width is not what is being proved.
N_HIDDEN = 64
EPOCHS = 2
#: What the throwaway run is called under its own data root.
RUN = "smoke"


class Clips(NamedTuple):
    samples: List[Sample]
    #: Where they come from, for the log and the record.
    origin: str


def sample_clips(settings: Settings) -> Optional[Clips]:
    """DeepSpeech's sample, in its source tree: the one whose lm_optimizer.py (at its top) optimize.script names,
    as the image's settings do."""
    script = settings.optimize.script
    if script is not None and script.expanduser().is_file():
        directory = script.expanduser().resolve().parent / SAMPLE_DIR
        wavs = [directory / name for name in SAMPLE_CLIPS if (directory / name).is_file()]
        if wavs and (directory / SAMPLE_TRANSCRIPT).is_file():
            # "0 46797 She had your dark suit in greasy wash water all year."
            words = (directory / SAMPLE_TRANSCRIPT).read_text(encoding="utf-8").split()[2:]
            text = " ".join(words).lower().strip(".")
            samples = [Sample(str(wav), wav.stat().st_size, text) for wav in wavs]
            return Clips(samples, f"DeepSpeech's sample {directory}")
    return None


def imported_clips(paths: DataRoot, datasets: Sequence[str]) -> Optional[Clips]:
    """The first training clips of the first of ``datasets`` (their keys) this run has imported; a clip of a
    sample database is named as DeepSpeech names it, and written out as a WAV in the throwaway directory."""
    for key in datasets:
        imported = ImportedDataset(paths.imported(key))
        database, csv = imported.set("train", "sdb"), imported.set("train", "wav")
        if not imported.record.is_file():
            continue
        samples = []
        if sets.present(database):
            for number, sample in enumerate(itertools.islice(sets.samples(database), IMPORTED_CLIPS)):
                samples.append(sample._replace(wav_filename=sets.reference(database.data.resolve(), number)))
        elif csv.data.is_file():
            for sample in itertools.islice(read_samples(csv.data), IMPORTED_CLIPS):
                samples.append(sample._replace(wav_filename=str((csv.data.parent / sample.wav_filename).resolve())))
        if samples:
            return Clips(samples, f"the first {len(samples)} clips imported from {key}")
    return None


def find_clips(settings: Settings, paths: DataRoot, datasets: Sequence[str]) -> Optional[Clips]:
    return sample_clips(settings) or imported_clips(paths, datasets)


class _Throwaway(NamedTuple):
    """The run's settings with a tiny model, and paths under the throwaway directory: the trainer's flags are
    built from them."""

    settings: Settings
    paths: DataRoot
    model: trainer.Model


def _throwaway(settings: Settings, language: str, scratch: Path) -> _Throwaway:
    train = settings.train.model_copy(update={
        "n_hidden": N_HIDDEN, "epochs": EPOCHS, "train_batch_size": 1, "dev_batch_size": 1, "test_batch_size": 1,
        "early_stop": False, "reduce_lr_on_plateau": False, "feature_cache": False, "max_to_keep": 1})
    small = settings.model_copy(update={"train": train})
    paths = DataRoot(scratch, RUN, language)
    return _Throwaway(small, paths, trainer.Model.of(small, paths))


def _prepare(small: _Throwaway, clips: Clips) -> None:
    paths = small.paths
    samples = []
    for number, sample in enumerate(clips.samples):
        found = sets.referenced(sample.wav_filename)
        if found is not None:
            wav = sets.write_wav(found[0], found[1], paths.clean / f"clip{number}.wav")
            sample = sample._replace(wav_filename=str(wav))
        samples.append(sample)
    for split in SPLITS:
        paths.clean_set(split).data.parent.mkdir(parents=True, exist_ok=True)
        write_samples(paths.clean_set(split).data, samples)
    characters = sorted({c for sample in clips.samples for c in sample.transcript})
    paths.alphabet.write_text(alphabet_text(characters), encoding="utf-8")


def _step(small: _Throwaway, what: str, flags) -> None:
    train = small.settings.train
    started = time.time()
    outcome = trainer.run(trainer.command(train, flags), trainer.environment(train))
    if not outcome.ok:
        raise StageError("the smoke training failed at its {} (exit code {}), so a real training would too "
                         "(train.smoke = false skips this check). DeepSpeech's last lines:\n    {}".format(
                             what, outcome.returncode, "\n    ".join(outcome.tail)))
    log.info("smoke training: %s done in %.0f s", what, time.time() - started)


def run(settings: Settings, language: Language, scratch: Path, clips: Clips) -> dict:
    """Train, test and export ``clips`` under ``scratch``, removed afterwards whatever happens."""
    shutil.rmtree(str(scratch), ignore_errors=True)
    small = _throwaway(settings, language.code, scratch)
    settings = small.settings
    log.info("smoke training: %d steps on %s, n_hidden %d, in %s", EPOCHS * len(clips.samples), clips.origin,
             N_HIDDEN, scratch)
    try:
        _prepare(small, clips)
        paths = small.paths
        start = trainer.Start(paths.checkpoints, "init")
        data = (paths.clean_set("train").data, paths.clean_set("dev").data)
        _step(small, "training", trainer.train_flags(small.model.graph, settings.train, data, start, EPOCHS, (1, 1),
                                                     None))
        output = paths.test_output
        output.parent.mkdir(parents=True, exist_ok=True)
        lm = settings.lm
        no_scorer = decoding.Decoder(None, lm.alpha, lm.beta, "configured", None)
        _step(small, "test", trainer.test_flags(small.model, settings.evaluate, paths.clean_set("test").data, output,
                                                no_scorer, 1))
        decoded = [row.get("res", "") for row in json.loads(output.read_text(encoding="utf-8"))]
        exported = []
        for kind in [k for k in settings.export.formats if k != "zip"] or ["tflite"]:
            directory = paths.export_scratch(kind)
            directory.mkdir(parents=True, exist_ok=True)
            _step(small, f"{kind} export", trainer.export_flags(small.model, language.model_metadata(),
                                                                settings.export.beam_width, kind, directory, None))
            models = sorted(p.name for p in directory.glob("output_graph.*") if not p.name.endswith(".md"))
            if not models:
                raise StageError(f"the smoke training's {kind} export wrote no model in {directory}")
            exported += models
    finally:
        shutil.rmtree(str(scratch), ignore_errors=True)
    log.info("smoke training passed: trained, decoded %d clip(s) (%r, from %d steps: words are not expected), "
             "exported %s", len(decoded), decoded[0] if decoded else "", EPOCHS * len(clips.samples),
             ", ".join(exported))
    return {"clips": clips.origin, "decoded": len(decoded), "exported": exported}
