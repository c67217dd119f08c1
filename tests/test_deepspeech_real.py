"""The real DeepSpeech 0.9.3 trainer, end to end, on espeak speech: what the test double cannot prove.

One French sentence is spoken for train, dev and test, and a small model (n_hidden 100) learns it by heart in
120 epochs on the CPU, so every decoder downstream has a right answer to give.  On the way:

- the run is killed with SIGKILL in the middle of training, and the rerun trains only the epochs left;
- the lm stage builds a real KenLM model and scorer (generate_scorer_package compiled from the source);
- the optimize stage runs DeepSpeech's lm_optimizer.py for 3 real trials, and evaluate decodes with its scorer;
- export writes .tflite, .pb, .pbmm (dstrain's own converter) and the zip; package tars them;
- each model, taken from the release tarballs, transcribes the clip in the official runtimes
  (deepspeech==0.9.3 for .pb and .pbmm, deepspeech-tflite==0.9.3 for .tflite).

A second run overfits a handful of sentences on purpose, and ships the last checkpoint
(train.model_checkpoint = last): its export transcribes its own training clips without a scorer.

tests/trainer_env.sh builds what it needs (TRAINER_PYTHON, LM_OPTIMIZER, GENERATE_SCORER_PACKAGE,
DEEPSPEECH_RUNTIME, DEEPSPEECH_TFLITE_RUNTIME); tests/run.sh sets them, and there these tests never skip.
"""
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from dstrain.pipeline.formats import sets
from dstrain.pipeline.formats.deepspeech_csv import read_samples
from tests.conftest import DSTRAIN, clean_env, dstrain, need_real, write_config
from tests.fixtures.common_voice import build_common_voice
from tests.fixtures.speech import Row
from tests.test_training import kenlm_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.deepspeech

SENTENCE = "le chat dort sur le canapé"
EPOCHS = 120
#: Common Voice's layout, the one sentence spoken once for each split.
ONE_SENTENCE = [Row(split, f"one_{split}.mp3", SENTENCE) for split in ("train", "dev", "test")]
#: The settings under which a small model learns it by heart; each test adds its own lines per section.
BY_HEART = {
    "clean": ['shared_transcripts = "keep"'],  # the one sentence is the test too
    "lm": ["sources = []", "exclude_held_out = false", 'memory = "64M"'],  # and its LM too: not held out
    "train": [f"epochs = {EPOCHS}", "n_hidden = 100", "learning_rate = 0.002", "dropout_rate = 0.0",
              "train_batch_size = 1", "dev_batch_size = 1", "test_batch_size = 1", "early_stop = false",
              "smoke = false"],  # tests/test_check.py tries it
    "evaluate": ["beam_width = 100"],
    "export": ["beam_width = 100"],
}
#: The run is killed once this many epochs are recorded.
KILL_AFTER = 30
TOOLS = ("TRAINER_PYTHON", "LM_OPTIMIZER", "GENERATE_SCORER_PACKAGE", "DEEPSPEECH_RUNTIME",
         "DEEPSPEECH_TFLITE_RUNTIME")
#: Loads a model and its scorer in an official runtime and prints what it hears.
TRANSCRIBE = """
import sys, wave, numpy, deepspeech
model = deepspeech.Model(sys.argv[1])
if sys.argv[2] != "-":
    model.enableExternalScorer(sys.argv[2])
for name in sys.argv[3:]:
    with wave.open(name) as wav:
        audio = numpy.frombuffer(wav.readframes(wav.getnframes()), numpy.int16)
    print(model.stt(audio))
"""
#: Sentences learnt by heart together, in one batch (3 divides 3: DeepSpeech drops no clip); the dev and test
#: sentences are others, so the dev loss soon stops falling and the best-dev checkpoint is an early one.
OVERFIT = [Row("train", "fit_1.mp3", "le chat dort"), Row("train", "fit_2.mp3", "il fait beau"),
           Row("train", "fit_3.mp3", "nous mangeons du pain"), Row("dev", "fit_dev.mp3", "la maison est grande"),
           Row("test", "fit_test.mp3", "le soleil brille")]
OVERFIT_EPOCHS = 100


def by_heart(**more) -> str:
    """BY_HEART as TOML tables, with ``more`` lines added to (or as) sections; a line setting a key BY_HEART
    sets already replaces BY_HEART's (TOML refuses a key twice)."""
    def key(line: str) -> str:
        return line.split("=", 1)[0].strip()

    sections = {}
    for name in {**BY_HEART, **more}:
        added = more.get(name, [])
        replaced = {key(line) for line in added}
        sections[name] = [line for line in BY_HEART.get(name, []) if key(line) not in replaced] + added
    return "".join(f"[{name}]\n" + "".join(line + "\n" for line in lines) for name, lines in sections.items())


def real_config(root: Path, rows, kenlm_bin: Path, clips: str = "wav", **more) -> Path:
    """``root/data`` whose sources/ hold ``rows`` as a Common Voice release, and a config that learns them by
    heart with the real KenLM and scorer tool, with ``clips`` as clips.format, plus ``more`` lines per section."""
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    build_common_voice(data / "sources", rows=rows)
    config = write_config(root / "dstrain.toml", data, clips=clips)
    tools = [f'kenlm_bin = "{kenlm_bin}"', f'scorer_tool = "{os.environ["GENERATE_SCORER_PACKAGE"]}"']
    config.write_text(config.read_text() + by_heart(lm=tools, **more))
    return config


def require_trainer() -> None:
    python = os.environ.get("TRAINER_PYTHON", "python3")
    try:
        ok = subprocess.run([python, "-c", "import deepspeech_training"], capture_output=True,
                            timeout=300).returncode == 0
    except OSError:
        ok = False
    need_real(ok, f"TRAINER_PYTHON ({python}) cannot import deepspeech_training: run tests/trainer_env.sh")


def transcribe(runtime: str, model: Path, scorer, *wavs: Path) -> str:
    """What the model hears in each clip, one line each; ``scorer`` None decodes without one."""
    proc = subprocess.run([runtime, "-c", TRANSCRIBE, str(model), str(scorer or "-"), *map(str, wavs)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # The runtime exits 0 even when inference fails; it then prints an error and an empty line.
    assert "Error" not in proc.stderr, proc.stderr
    return proc.stdout.strip()


def word_errors(expected: str, heard: str) -> int:
    previous = list(range(len(heard.split()) + 1))
    for i, word in enumerate(expected.split(), 1):
        current = [i]
        for j, other in enumerate(heard.split(), 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]


def extract(tarball: Path, into: Path) -> Path:
    into.mkdir()
    with tarfile.open(str(tarball)) as tar:
        tar.extractall(str(into))
    return into


def progress(run: Path) -> dict:
    try:
        return json.loads((run / "checkpoints" / "dstrain-progress.json").read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def kill_mid_training(config: Path, run: Path) -> int:
    """Start the training stage, SIGKILL the whole process group once KILL_AFTER epochs are recorded."""
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--to", "train"],
                            env=clean_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and progress(run).get("epochs_done", 0) < KILL_AFTER:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return progress(run)["epochs_done"]


class RealRun(NamedTuple):
    run: Path
    killed_at: int
    wav: Path
    clips: str


def imported_wav(data: Path, clips: str, stem: str, workdir: Path) -> Path:
    """The imported clip of the row named ``stem``: its WAV, or its sample, extracted from the database."""
    imported = data / "imported" / "fr" / "common_voice"
    if clips == "wav":
        return next(imported.rglob(f"*{stem}*.wav"))
    for split in ("train", "dev", "test"):
        for number, row in enumerate(read_samples(imported / f"{split}.sdb.csv")):
            if stem in row.wav_filename:
                return sets.write_wav(imported / f"{split}.sdb", number, workdir / f"{stem}.wav")
    raise AssertionError(f"no sample of {stem} in {imported}")


@pytest.fixture(scope="module", params=["wav", "sdb"])
def real_run(kenlm_dir, tmp_path_factory, request):  # noqa: F811
    """The whole run with the real trainer, on WAVs and CSVs, then on sample databases (DeepSpeech reads them)."""
    require_trainer()
    need_real(all(os.environ.get(name) for name in TOOLS), "set " + ", ".join(TOOLS) + " (tests/trainer_env.sh)")
    root = tmp_path_factory.mktemp("real")
    data = root / "data"
    config = real_config(root, ONE_SENTENCE, kenlm_dir, clips=request.param,
                         optimize=["enabled = true", f'script = "{os.environ["LM_OPTIMIZER"]}"', "trials = 3"],
                         export=['formats = ["tflite", "pb", "zip"]'])
    run = data / "runs" / "fr"
    dstrain("run", "-l", "fr", "--config", config, "--to", "lm")
    killed_at = kill_mid_training(config, run)
    dstrain("run", "-l", "fr", "--config", config)
    return RealRun(run, killed_at, imported_wav(data, request.param, "one_test", root), request.param)


def test_after_sigkill_the_rerun_trains_only_the_epochs_left(real_run):
    record = progress(real_run.run)
    given = record["invocations"][-1]["argv"]
    assert given[given.index("--train_files") + 1].endswith("train." + ("sdb" if real_run.clips == "sdb" else "csv"))
    assert KILL_AFTER <= real_run.killed_at < EPOCHS
    assert [e["epoch"] for e in record["epochs"]] == list(range(1, EPOCHS + 1))
    *_, resumed = record["invocations"]
    assert (resumed["first_epoch"], resumed["epochs"], resumed["load_train"]) == (
        real_run.killed_at + 1, EPOCHS - real_run.killed_at, "last")
    assert resumed["outcome"] == "finished"
    training = json.loads((real_run.run / "reports" / "metrics.json").read_text())["training"]
    assert all(e["train_loss"] is not None and e["dev_loss"] is not None for e in training["epochs"])
    assert (real_run.run / "checkpoints" / (training["best"]["checkpoint"] + ".index")).exists()


def test_the_optimizer_ran_three_real_trials_and_the_test_decodes_with_its_scorer(real_run):
    found = json.loads((real_run.run / "optimize" / "alpha_beta.json").read_text())
    (round_,) = json.loads((real_run.run / "optimize" / "trials.json").read_text())["rounds"]
    assert len(round_["reported"]) == 3 and all(t["value"] is not None for t in round_["reported"])
    test = json.loads((real_run.run / "reports" / "metrics.json").read_text())["test"]
    assert (test["lm_alpha"], test["lm_beta"], test["alpha_beta"]) == (found["alpha"], found["beta"], "optimized")
    assert test["scorer"] == str(real_run.run / "optimize" / "kenlm.scorer")
    (sample,) = json.loads((real_run.run / "reports" / "test_output.json").read_text())
    assert (sample["src"], sample["res"]) == (SENTENCE, SENTENCE)
    assert (real_run.run / "reports" / "report.html").exists() and (real_run.run / "reports" / "loss.png").exists()


def test_every_export_carries_the_languages_metadata(real_run):
    models = real_run.run / "models"
    assert sorted(p.name for p in models.iterdir()) == [
        "fr-fr.zip", "output_graph.pb", "output_graph.pb.md", "output_graph.pbmm", "output_graph.tflite",
        "output_graph.tflite.md"]
    assert "language: fr-FR" in (models / "output_graph.tflite.md").read_text()


@pytest.mark.parametrize("tarball, model, runtime", [
    ("model_tensorflow_fr.tar.xz", "output_graph.pbmm", "DEEPSPEECH_RUNTIME"),
    ("model_tflite_fr.tar.xz", "output_graph.tflite", "DEEPSPEECH_TFLITE_RUNTIME"),
])
def test_the_released_models_transcribe_the_clip_in_the_official_runtimes(real_run, tarball, model, runtime,
                                                                          tmp_path):
    release = extract(real_run.run / "package" / tarball, tmp_path / "release")
    heard = transcribe(os.environ[runtime], release / model, release / "kenlm.scorer", real_run.wav)
    assert heard == SENTENCE


def test_the_pb_transcribes_like_its_pbmm(real_run):
    models, scorer = real_run.run / "models", real_run.run / "optimize" / "kenlm.scorer"
    runtime = os.environ["DEEPSPEECH_RUNTIME"]
    assert transcribe(runtime, models / "output_graph.pb", scorer, real_run.wav) == SENTENCE
    assert transcribe(runtime, models / "output_graph.pbmm", scorer, real_run.wav) == SENTENCE


def test_the_check_stage_names_the_cpu_and_warns(real_run):
    log = (real_run.run / "logs" / "check.log").read_text()
    assert "TensorFlow 1.15.5 (a CPU-only build); GPUs: none" in log
    assert "training will run on the CPU" in log


@pytest.mark.parametrize("clips", ["wav", "sdb"])
def test_the_last_checkpoint_of_an_overfitted_model_transcribes_its_training_clips(kenlm_dir, tmp_path,  # noqa: F811
                                                                                   clips):
    require_trainer()
    need_real(bool(os.environ.get("DEEPSPEECH_TFLITE_RUNTIME") and os.environ.get("GENERATE_SCORER_PACKAGE")),
              "set DEEPSPEECH_TFLITE_RUNTIME and GENERATE_SCORER_PACKAGE (tests/trainer_env.sh)")
    data = tmp_path / "data"
    config = real_config(tmp_path, OVERFIT, kenlm_dir, clips=clips, export=['formats = ["tflite"]'],
                         train=['model_checkpoint = "last"', f"epochs = {OVERFIT_EPOCHS}", "train_batch_size = 3"])
    dstrain("run", "-l", "fr", "--config", config, "--to", "export")
    run = data / "runs" / "fr"
    training = json.loads((run / "reports" / "metrics.json").read_text())["training"]
    assert training["model"]["which"] == "last" and training["model"]["epoch"] == OVERFIT_EPOCHS
    # The dev sentence is not learnt: its loss bottoms out early, so the best-dev checkpoint is another one.
    best = training["best"]
    assert best["epoch"] < OVERFIT_EPOCHS and best["checkpoint"] != training["model"]["checkpoint"]
    wavs = {row.text: imported_wav(data, clips, Path(row.key).stem, tmp_path)
            for row in OVERFIT if row.split == "train"}
    heard = transcribe(os.environ["DEEPSPEECH_TFLITE_RUNTIME"], run / "models" / "output_graph.tflite", None,
                       *wavs.values()).splitlines()
    errors = sum(word_errors(text, said) for text, said in zip(wavs, heard))
    wer = errors / sum(len(text.split()) for text in wavs)
    assert wer < 0.2, list(zip(wavs, heard))
