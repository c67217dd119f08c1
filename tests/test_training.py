"""train, evaluate, export and package through the real CLI, with the DeepSpeech 0.9.3 test double.

The double (tests/deepspeech_double) is put on the PYTHONPATH of the trainer's Python only, through a
wrapper given as TRAINER_PYTHON; dstrain runs it exactly as it would run DeepSpeech.
"""
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest

from dstrain.languages.fr import LANGUAGE as FR
from tests.conftest import clean_env, dstrain, write_config

REPO = Path(__file__).resolve().parents[1]
DOUBLE = Path(__file__).with_name("deepspeech_double")
FAKE_SCORER = Path(__file__).with_name("fake_generate_scorer_package.py")
ENGLISH_ALPHABET = "# English\n \n" + "\n".join("abcdefghijklmnopqrstuvwxyz'") + "\n"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def tools(tmp_path_factory):
    """The trainer's Python (with the double on its path), a .pbmm converter and a scorer packager."""
    root = tmp_path_factory.mktemp("tools")
    python = executable(root / "trainer" / "python", f'#!/bin/sh\nPYTHONPATH="{DOUBLE}" exec "{sys.executable}" "$@"\n')
    converter = executable(root / "convert_graphdef_memmapped_format", (
        f"#!{sys.executable}\nimport sys\nargs = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "data = open(args['in_graph'], 'rb').read()\nopen(args['out_graph'], 'wb').write(b'PBMM' + data)\n"))
    scorer = executable(root / "generate_scorer_package", f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SCORER}" "$@"\n')
    return {"python": python, "converter": converter, "scorer": scorer}


@pytest.fixture(scope="session")
def kenlm_dir(tmp_path_factory) -> Path:
    """KenLM's tools from docker/build_kenlm.sh (cached per machine), for a real lm stage."""
    prefix = tmp_path_factory.mktemp("kenlm")
    subprocess.run(["bash", str(REPO / "docker" / "build_kenlm.sh"), str(prefix)], check=True, timeout=1800)
    return prefix / "bin"


@pytest.fixture(scope="module", params=["wav", "sdb"])
def prepared(cv_archive, tmp_path_factory, request) -> Path:
    """A data root with the French test release imported, cleaned and its alphabet built, shared read-only: once
    with WAVs and CSVs, once with sample databases (clips.format), as every stage that reads clips reads both."""
    root = tmp_path_factory.mktemp("prepared")
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(str(cv_archive), str(data / "sources" / cv_archive.name))
    config = write_config(root / "dstrain.toml", data, clips=request.param)
    dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    return data


def clip_format(data: Path) -> str:
    """The clips.format a prepared data root was imported with."""
    return "sdb" if (data / "runs" / "fr" / "clean" / "train.sdb").exists() else "wav"


def clean_set(data: Path, split: str) -> Path:
    """The set clean wrote for ``split``, as DeepSpeech is given it: a CSV or a sample database."""
    return data / "runs" / "fr" / "clean" / (split + (".sdb" if clip_format(data) == "sdb" else ".csv"))


def toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, (list, tuple)) else "[" + ", ".join(map(json.dumps, value)) + "]"


class Scenario:
    """A copy of the prepared data root, its config, and the double's record of every invocation."""

    def __init__(self, tmp_path: Path, prepared: Path, tools, **sections):
        self.root = tmp_path
        self.data = tmp_path / "data"
        shutil.copytree(str(prepared), str(self.data))
        self.tools = tools
        self.record = tmp_path / "deepspeech-calls.jsonl"
        self.sections = {"train": {"epochs": 10, "n_hidden": 64, "train_batch_size": 4, "dev_batch_size": 4,
                                   "test_batch_size": 4, "early_stop": False, "smoke": False},
                         "export": {"convert_graphdef_memmapped_format": str(self.tools["converter"])}}
        self.configure(**sections)

    def configure(self, **sections) -> None:
        """Change these settings, keeping those set before; rewrites the config file."""
        for name, values in sections.items():
            self.sections.setdefault(name, {}).update(values)
        self.config = write_config(self.root / "dstrain.toml", self.data, clips=clip_format(self.data))
        with self.config.open("a") as handle:
            for name, values in self.sections.items():
                handle.write(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))

    def with_lm(self, kenlm_dir: Path) -> "Scenario":
        """A real lm stage on the training transcripts alone, packaged by the fake generate_scorer_package."""
        self.configure(lm={"sources": [], "kenlm_bin": str(kenlm_dir), "scorer_tool": str(self.tools["scorer"]),
                           "memory": "64M"})
        return self

    def run(self, *args, check=True, **env) -> subprocess.CompletedProcess:
        env = clean_env(TRAINER_PYTHON=str(self.tools["python"]), DS_DOUBLE_RECORD=str(self.record),
                        FAKE_SCORER_LOG=str(self.root / "scorer-calls.jsonl"), **env)
        return dstrain("run", "-l", "fr", "--config", self.config, *args, env=env, check=check)

    @property
    def run_dir(self) -> Path:
        return self.data / "runs" / "fr"

    def calls(self):
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        return [json.loads(line) for line in lines]

    def metrics(self):
        return json.loads((self.run_dir / "reports" / "metrics.json").read_text())

    def best_checkpoint(self) -> str:
        return (self.run_dir / "checkpoints" / "best_dev_checkpoint").read_text().split('"')[1]


def training_calls(scenario):
    return [c for c in scenario.calls() if c["flags"]["train_files"]]


def argv_value(call, flag):
    argv = call["argv"]
    return argv[argv.index("--" + flag) + 1] if "--" + flag in argv else None


# Dev losses by epoch over the whole run: the best is epoch 2; after the crash at epoch 3 DeepSpeech,
# which forgets its best on a resume, saves worse ones as "new best".
DEV_LOSSES = "30,20,10,40,35,30,25,15,12,11"


@pytest.fixture(scope="module")
def crashed_then_resumed(prepared, tools, kenlm_dir, tmp_path_factory):
    scenario = Scenario(tmp_path_factory.mktemp("crash"), prepared, tools).with_lm(kenlm_dir)
    crashed = scenario.run("--to", "package", check=False, DS_DOUBLE_CRASH_AT_EPOCH="3",
                           DS_DOUBLE_DEV_LOSSES=DEV_LOSSES)
    progress_after_crash = json.loads((scenario.run_dir / "checkpoints" / "dstrain-progress.json").read_text())
    resumed = scenario.run("--to", "package", DS_DOUBLE_DEV_LOSSES=DEV_LOSSES)
    return scenario, crashed, progress_after_crash, resumed


def test_crash_at_epoch_3_of_10_then_rerun_trains_the_remaining_7(crashed_then_resumed):
    scenario, crashed, progress, resumed = crashed_then_resumed
    assert crashed.returncode == 1
    assert "stage train failed: DeepSpeech failed (exit code 1) after 3 of 10 epochs" in crashed.stderr
    assert "told to crash at epoch 3" in crashed.stderr and "dstrain run -l fr --config" in crashed.stderr
    assert progress["epochs_done"] == 3
    first, second = training_calls(scenario)
    assert argv_value(first, "epochs") == "10" and argv_value(first, "load_train") == "init"
    assert argv_value(second, "epochs") == "7" and argv_value(second, "load_train") == "last"
    checkpoints = scenario.run_dir / "checkpoints"
    assert argv_value(second, "load_checkpoint_dir") == str(checkpoints)
    assert argv_value(second, "save_checkpoint_dir") == str(checkpoints)
    assert "resuming: 3 of 10 epochs were done" in resumed.stderr

    training = scenario.metrics()["training"]
    assert [e["epoch"] for e in training["epochs"]] == list(range(1, 11))
    assert [e["dev_loss"] for e in training["epochs"]] == [float(v) for v in DEV_LOSSES.split(",")]
    assert [(i["first_epoch"], i["epochs"], i["outcome"]) for i in training["invocations"]] == [
        (1, 10, "crashed"), (4, 7, "finished")]
    for name in ("evaluate", "export", "package"):
        assert (scenario.run_dir / "state" / (name + ".json")).exists()


def test_a_better_best_after_the_resume_replaces_the_one_from_before_the_crash(prepared, tools, kenlm_dir, tmp_path):
    # Found by the real trainer: the best protected before the resume was put back over a better new one.
    scenario = Scenario(tmp_path, prepared, tools).with_lm(kenlm_dir)
    losses = "30,20,10,40,35,30,25,8,6,5"
    scenario.run("--to", "train", check=False, DS_DOUBLE_CRASH_AT_EPOCH="3", DS_DOUBLE_DEV_LOSSES=losses)
    resumed = scenario.run("--to", "train", DS_DOUBLE_DEV_LOSSES=losses)
    training = scenario.metrics()["training"]
    assert training["best"]["epoch"] == 10 and training["best"]["dev_loss"] == 5.0
    assert scenario.best_checkpoint() == training["best"]["checkpoint"]
    assert [e["event"] for e in training["events"]].count("earlier_best_kept") == 4
    assert "is kept" not in resumed.stderr


def test_a_worse_best_saved_after_the_resume_does_not_replace_the_real_best(crashed_then_resumed):
    scenario, _, _, resumed = crashed_then_resumed
    training = scenario.metrics()["training"]
    assert training["best"]["epoch"] == 3 and training["best"]["dev_loss"] == 10.0
    assert scenario.best_checkpoint() == training["best"]["checkpoint"]
    assert [e["event"] for e in training["events"]].count("earlier_best_kept") == 7
    assert "epoch 3's (dev loss 10.0) is kept" in resumed.stderr
    # Every later stage loaded that checkpoint, from the run's own directory.
    for call in scenario.calls()[2:]:
        assert call["flags"]["checkpoint_dir"] == str(scenario.run_dir / "checkpoints")
        assert call["flags"]["load_evaluate"] == "best"


def test_checkpoint_state_files_name_checkpoints_relative_to_their_directory(crashed_then_resumed):
    scenario = crashed_then_resumed[0]
    checkpoints = scenario.run_dir / "checkpoints"
    named = set()
    for state in ("checkpoint", "best_dev_checkpoint"):
        text = (checkpoints / state).read_text()
        assert str(scenario.data) not in text and "model_checkpoint_path" in text
        named.update(line.split('"')[1] for line in text.splitlines() if '"' in line)
    # The crashed invocation's epoch checkpoints, which TensorFlow never deletes, are gone.
    assert {p.name[:-len(".index")] for p in checkpoints.glob("*.index")} == named
    assert len([n for n in named if n.startswith("train-")]) == 5  # max_to_keep


def test_a_finished_run_reruns_nothing(crashed_then_resumed):
    scenario = crashed_then_resumed[0]
    calls = len(scenario.calls())
    again = scenario.run("--to", "package")
    for stage in ("train", "evaluate", "export", "package"):
        assert f"✓ {stage:<9} up to date" in again.stderr
    assert len(scenario.calls()) == calls


def test_evaluate_uses_the_scorer_and_reports_wer_and_cer_per_dataset(crashed_then_resumed):
    scenario = crashed_then_resumed[0]
    test_call = next(c for c in scenario.calls() if c["flags"]["test_files"])
    scorer = scenario.run_dir / "lm" / "kenlm.scorer"
    assert test_call["flags"]["scorer_path"] == str(scorer)
    assert test_call["flags"]["test_files"] == str(clean_set(scenario.data, "test"))
    samples = json.loads((scenario.run_dir / "reports" / "test_output.json").read_text())
    assert set(samples[0]) == {"wav_filename", "src", "res", "loss", "char_distance", "char_length",
                               "word_distance", "word_length", "cer", "wer"}
    test = scenario.metrics()["test"]
    words = sum(s["word_length"] for s in samples)
    assert test["overall"]["wer"] == pytest.approx(sum(s["word_distance"] for s in samples) / words)
    assert test["overall"]["clips"] == len(samples) == 3
    assert test["datasets"] == {"common_voice": test["overall"]}
    assert test["scorer"] == str(scorer) and test["lm_alpha"] is not None


def test_report_has_the_loss_curve_and_its_data(crashed_then_resumed):
    scenario = crashed_then_resumed[0]
    reports = scenario.run_dir / "reports"
    assert (reports / "loss.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    html = (reports / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html and "loss.png" not in html
    markdown = (reports / "report.md").read_text()
    assert "![Training and validation loss per epoch](loss.png)" in markdown
    assert "| all | 3 |" in markdown and "Lowest dev loss: epoch 3, 10.00." in markdown
    assert "The model is epoch 3's checkpoint" in markdown and "train.model_checkpoint = best" in markdown
    # Resumed after the crash in epoch 4: said in words (the curve draws a line there).
    assert "Epoch 4: training resumed from the last checkpoint." in markdown
    for title in ("### Best", "### Median", "### Worst"):
        assert title in markdown
    # The caption names what the curve draws: this run was resumed.
    assert "dotted lines mark where training was resumed after a stop" in markdown
    # Every sample row has a player whose link, relative to the report, reaches its clip; its length shows before
    # it is played.
    players = re.findall(r'<audio controls preload="metadata" src="([^"]+)"></audio>', html)
    examples = scenario.metrics()["test"]["examples"]
    assert len(players) == sum(len(rows) for rows in examples.values()) == 3
    for link in players:
        clip = (reports / unquote(link)).resolve()
        assert clip.is_file() and clip.read_bytes()[:4] == b"RIFF"
    links = re.findall(r"\[[^]]*fr_test_[^]]+\]\(([^)]+)\)", markdown)
    assert len(links) == 3
    for link in links:
        assert (reports / unquote(link)).resolve().is_file()


def test_exports_carry_the_metadata_and_the_beam_width(crashed_then_resumed):
    scenario = crashed_then_resumed[0]
    models = scenario.run_dir / "models"
    assert sorted(p.name for p in models.iterdir()) == [
        "fr-fr.zip", "output_graph.pb", "output_graph.pb.md", "output_graph.pbmm", "output_graph.tflite",
        "output_graph.tflite.md"]
    tflite = json.loads((models / "output_graph.tflite").read_text())
    assert tflite["runtime"] == "tflite" and tflite["beam_width"] == 500 and tflite["language"] == "fr-FR"
    meta = FR.model_metadata()
    assert " " in meta.description
    card = (models / "output_graph.tflite.md").read_text()
    assert card.splitlines()[-1] == meta.description  # one argv item: absl would keep only its first word
    assert f"author: {meta.author}\n" in card and "runtime: tflite\n" in card
    export_calls = [c for c in scenario.calls() if c["flags"]["export_dir"]]
    assert len(export_calls) == 3
    for call in export_calls:
        assert call["argv"][call["argv"].index("--export_description") + 1] == meta.description
        assert call["flags"]["export_beam_width"] == 500
    zip_call = next(c for c in export_calls if c["flags"]["export_zip"])
    assert zip_call["flags"]["scorer_path"] == str(scenario.run_dir / "lm" / "kenlm.scorer")


def test_packages_hold_exactly_the_listed_files_and_their_checksums_verify(crashed_then_resumed):
    scenario = crashed_then_resumed[0]
    package = scenario.run_dir / "package"
    assert sorted(p.name for p in package.iterdir()) == [
        "README.md", "SHA256SUMS", "checkpoint_fr.tar.xz", "fr-fr.zip", "model_tensorflow_fr.tar.xz",
        "model_tflite_fr.tar.xz"]

    def members(name):
        with tarfile.open(str(package / name)) as tar:
            return sorted(tar.getnames())

    assert members("model_tflite_fr.tar.xz") == ["alphabet.txt", "kenlm.scorer", "output_graph.tflite"]
    assert members("model_tensorflow_fr.tar.xz") == ["alphabet.txt", "kenlm.scorer", "output_graph.pbmm"]
    best = scenario.best_checkpoint()
    assert members("checkpoint_fr.tar.xz") == sorted([
        "best_dev_checkpoint", best + ".data-00000-of-00001", best + ".index", best + ".meta", "alphabet.txt",
        "flags.txt"])
    with tarfile.open(str(package / "checkpoint_fr.tar.xz")) as tar:
        state = tar.extractfile("best_dev_checkpoint").read().decode()
    assert state == f'model_checkpoint_path: "{best}"\nall_model_checkpoint_paths: "{best}"\n'
    with zipfile.ZipFile(str(package / "fr-fr.zip")) as archive:
        assert sorted(archive.namelist()) == sorted([
            "output_graph.tflite", "kenlm.scorer", "DeepSpeech-FR-Team_deepspeech-fr_0.1.0.md"])

    sums = (package / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 5
    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((package / name).read_bytes()).hexdigest() == digest
    card = (package / "README.md").read_text()
    assert "| common_voice | cv-corpus-99.0-2099-01-01 | CC0-1.0 |" in card
    assert "deepspeech --model output_graph.tflite --scorer kenlm.scorer --audio clip.wav" in card
    assert "libdeepspeech" in card and "| n_hidden | 64 |" in card


def test_out_of_memory_halves_the_batch_and_resumes_from_the_last_checkpoint(prepared, tools, tmp_path):
    # The prepared run has 9 train, 3 dev and 3 test clips: a dev batch of 4 is one batch of the 3.
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 4, "train_batch_size": 4,
                                                          "dev_batch_size": 4, "test_batch_size": 3})
    proc = scenario.run("--from", "train", "--to", "evaluate", DS_DOUBLE_OOM_ABOVE_BATCH="2",
                        DS_DOUBLE_OOM_AT_EPOCH="1")
    assert "out of memory: batch sizes 4/4 (train/dev) halved to 2/2" in proc.stderr
    first, second = training_calls(scenario)
    assert argv_value(first, "train_batch_size") == "4" and argv_value(first, "load_train") == "init"
    assert argv_value(first, "dev_batch_size") == "3"
    assert argv_value(second, "train_batch_size") == "2" and argv_value(second, "dev_batch_size") == "2"
    assert argv_value(second, "load_train") == "last" and argv_value(second, "epochs") == "3"
    training = scenario.metrics()["training"]
    assert [e["epoch"] for e in training["epochs"]] == [1, 2, 3, 4]
    assert [e["train_batch_size"] for e in training["epochs"]] == [4, 2, 2, 2]
    assert [e["steps"] for e in training["epochs"]] == [2, 4, 4, 4]  # 9 // 4, then 9 // 2
    assert [e for e in training["events"] if e["event"] == "out_of_memory"] == [
        {"event": "out_of_memory", "epoch": 2, "train_batch_size": [4, 2], "dev_batch_size": [4, 2]}]
    assert [i["outcome"] for i in training["invocations"]] == ["out_of_memory", "finished"]
    tests = [c for c in scenario.calls() if c["flags"]["test_files"]]
    assert [c["flags"]["test_batch_size"] for c in tests] == [3, 1]
    config = json.loads((scenario.run_dir / "config.json").read_text())
    assert config["train.train_batch_size"]["used"] == 2
    assert config["train.train_batch_size"]["why"] == "halved from 4 to 2 after running out of memory"

    # Without a scorer, the test still runs, and says what that means.
    test = scenario.metrics()["test"]
    assert test["scorer"] is None and test["note"].startswith("No scorer")
    assert any("No scorer was used" in tip for tip in test["advice"])
    assert "scorer_path" not in " ".join(tests[-1]["argv"])


def test_out_of_memory_at_the_smallest_batch_stops_with_advice(prepared, tools, tmp_path):
    scenario = Scenario(tmp_path, prepared, tools, train={"train_batch_size": 8, "min_batch_size": 8})
    proc = scenario.run("--from", "train", "--to", "train", check=False, DS_DOUBLE_OOM_ABOVE_BATCH="4")
    assert proc.returncode == 1
    assert "train.min_batch_size = 8 allows no smaller" in proc.stderr and "n_hidden" in proc.stderr


def test_early_stop_plateau_and_overfitting_are_recorded_and_explained(prepared, tools, tmp_path):
    scenario = Scenario(tmp_path, prepared, tools, train={
        "early_stop": True, "es_epochs": 2, "reduce_lr_on_plateau": True, "plateau_epochs": 1})
    scenario.run("--from", "train", "--to", "evaluate", DS_DOUBLE_DEV_LOSSES="50,40,45,46,47")
    metrics = scenario.metrics()
    training = metrics["training"]
    assert training["stopped_early"] is True and training["epochs_done"] == 4
    assert training["best"]["epoch"] == 2
    events = [(e["event"], e["epoch"]) for e in training["events"]]
    assert events == [("plateau", 3), ("early_stop", 4)]
    assert [e["learning_rate"] for e in training["epochs"]] == pytest.approx([1e-4, 1e-4, 1e-4, 1e-5])
    assert any("overfitting" in tip for tip in metrics["test"]["advice"])
    # Training finished (early), so the stage is done: a rerun trains nothing.
    again = scenario.run("--from", "train", "--to", "evaluate")
    assert "✓ train     up to date" in again.stderr


def test_booleans_are_passed_so_that_absl_reads_them(prepared, tools, tmp_path):
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 1})
    scenario.run("--from", "train", "--to", "train")
    call = training_calls(scenario)[0]
    assert "--show_progressbar=false" in call["argv"] and "--early_stop=false" in call["argv"]
    assert call["flags"]["show_progressbar"] is False and call["flags"]["early_stop"] is False
    flags = (scenario.run_dir / "checkpoints" / "flags.txt").read_text().splitlines()
    assert "--noshow_progressbar" in flags and "--noearly_stop" in flags and "--n_hidden=64" in flags


def test_a_graph_change_is_refused_until_forced(prepared, tools, tmp_path):
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2})
    scenario.run("--from", "train", "--to", "train")
    scenario.configure(train={"epochs": 2, "n_hidden": 32})
    refused = scenario.run("--from", "train", "--to", "train", check=False)
    assert refused.returncode == 1
    assert "n_hidden changed" in refused.stderr and "n_hidden 64" in refused.stderr
    assert "--run NAME" in refused.stderr and "--force train" in refused.stderr
    forced = scenario.run("--from", "train", "--to", "train", "--force", "train")
    assert "--force train: deleting the" in forced.stderr
    calls = training_calls(scenario)
    assert len(calls) == 2 and argv_value(calls[-1], "load_train") == "init"
    assert argv_value(calls[-1], "n_hidden") == "32"


def test_more_epochs_continue_from_the_last_checkpoint(prepared, tools, tmp_path):
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2})
    scenario.run("--from", "train", "--to", "train")
    scenario.configure(train={"epochs": 3})
    scenario.run("--from", "train", "--to", "train")
    calls = training_calls(scenario)
    assert argv_value(calls[-1], "epochs") == "1" and argv_value(calls[-1], "load_train") == "last"
    assert scenario.metrics()["training"]["epochs_done"] == 3


def source_checkpoint(tools, directory: Path, alphabet_text: str, prepared: Path) -> Path:
    """A checkpoint trained by the double itself on another alphabet, with its alphabet.txt beside it."""
    directory.mkdir(parents=True)
    (directory / "alphabet.txt").write_text(alphabet_text, encoding="utf-8")
    subprocess.run([str(tools["python"]), "-m", "deepspeech_training.train", "--alphabet_config_path",
                    str(directory / "alphabet.txt"), "--train_files", str(clean_set(prepared, "train")), "--dev_files",
                    str(clean_set(prepared, "dev")), "--checkpoint_dir", str(directory), "--n_hidden", "64",
                    "--epochs", "1", "--train_cudnn"], check=True, capture_output=True, env=clean_env())
    return directory


def test_another_alphabet_means_transfer_learning(prepared, tools, tmp_path):
    source = source_checkpoint(tools, tmp_path / "english", ENGLISH_ALPHABET, prepared)
    scenario = Scenario(tmp_path / "run", prepared, tools, train={"epochs": 2, "source_checkpoint": str(source)})
    proc = scenario.run("--from", "train", "--to", "export")
    assert "training mode: transfer learning: the alphabets differ (only in the source: 'k' 'q'" in proc.stderr
    assert "only in this run: 'à' 'è' 'é'" in proc.stderr and "(train.drop_source_layers = 1)" in proc.stderr
    first, *_ = training_calls(scenario)
    assert argv_value(first, "load_checkpoint_dir") == str(source) and argv_value(first, "load_train") == "best"
    assert argv_value(first, "drop_source_layers") == "1"
    assert "--load_cudnn=true" in first["argv"]  # the source was trained with cuDNN, this run is not
    assert "--force_initialize_learning_rate=true" in first["argv"]
    assert argv_value(first, "save_checkpoint_dir") == str(scenario.run_dir / "checkpoints")
    mode = scenario.metrics()["training"]["mode"]
    assert mode["mode"] == "transfer_learning" and mode["drop_source_layers"] == 1
    for call in scenario.calls()[1:]:
        assert call["flags"]["checkpoint_dir"] == str(scenario.run_dir / "checkpoints")
        assert call["flags"]["drop_source_layers"] == 0


def test_the_same_alphabet_means_fine_tuning_as_in_english_compatible_mode(prepared, tools, tmp_path):
    source = source_checkpoint(tools, tmp_path / "english", ENGLISH_ALPHABET, prepared)
    scenario = Scenario(tmp_path / "run", prepared, tools, train={"epochs": 2, "source_checkpoint": str(source)})
    scenario.run("--from", "clean", "--to", "alphabet", "--english-compatible")
    proc = scenario.run("--from", "train", "--to", "train", "--english-compatible")
    assert "training mode: fine tuning: the source alphabet" in proc.stderr
    assert "english_compatible is on" in proc.stderr
    first = training_calls(scenario)[0]
    assert argv_value(first, "load_checkpoint_dir") == str(source)
    assert "--drop_source_layers" not in first["argv"]
    assert scenario.metrics()["training"]["mode"]["mode"] == "fine_tuning"


def test_the_source_is_not_needed_once_the_run_has_its_own_checkpoints(prepared, tools, tmp_path):
    source = source_checkpoint(tools, tmp_path / "english", ENGLISH_ALPHABET, prepared)
    scenario = Scenario(tmp_path / "run", prepared, tools, train={"epochs": 1, "source_checkpoint": str(source)})
    scenario.run("--from", "train", "--to", "train")
    shutil.rmtree(str(source))
    scenario.configure(train={"epochs": 2, "source_checkpoint": str(source)})
    proc = scenario.run("--from", "train", "--to", "train")
    assert "changed (or is gone) since this run started from it" in proc.stderr
    last = training_calls(scenario)[-1]
    assert argv_value(last, "load_train") == "last" and "--drop_source_layers" not in last["argv"]
    assert scenario.metrics()["training"]["mode"]["mode"] == "transfer_learning"
