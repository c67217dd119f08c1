"""Which checkpoint is the model: the same one in the train record, metrics.json, the report, the model card
and the checkpoint tarball, through resumes, kills and --force train; best or last; with the test double.

A dstrain killed here is killed for real (SIGKILL or SIGINT to its process group) while the double blocks in
an epoch (DS_DOUBLE_HANG_AT_EPOCH); the test waits for the epochs before it to be recorded, never for a time.
"""
import json
import os
import re
import signal
import subprocess
import tarfile
import time

import pytest

from tests.conftest import DSTRAIN, clean_env, dstrain
from tests.fixtures.outputs import listing
from tests.test_training import Scenario, argv_value, kenlm_dir, prepared, tools, training_calls  # noqa: F401 (fixtures)

CHECKPOINT = re.compile(r"The model is epoch (\d+)'s checkpoint \((\S+), dev loss")


def progress(scenario) -> dict:
    try:
        return json.loads((scenario.run_dir / "checkpoints" / "dstrain-progress.json").read_text())
    except (OSError, ValueError):
        return {}


def start(scenario, *args, **env) -> subprocess.Popen:
    env = clean_env(TRAINER_PYTHON=str(scenario.tools["python"]), DS_DOUBLE_RECORD=str(scenario.record), **env)
    return subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(scenario.config), *args], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(scenario, proc: subprocess.Popen, count: int) -> None:
    """Until ``count`` epochs are recorded by the training ``proc`` runs (it must not end first)."""
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        record = progress(scenario)
        if record.get("epochs_done") == count and (record.get("invocations") or [{}])[-1].get("outcome") == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"training did not reach {count} epochs: {proc.communicate()}")


def kill(proc: subprocess.Popen, sig: int) -> str:
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return err


def status(scenario) -> dict:
    out = dstrain("status", "-l", "fr", "--config", scenario.config).stdout
    found = {line.split()[0]: line for line in out.splitlines()[2:] if line and not line.startswith(" ")}
    return {"lines": found, "text": out}


def models_named(scenario) -> dict:
    """The checkpoint each of the five places names as the model."""
    run = scenario.run_dir
    metrics = scenario.metrics()
    record = json.loads((run / "state" / "train.json").read_text())
    report = CHECKPOINT.search((run / "reports" / "report.md").read_text()).group(2)
    card = CHECKPOINT.search((run / "package" / "README.md").read_text()).group(2)
    with tarfile.open(str(run / "package" / "checkpoint_fr.tar.xz")) as tar:
        names = tar.getnames()
        state = next(n for n in names if n in ("best_dev_checkpoint", "checkpoint"))
        in_state = tar.extractfile(state).read().decode().split('"')[1]
        weights = {n.rsplit(".", 1)[0] for n in names if n.endswith(".index")}
    assert weights == {in_state}, names
    return {"record": record["counts"]["model"], "metrics": metrics["training"]["model"]["checkpoint"],
            "tested": metrics["test"]["model"]["checkpoint"], "report": report, "card": card, "tarball": in_state}


def assert_one_model(scenario, expected: str) -> None:
    named = models_named(scenario)
    assert set(named.values()) == {expected}, named
    digest = scenario.metrics()["training"]["model"]["digest"]
    assert scenario.metrics()["test"]["model"]["digest"] == digest


# Dev losses over the whole run, epochs numbered from 1: the best before the crash is epoch 3 (10); the resume
# sees 40 and 35 first, which DeepSpeech (its best reset to infinity) saves as "new best"; then epochs 8 to 10
# beat epoch 3.
LOSSES = "30,20,10,40,35,30,25,8,6,5"


def test_a_better_best_after_a_kill_9_in_a_resume_is_the_model_everywhere(prepared, tools, kenlm_dir, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools).with_lm(kenlm_dir)
    crashed = scenario.run("--to", "lm", check=False)
    assert crashed.returncode == 0
    crashed = scenario.run("--to", "package", check=False, DS_DOUBLE_CRASH_AT_EPOCH="3", DS_DOUBLE_DEV_LOSSES=LOSSES)
    assert crashed.returncode == 1 and progress(scenario)["best"]["epoch"] == 3
    # Resumed, then killed while epoch 6 trains: DeepSpeech's worse "best" (epoch 4, loss 40) is on disk.
    proc = start(scenario, "--to", "package", DS_DOUBLE_DEV_LOSSES=LOSSES, DS_DOUBLE_HANG_AT_EPOCH="2")
    wait_for_epochs(scenario, proc, 5)
    running = status(scenario)
    assert running["lines"]["train"].split()[1] == "running"
    kill(proc, signal.SIGKILL)
    checkpoints = scenario.run_dir / "checkpoints"
    assert (checkpoints / "best_dev_checkpoint").read_text().split('"')[1] != progress(scenario)["best"]["checkpoint"]

    stopped = status(scenario)
    assert stopped["lines"]["train"].split()[1] == "interrupted"
    assert "epochs=5/10, best epoch 3 (dev loss 10.00)" in stopped["lines"]["train"]
    assert f"dstrain run -l fr --config {scenario.config}" in stopped["text"]

    scenario.run("--to", "package", DS_DOUBLE_DEV_LOSSES=LOSSES)
    training = scenario.metrics()["training"]
    assert [i["outcome"] for i in training["invocations"]] == ["crashed", "interrupted", "finished"]
    assert training["best"]["epoch"] == 10 and training["best"]["dev_loss"] == 5.0
    assert training["model"]["epoch"] == 10 and training["model"]["which"] == "best"
    assert scenario.best_checkpoint() == training["best"]["checkpoint"]
    assert_one_model(scenario, training["best"]["checkpoint"])
    # The tested and exported weights are that checkpoint's: the double's export carries its step.
    exported = json.loads((scenario.run_dir / "models" / "output_graph.tflite").read_text())
    assert "best_dev-{}".format(exported["step"]) == training["best"]["checkpoint"]


def test_the_last_checkpoint_is_evaluated_exported_and_packaged_when_chosen(prepared, tools, kenlm_dir, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools).with_lm(kenlm_dir)
    scenario.run("--to", "package", DS_DOUBLE_DEV_LOSSES="30,10,20,25")
    best = scenario.metrics()["training"]["best"]["checkpoint"]
    assert_one_model(scenario, best)
    trainings = len(training_calls(scenario))

    scenario.configure(train={"model_checkpoint": "last"})
    switched = scenario.run("--to", "package", DS_DOUBLE_DEV_LOSSES="30,10,20,25")
    assert len(training_calls(scenario)) == trainings  # nothing trained again
    for stage in ("evaluate", "export", "package"):
        assert f"✓ {stage:<9} up to date" not in switched.stderr
    training = scenario.metrics()["training"]
    last = (scenario.run_dir / "checkpoints" / "checkpoint").read_text().split('"')[1]
    assert last.startswith("train-") and training["model"] == {
        **training["model"], "which": "last", "checkpoint": last, "epoch": 10, "state_file": "checkpoint"}
    assert_one_model(scenario, last)
    later = [c for c in scenario.calls() if not c["flags"]["train_files"]][-4:]
    assert {c["flags"]["load_evaluate"] for c in later} == {"last"}
    report = (scenario.run_dir / "reports" / "report.md").read_text()
    assert "train.model_checkpoint = last" in report and "not the one with the lowest dev loss (epoch 2" in report
    assert "train.model_checkpoint = last" in (scenario.run_dir / "package" / "README.md").read_text()


@pytest.mark.parametrize("seed, stale", [("other weights", True), (None, False)])
def test_force_train_makes_later_stages_stale_only_when_the_weights_change(prepared, tools, tmp_path, seed, stale):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 3})
    scenario.run("--from", "train", "--to", "package")
    before = scenario.metrics()["training"]["model"]
    env = {"DS_DOUBLE_SEED": seed} if seed else {}
    again = scenario.run("--from", "train", "--to", "package", "--force", "train", **env)
    after = scenario.metrics()["training"]["model"]
    assert after["checkpoint"] == before["checkpoint"]  # the same name either way
    assert (after["digest"] != before["digest"]) is stale
    for stage in ("evaluate", "export", "package"):
        assert (f"✓ {stage:<9} up to date" in again.stderr) is not stale
    # metrics.json describes the model it names: test results are those of these weights.
    assert scenario.metrics()["test"]["model"]["digest"] == after["digest"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_force_train_is_continued_by_the_plain_rerun(prepared, tools, tmp_path, sig):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 6})
    scenario.run("--from", "train", "--to", "evaluate")
    proc = start(scenario, "--from", "train", "--to", "evaluate", "--force", "train", DS_DOUBLE_HANG_AT_EPOCH="3")
    wait_for_epochs(scenario, proc, 3)
    err = kill(proc, sig)
    assert not (scenario.run_dir / "state" / "train.json").exists()
    if sig == signal.SIGINT:  # dstrain had time to say how to go on: without --force
        assert "stage train failed: interrupted" in err
        assert f"resume with:\n    dstrain run -l fr --config {scenario.config} --from train --to evaluate\n" in err
    line = status(scenario)["lines"]["train"]
    assert line.split()[1] == "interrupted" and "epochs=3/6" in line
    for stage in ("evaluate",):
        assert status(scenario)["lines"][stage].split()[1] != "done"

    rerun = scenario.run("--from", "train", "--to", "evaluate")
    assert "continuing the training that --force train started, interrupted after 3 of 6 epochs" in rerun.stderr
    *_, forced, resumed = training_calls(scenario)
    assert argv_value(forced, "load_train") == "init" and argv_value(resumed, "load_train") == "last"
    assert argv_value(resumed, "epochs") == "3"
    training = scenario.metrics()["training"]
    assert [e["epoch"] for e in training["epochs"]] == [1, 2, 3, 4, 5, 6]
    outcome = "interrupted" if sig == signal.SIGKILL else "aborted"
    assert [i["outcome"] for i in training["invocations"]] == [outcome, "finished"]
    assert "test" in scenario.metrics()


def test_rerunning_a_killed_force_train_says_why_it_starts_over_and_how_to_continue(prepared, tools, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 6})
    scenario.run("--from", "train", "--to", "train")
    proc = start(scenario, "--from", "train", "--to", "train", "--force", "train", DS_DOUBLE_HANG_AT_EPOCH="2")
    wait_for_epochs(scenario, proc, 2)
    kill(proc, signal.SIGKILL)
    again = scenario.run("--from", "train", "--to", "train", "--force", "train")
    assert ("--force train: an earlier --force train was interrupted after 2 of 6 epochs; as asked, its training "
            "is deleted and starts over. To continue it instead, run the same command without --force train."
            ) in again.stderr
    assert argv_value(training_calls(scenario)[-1], "load_train") == "init"


def test_the_console_shows_epochs_from_1_and_what_matters_the_log_keeps_the_rest(prepared, tools, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 3})
    proc = scenario.run("--from", "train", "--to", "train", DS_DOUBLE_DEV_LOSSES="30,nan,20")
    assert "epoch 1 of 3: training loss 110.00, dev loss 30.00 (the lowest so far)\n" in proc.stderr
    # A NaN loss still reaches the console, as a warning, numbered as every epoch a user reads.
    assert "epoch 2 of 3: training loss 60.00, dev loss infinite or NaN (the lowest: epoch 1, 30.00)" in proc.stderr
    assert "epoch 3 of 3: training loss 43.33, dev loss 20.00 (the lowest so far)\n" in proc.stderr
    # TensorFlow's deprecation notices and DeepSpeech's own lines, numbered from 0, go to the stage log only.
    assert "WARNING:tensorflow" not in proc.stderr and "Instructions for updating" not in proc.stderr
    assert "Finished training epoch" not in proc.stderr
    assert "loss: nan" not in proc.stderr
    log = (scenario.run_dir / "logs" / "train.log").read_text()
    assert "is deprecated and will be removed" in log and "Finished training epoch 0 - loss" in log


def test_a_batch_size_that_leaves_clips_out_of_every_epoch_is_warned_about(prepared, tools, tmp_path):  # noqa: F811
    rows = listing(prepared / "runs" / "fr" / "clean", "train").read_text().splitlines()[1:]
    sizes = sorted(int(row.split(",")[1]) for row in rows)
    clips = len(sizes)
    # A batch size some smaller one (down to half of it, which fits the same memory) beats.
    batch = next(b for b in range(2, clips) if any(clips % smaller < clips % b for smaller in range(b // 2, b)))
    left = clips % batch
    seconds = sum((size - 44) / 32000 for size in sizes[-left:])
    assert seconds < 120, "the test clips are short: their duration is said in seconds"
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 1, "train_batch_size": batch})
    proc = scenario.run("--from", "train", "--to", "train")
    expected = (f"train_batch_size {batch} leaves {left} of the {len(sizes)} training clips ({seconds:.0f} seconds "
                "of audio, the longest ones) out of every epoch")
    assert expected in proc.stderr
    assert re.search(r"train_batch_size = (\d+) would leave out (\d+)", proc.stderr)
    suggested, still_left = map(int, re.search(r"train_batch_size = (\d+) would leave out (\d+)",
                                               proc.stderr).groups())
    assert still_left == len(sizes) % suggested < left and batch // 2 <= suggested < batch


def test_the_model_card_lists_the_language_model_texts_and_their_licences(prepared, tools, tmp_path, kenlm_dir):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2}).with_lm(kenlm_dir)
    scenario.configure(lm={"sources": ["proverbes"]})
    (scenario.data / "sources" / "proverbes.txt").write_text("qui dort dine\nle chat dort sur le canape\n")
    with scenario.config.open("a") as handle:  # a text placed by hand, with its licence
        handle.write('[lm.source.proverbes]\nfilename = "proverbes.txt"\nlicence = "CC0-1.0"\n')
    scenario.run("--to", "package")
    card = (scenario.run_dir / "package" / "README.md").read_text()
    assert "## Language model (scorer) texts" in card
    assert "| proverbes | proverbes.txt (placed by hand) | CC0-1.0 |" in card
    assert "| training transcripts | the training datasets above | the datasets' licences |" in card


def test_status_counts_a_training_against_the_epochs_it_was_run_with(prepared, tools, tmp_path):  # noqa: F811
    """A finished training is not "interrupted" because the settings given to `status` ask for more epochs; a
    training stopped early is, whatever they ask for."""
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 3})
    scenario.run("--from", "train", "--to", "train")
    scenario.configure(train={"epochs": 30})  # not run with: the record is stale, the training not interrupted
    line = status(scenario)["lines"]["train"]
    assert line.split()[1] == "stale" and "interrupted" not in status(scenario)["text"], line

    crashed = Scenario(tmp_path / "crashed", prepared, tools, train={"epochs": 6})
    assert crashed.run("--from", "train", "--to", "train", check=False, DS_DOUBLE_CRASH_AT_EPOCH="2").returncode == 1
    crashed.configure(train={"epochs": 2})  # as many as it did: it was still interrupted, at 2 of its 6
    found = status(crashed)
    assert found["lines"]["train"].split()[1] == "interrupted" and "epochs=2/6" in found["lines"]["train"]
    assert "last error, " in found["text"] and "stage train failed: DeepSpeech failed (exit code" in found["text"]
