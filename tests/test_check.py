"""The check stage fails before any download when training could not run, saying what to set; the smoke training.

The fast tests use the DeepSpeech double (tests/deepspeech_double, with its TensorFlow, decoder and optuna
stand-ins for the probe) and the tests' own Python, which has none of DeepSpeech's packages.  The last test runs
`dstrain check --smoke` with the real trainer (tests/trainer_env.sh).
"""
import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_env, dstrain, write_config
from tests.test_deepspeech_real import require_trainer
from tests.test_training import DOUBLE, Scenario, clip_format, executable, kenlm_dir, prepared, tools  # noqa: F401


@pytest.fixture
def fake_lm_tools(tmp_path) -> dict:
    """Executables with the names of KenLM's tools and generate_scorer_package: the check only finds them."""
    kenlm = tmp_path / "kenlm"
    for name in ("lmplz", "filter", "build_binary"):
        executable(kenlm / name, "#!/bin/sh\nexit 0\n")
    return {"kenlm_bin": kenlm, "scorer_tool": executable(tmp_path / "scorer" / "generate_scorer_package",
                                                          "#!/bin/sh\nexit 0\n")}


def config(tmp_path: Path, lm: dict = None, train: dict = None) -> Path:
    path = write_config(tmp_path / "dstrain.toml", tmp_path / "data", url="http://127.0.0.1:9/never.tar.gz")
    lines = ["[lm]\n"] + [f'{key} = "{value}"\n' for key, value in (lm or {}).items()]
    lines += ["[train]\n"] + [f"{key} = {json.dumps(value)}\n" for key, value in (train or {}).items()]
    path.write_text(path.read_text() + "".join(lines))
    return path


def nothing_downloaded(tmp_path: Path) -> None:
    run = tmp_path / "data" / "runs" / "fr"
    assert not (run / "logs" / "download.log").exists() and not (run / "state" / "download.json").exists()
    assert not (tmp_path / "data" / "imported").exists()


def test_a_full_run_without_deepspeech_stops_at_check_naming_trainer_python(tmp_path, fake_lm_tools):
    # The tests' own Python: no deepspeech_training, no TensorFlow.
    proc = dstrain("run", "-l", "fr", "--config", config(tmp_path, fake_lm_tools), check=False,
                   env=clean_env(TRAINER_PYTHON=sys.executable))
    assert proc.returncode != 0
    assert "stage check failed" in proc.stderr
    assert f"the trainer's Python {sys.executable} (TRAINER_PYTHON) cannot train: it cannot import " \
        "deepspeech_training (ModuleNotFoundError" in proc.stderr
    assert "cannot import tensorflow" in proc.stderr
    assert "Set TRAINER_PYTHON (or train.trainer_python" in proc.stderr and "/usr/bin/python3" in proc.stderr
    assert "Traceback" not in proc.stderr
    nothing_downloaded(tmp_path)


def test_a_new_machine_is_told_everything_it_lacks_at_once(tmp_path):
    proc = dstrain("run", "-l", "fr", "--config", config(tmp_path), check=False,
                   env=clean_env(TRAINER_PYTHON=sys.executable, PATH="/usr/bin:/bin"))
    assert proc.returncode != 0 and "3 things to set before this run can work:" in proc.stderr
    first, second, third = proc.stderr.split("\n1. ")[1].split("\n2. ")[0], \
        proc.stderr.split("\n2. ")[1].split("\n3. ")[0], proc.stderr.split("\n3. ")[1]
    assert first.startswith("lmplz was not found on PATH, and lm.kenlm_bin is not set")
    assert second.startswith("generate_scorer_package was not found on PATH, and lm.scorer_tool is not set")
    assert third.startswith(f"the trainer's Python {sys.executable} (TRAINER_PYTHON) cannot train")
    nothing_downloaded(tmp_path)


def test_a_trainer_python_that_does_not_exist_is_named_with_its_setting(tmp_path, fake_lm_tools):
    missing = tmp_path / "no-such-venv" / "bin" / "python"
    proc = dstrain("check", "-l", "fr", "--config", config(tmp_path, fake_lm_tools, {"trainer_python": str(missing)}),
                   check=False, env=clean_env(TRAINER_PYTHON=sys.executable))
    assert proc.returncode != 0
    assert f"the trainer's Python {missing} (train.trainer_python) cannot train: it cannot be run (No such " \
        "file" in proc.stderr


def test_tensorflow_2_is_refused_with_the_version_deepspeech_needs(tmp_path, fake_lm_tools, tools):  # noqa: F811
    proc = dstrain("check", "-l", "fr", "--config", config(tmp_path, fake_lm_tools), check=False,
                   env=clean_env(TRAINER_PYTHON=str(tools["python"]), DS_DOUBLE_TENSORFLOW="2.4.0"))
    assert proc.returncode != 0
    assert "it has tensorflow 2.4.0, and DeepSpeech 0.9.3 needs 1.15" in proc.stderr
    assert "deepspeech_training" not in proc.stderr.split("needs 1.15")[0].split("(TRAINER_PYTHON)")[1]


def test_the_good_trainer_is_described_with_its_versions_and_device(tmp_path, fake_lm_tools, tools):  # noqa: F811
    proc = dstrain("check", "-l", "fr", "--config", config(tmp_path, fake_lm_tools),
                   env=clean_env(TRAINER_PYTHON=str(tools["python"])))
    assert "deepspeech_training 0.9.3, ds_ctcdecoder 0.9.3" in proc.stderr and "tensorflow 1.15.5" in proc.stderr
    assert "TensorFlow 1.15.5 (a CPU-only build); GPUs: none" in proc.stderr
    assert "no GPU is visible to TensorFlow" in proc.stderr
    assert f"generate_scorer_package: {fake_lm_tools['scorer_tool']}" in proc.stderr
    assert "smoke training" not in proc.stderr  # only with --smoke


def test_a_missing_scorer_tool_names_its_setting_before_any_download(tmp_path, fake_lm_tools, tools):  # noqa: F811
    proc = dstrain("run", "-l", "fr", "--config", config(tmp_path, {"kenlm_bin": fake_lm_tools["kenlm_bin"]}),
                   check=False, env=clean_env(TRAINER_PYTHON=str(tools["python"]), PATH="/usr/bin:/bin"))
    assert proc.returncode != 0
    assert "generate_scorer_package was not found on PATH, and lm.scorer_tool is not set" in proc.stderr
    assert "docker/build_scorer_tool.sh" in proc.stderr
    nothing_downloaded(tmp_path)


def test_optimize_needs_optuna_in_the_trainer(tmp_path, fake_lm_tools):
    script = executable(tmp_path / "ds" / "lm_optimizer.py", "")
    path = config(tmp_path, fake_lm_tools)
    path.write_text(path.read_text() + f'[optimize]\nenabled = true\nscript = "{script}"\n')
    # The double without its optuna stand-in: a trainer that has everything else.
    bare = tmp_path / "double"
    bare.mkdir()
    for package in ("deepspeech_training", "tensorflow", "ds_ctcdecoder"):
        (bare / package).symlink_to(DOUBLE / package)
    python = executable(tmp_path / "trainer" / "python",
                        f'#!/bin/sh\nPYTHONPATH="{bare}" exec "{sys.executable}" "$@"\n')
    proc = dstrain("check", "-l", "fr", "--config", path, check=False, env=clean_env(TRAINER_PYTHON=str(python)))
    assert proc.returncode != 0 and "cannot import optuna" in proc.stderr
    assert f"lm_optimizer.py: {script}" in proc.stderr


def test_check_to_alphabet_needs_neither_trainer_nor_kenlm(tmp_path):
    proc = dstrain("check", "-l", "fr", "--config", config(tmp_path), "--to", "alphabet",
                   env=clean_env(TRAINER_PYTHON=sys.executable, PATH="/usr/bin:/bin"))
    assert "no TensorFlow to ask for GPUs" in proc.stderr and "✓ check" in proc.stderr


def test_without_train_the_trainer_is_not_required(tmp_path):
    proc = dstrain("run", "-l", "fr", "--config", config(tmp_path), "--only", "check",
                   env=clean_env(TRAINER_PYTHON=sys.executable))
    assert "no TensorFlow to ask for GPUs" in proc.stderr and "✓ check" in proc.stderr


def test_from_train_checks_the_trainer_before_anything_else(tmp_path):
    proc = dstrain("run", "-l", "fr", "--config", config(tmp_path), "--from", "train", check=False,
                   env=clean_env(TRAINER_PYTHON=sys.executable))
    assert proc.returncode == 2 and "cannot import deepspeech_training" in proc.stderr
    assert "needs clean" not in proc.stderr


def smoke_calls(scenario):
    return [c for c in scenario.calls() if "/runs/fr/smoke/" in json.dumps(c["flags"])]


def test_the_first_training_of_a_run_is_preceded_by_a_smoke_training(prepared, tools, kenlm_dir,  # noqa: F811
                                                                      tmp_path):
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2, "smoke": True}).with_lm(kenlm_dir)
    proc = scenario.run("--to", "train")
    smoke = smoke_calls(scenario)
    assert [bool(c["flags"]["train_files"]) for c in smoke] == [True, False, False, False]
    assert [c["flags"]["export_tflite"] for c in smoke[2:]] == [True, False]  # tflite, then pb
    assert smoke[0]["flags"]["n_hidden"] == 64 and smoke[0]["flags"]["train_batch_size"] == 1
    train_set = "train.sdb" if clip_format(scenario.data) == "sdb" else "train.csv"
    assert scenario.calls()[len(smoke)]["flags"]["train_files"] == str(scenario.run_dir / "clean" / train_set)
    assert "smoke training: 8 steps on the first 4 clips imported from common_voice" in proc.stderr
    assert "smoke training passed" in proc.stderr
    assert not (scenario.run_dir / "smoke").exists()
    assert "smoke training passed" in (scenario.run_dir / "logs" / "check.log").read_text()
    # The run has trained: later runs need no smoke training.
    scenario.run("--from", "train", "--to", "train", "--force", "train")
    assert len(smoke_calls(scenario)) == 4


def test_a_smoke_training_that_fails_stops_the_run_before_training(prepared, tools, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"smoke": True})
    proc = scenario.run("--from", "train", "--to", "train", check=False, DS_DOUBLE_CRASH_AT_EPOCH="0")
    assert proc.returncode != 0 and "the smoke training failed at its training" in proc.stderr
    assert len(scenario.calls()) == 1 and not (scenario.run_dir / "checkpoints").exists()
    assert not (scenario.run_dir / "smoke").exists()


def test_a_passed_smoke_training_is_not_repeated_until_training_starts(prepared, tools, kenlm_dir,  # noqa: F811
                                                                       tmp_path):
    # Training itself runs out of memory at once (batch 4, the smallest allowed): no checkpoint is written.
    scenario = Scenario(tmp_path, prepared, tools, train={"smoke": True, "min_batch_size": 4}).with_lm(kenlm_dir)
    scenario.run("--from", "train", "--to", "train", check=False, DS_DOUBLE_OOM_ABOVE_BATCH="2")
    assert len(smoke_calls(scenario)) == 4
    proc = scenario.run("--from", "train", "--to", "train", check=False, DS_DOUBLE_OOM_ABOVE_BATCH="2")
    assert len(smoke_calls(scenario)) == 4 and "not repeated" in proc.stderr
    proc = dstrain("check", "-l", "fr", "--config", scenario.config, "--smoke",
                   env=clean_env(TRAINER_PYTHON=str(tools["python"]), DS_DOUBLE_RECORD=str(scenario.record)))
    assert len(smoke_calls(scenario)) == 8  # asked for: run again


def test_train_smoke_false_skips_it(prepared, tools, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 1, "smoke": False})
    scenario.run("--from", "train", "--to", "train")
    assert smoke_calls(scenario) == [] and scenario.calls()


@pytest.mark.deepspeech
def test_smoke_training_with_the_real_trainer_on_deepspeechs_sample(kenlm_dir, tmp_path):  # noqa: F811
    require_trainer()
    path = write_config(tmp_path / "dstrain.toml", tmp_path / "data")
    # lm_optimizer.py marks DeepSpeech's source tree, where its sample clips are.
    path.write_text(path.read_text() + f'[optimize]\nscript = "{os.environ["LM_OPTIMIZER"]}"\n'
                    f'[lm]\nkenlm_bin = "{kenlm_dir}"\nscorer_tool = "{os.environ["GENERATE_SCORER_PACKAGE"]}"\n'
                    '[export]\nformats = ["tflite"]\n')
    proc = dstrain("check", "-l", "fr", "--config", path, "--smoke", env=clean_env())
    sample = Path(os.environ["LM_OPTIMIZER"]).resolve().parent / "data" / "smoke_test"
    assert f"smoke training: 4 steps on DeepSpeech's sample {sample}" in proc.stderr
    assert "tflite export done" in proc.stderr and "exported output_graph.tflite" in proc.stderr
    # The trainer's own lines stay in the stage log, those that name cuDNN as it loads a checkpoint too.
    run = tmp_path / "data" / "runs" / "fr"
    assert "I Loading variable from checkpoint" not in proc.stderr and "deepspeech_training.train" not in proc.stderr
    assert "I Loading variable from checkpoint: cudnn_lstm" in (run / "logs" / "check.log").read_text()
    record = json.loads((run / "state" / "smoke-training.json").read_text())
    assert record["decoded"] == 2 and record["exported"] == ["output_graph.tflite"]
    assert not (run / "smoke").exists()
