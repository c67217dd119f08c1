"""A small real run of DeepSpeech 0.9.3 (n_hidden 64, three epochs on espeak clips): train, evaluate, export.

It needs TRAINER_PYTHON (default python3) able to import deepspeech_training, as in the Docker image;
elsewhere it is skipped.  Run just these with: pytest -m deepspeech

The alpha/beta search also needs DeepSpeech's lm_optimizer.py (LM_OPTIMIZER, a path), its
generate_scorer_package (GENERATE_SCORER_PACKAGE) and KenLM (built by docker/build_kenlm.sh).
"""
import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import dstrain, write_config
from tests.test_training import REPO

pytestmark = pytest.mark.deepspeech


def trainer_importable() -> bool:
    try:
        proc = subprocess.run([os.environ.get("TRAINER_PYTHON", "python3"), "-c", "import deepspeech_training"],
                              capture_output=True, timeout=300)
    except OSError:
        return False
    return proc.returncode == 0


@pytest.fixture(scope="module")
def real_run(cv_archive, tmp_path_factory):
    if not trainer_importable():
        pytest.skip("TRAINER_PYTHON cannot import deepspeech_training (DeepSpeech 0.9.3 runs in the Docker image)")
    root = tmp_path_factory.mktemp("real")
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(str(cv_archive), str(data / "sources" / cv_archive.name))
    config = write_config(root / "dstrain.toml", data)
    config.write_text(config.read_text() + "\n".join([
        "[train]", "n_hidden = 64", "epochs = 3", "train_batch_size = 2", "dev_batch_size = 2",
        "test_batch_size = 2", "early_stop = false", "[export]", 'formats = ["tflite"]', ""]))
    dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    # The lm stage needs its text sources; this run tests the trainer, so it decodes without a scorer.
    dstrain("run", "-l", "fr", "--config", config, "--from", "train", "--to", "export")
    return data / "runs" / "fr"


def test_three_epochs_have_finite_losses_and_a_best_checkpoint(real_run):
    training = json.loads((real_run / "reports" / "metrics.json").read_text())["training"]
    assert [e["epoch"] for e in training["epochs"]] == [0, 1, 2]
    assert all(e["train_loss"] is not None and e["dev_loss"] is not None for e in training["epochs"])
    assert (real_run / "checkpoints" / (training["best"]["checkpoint"] + ".index")).exists()


def test_the_test_output_and_the_report_are_written(real_run):
    samples = json.loads((real_run / "reports" / "test_output.json").read_text())
    assert len(samples) == 3 and {"src", "res", "wer", "cer"} <= set(samples[0])
    assert (real_run / "reports" / "report.html").exists() and (real_run / "reports" / "loss.png").exists()


def test_the_tflite_model_is_exported_with_its_metadata(real_run):
    assert (real_run / "models" / "output_graph.tflite").stat().st_size > 10000
    assert "language: fr-FR" in (real_run / "models" / "output_graph.tflite.md").read_text()


@pytest.fixture(scope="module")
def real_optimized(real_run, tmp_path_factory):
    script, tool = os.environ.get("LM_OPTIMIZER"), os.environ.get("GENERATE_SCORER_PACKAGE")
    if not (script and tool):
        pytest.skip("set LM_OPTIMIZER and GENERATE_SCORER_PACKAGE to DeepSpeech 0.9.3's lm_optimizer.py and tool")
    kenlm = tmp_path_factory.mktemp("kenlm")
    subprocess.run(["bash", str(REPO / "docker" / "build_kenlm.sh"), str(kenlm)], check=True, timeout=1800)
    config = real_run.parents[2] / "dstrain.toml"
    config.write_text(config.read_text() + "\n".join([
        "[lm]", "sources = []", f'kenlm_bin = "{kenlm / "bin"}"', f'scorer_tool = "{tool}"', 'memory = "64M"',
        "[optimize]", "enabled = true", f'script = "{script}"', "trials = 3", "[evaluate]", "beam_width = 50", ""]))
    dstrain("run", "-l", "fr", "--config", config, "--from", "lm", "--to", "evaluate")
    return real_run


def test_the_real_optimizer_finds_a_pair_and_the_test_decodes_with_it(real_optimized):
    result = json.loads((real_optimized / "optimize" / "alpha_beta.json").read_text())
    assert 0 <= result["alpha"] <= 5 and 0 <= result["beta"] <= 5
    (round_,) = json.loads((real_optimized / "optimize" / "trials.json").read_text())["rounds"]
    assert len(round_["reported"]) == 3 and all(t["value"] is not None for t in round_["reported"])
    test = json.loads((real_optimized / "reports" / "metrics.json").read_text())["test"]
    assert (test["lm_alpha"], test["lm_beta"], test["alpha_beta"]) == (result["alpha"], result["beta"], "optimized")
    assert test["scorer"] == str(real_optimized / "optimize" / "kenlm.scorer")
