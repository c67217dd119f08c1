"""A small real run of DeepSpeech 0.9.3 (n_hidden 64, three epochs on espeak clips): train, evaluate, export.

It needs TRAINER_PYTHON (default python3) able to import deepspeech_training, as in the Docker image;
elsewhere it is skipped.  Run just these with: pytest -m deepspeech
"""
import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import dstrain, write_config

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
