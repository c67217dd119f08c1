"""A small run that learns: a batch size larger than its set, with the DeepSpeech 0.9.3 test double.

DeepSpeech drops the last incomplete batch of each training epoch (util/feeding.py's drop_remainder), and the
double does too: with a training set smaller than the batch size it takes no step, and reports a loss of 0.0,
as train.py's run_set does.  dstrain lowers such a batch size to the set's size, says so, and records it.
"""
import json
import zipfile

from dstrain.pipeline.reports import evaluation
from tests.test_training import Scenario, argv_value, kenlm_dir, prepared, tools, training_calls  # noqa: F401 (fixtures)

#: The prepared run's sets (tests/test_training.py's ``prepared``), after cleaning.
TRAIN_CLIPS, DEV_CLIPS, TEST_CLIPS = 9, 3, 3


def test_a_batch_size_larger_than_its_set_is_lowered_said_and_recorded(prepared, tools, kenlm_dir, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 3, "train_batch_size": 64, "dev_batch_size": 64,
                                                          "test_batch_size": 64}).with_lm(kenlm_dir)
    scenario.configure(export={"acoustic_model_url": "https://models.example/fr/0.1.0/model_tflite_fr.tar.xz"})
    proc = scenario.run("--to", "package")
    assert (f"train_batch_size 64 is more than the training set ({TRAIN_CLIPS} clips): DeepSpeech drops each "
            "epoch's last incomplete batch, so it would take no step and learn nothing. Training uses batches of "
            f"{TRAIN_CLIPS} instead") in proc.stderr
    # Piped, the console is a log: no progress bar redrawing its line, no command line of the trainer's or the
    # tools' (the stage logs have them).
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr and "$ " not in proc.stderr
    assert "lm corpus" not in proc.stderr  # the lm stage's bar
    train_log = (scenario.run_dir / "logs" / "train.log").read_text()
    assert f"$ {tools['python']} -u -m deepspeech_training.train" in train_log
    (call,) = training_calls(scenario)
    assert (argv_value(call, "train_batch_size"), argv_value(call, "dev_batch_size")) == (str(TRAIN_CLIPS),
                                                                                          str(DEV_CLIPS))
    tests = [c for c in scenario.calls() if c["flags"]["test_files"]]
    assert [c["flags"]["test_batch_size"] for c in tests] == [TEST_CLIPS]

    training = scenario.metrics()["training"]
    assert [e["steps"] for e in training["epochs"]] == [1, 1, 1]
    losses = [e["train_loss"] for e in training["epochs"]]
    assert losses[-1] < losses[0] and 0.0 not in losses

    # config.json: the setting as given, and beside it the size used, and why.
    settings = json.loads((scenario.run_dir / "config.json").read_text())
    assert settings["train.train_batch_size"] == {
        "value": 64, "source": f"file {scenario.config}", "used": TRAIN_CLIPS,
        "why": f"lowered from 64: the training set has {TRAIN_CLIPS} clips"}
    assert (settings["train.dev_batch_size"]["used"], settings["train.test_batch_size"]["used"]) == (DEV_CLIPS,
                                                                                                   TEST_CLIPS)
    card = (scenario.run_dir / "package" / "README.md").read_text()
    assert f"| train_batch_size | {TRAIN_CLIPS} (lowered from 64: the training set has {TRAIN_CLIPS} clips) |" in card
    assert f"| dev_batch_size | {DEV_CLIPS} (lowered from 64: the dev set has {DEV_CLIPS} clips) |" in card
    report = (scenario.run_dir / "reports" / "report.md").read_text()
    assert f"1 training step per epoch: {TRAIN_CLIPS} clips in batches of {TRAIN_CLIPS} (lowered from 64" in report
    # Never resumed: the caption does not speak of resumes.
    assert "The star marks the lowest dev loss." in report and "resumed" not in report

    # DeepSpeech's metadata file: the URL given, and no template for the one not given; in the zip too.
    models = scenario.run_dir / "models"
    with zipfile.ZipFile(str(models / "fr-fr.zip")) as archive:
        zipped = archive.read(next(n for n in archive.namelist() if n.endswith(".md"))).decode()
    for metadata in ((models / "output_graph.tflite.md").read_text(), zipped):
        assert "acoustic_model_url: https://models.example/fr/0.1.0/model_tflite_fr.tar.xz\n" in metadata
        assert "<replace this" not in metadata and "scorer_url" not in metadata


def test_a_finished_training_that_took_no_step_is_trained_again_when_the_batch_size_changes(prepared, tools,  # noqa: F811
                                                                                            tmp_path):
    """The account an earlier dstrain left of such a training: every epoch's loss 0.0 (no step), no step counts,
    batches of 64.  It is not finished: a new batch size trains again, from the start, without --force."""
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2, "train_batch_size": 64})
    scenario.run("--from", "train", "--to", "train")
    account = scenario.run_dir / "checkpoints" / "dstrain-progress.json"
    record = json.loads(account.read_text())
    for epoch in record["epochs"]:
        epoch.update(train_loss=0.0, train_batch_size=64)
        del epoch["steps"]
    for invocation in record["invocations"]:
        invocation["train_batch_size"] = 64
        del invocation["steps_per_epoch"]
    record.update(batches=None, train_batch_size=64, configured_batch=[64, 4])
    account.write_text(json.dumps(record))

    scenario.configure(train={"train_batch_size": 8})
    proc = scenario.run("--from", "train", "--to", "train")
    assert "training already finished" not in proc.stderr
    assert ("the earlier training took no step in its 2 epochs (each batch was larger than the training set, so "
            "DeepSpeech dropped it): it learnt nothing, so training starts over") in proc.stderr
    first, again = training_calls(scenario)
    assert (argv_value(again, "load_train"), argv_value(again, "epochs")) == ("init", "2")
    assert argv_value(again, "train_batch_size") == "8"
    training = scenario.metrics()["training"]
    assert [e["epoch"] for e in training["epochs"]] == [1, 2] and [e["steps"] for e in training["epochs"]] == [1, 1]


def _epochs(train_losses, steps=None):
    return [dict({"epoch": i + 1, "train_loss": loss, "dev_loss": loss + 5},
                 **({"steps": steps} if steps is not None else {})) for i, loss in enumerate(train_losses)]


TEST = {"overall": {"wer": 1.0, "cer": 0.9}, "scorer": "kenlm.scorer"}


def test_the_advice_names_the_real_cause_when_the_loss_never_moved():
    # No step: a loss of exactly 0.0 in every epoch, as an earlier dstrain recorded it, or counted steps of 0.
    for training in ({"epochs": _epochs([0.0, 0.0, 0.0])}, {"epochs": _epochs([0.0, 0.0, 0.0], steps=0)}):
        tips = " ".join(evaluation.advice(training, TEST))
        assert "No training step was taken" in tips and "train.train_batch_size" in tips
        assert "learning rate" not in tips
    # Steps were taken, too few of them: the batch size, not the learning rate.
    few = {"epochs": _epochs([120.0, 119.0, 118.5], steps=1), "configured_batch": [64, 64],
           "batches": {"train": {"asked": 64, "used": 31, "clips": 31}}}
    tip = next(t for t in evaluation.advice(few, TEST) if "hardly moved" in t)
    assert "over only 3 training steps in all (1 per epoch: 31 clips in batches of 31)" in tip
    assert "smaller train.train_batch_size" in tip and "learning rate" not in tip
    # Enough steps, and still flat: then the learning rate.
    many = {"epochs": _epochs([120.0, 119.0, 118.5], steps=500)}
    tip = next(t for t in evaluation.advice(many, TEST) if "hardly moved" in t)
    assert "the learning rate is likely wrong" in tip
