"""The optimize stage through the real CLI: DeepSpeech's lm_optimizer.py (its test double) on the dev set,
a real KenLM model, and the scorer rebuilt by the fake generate_scorer_package with what it found."""
import json
import re
import tarfile

import pytest

from tests.conftest import dstrain, write_config
from tests.test_training import DOUBLE, Scenario, clean_set, kenlm_dir, prepared, tools  # noqa: F401 (fixtures)

SCRIPT = DOUBLE / "lm_optimizer.py"


def optimizer_calls(scenario):
    return [c for c in scenario.calls() if c["program"] == "lm_optimizer"]


def scorer_calls(scenario):
    path = scenario.root / "scorer-calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def option(argv, name):
    return argv[argv.index("--" + name) + 1]


def trie(scorer):
    """What the fake generate_scorer_package wrote after the LM's bytes."""
    lm = scorer.parents[1] / "lm" / "lm.binary"
    return json.loads(scorer.read_bytes()[lm.stat().st_size:])


def announced_best(scenario):
    """The best of the pairs lm_optimizer.py itself printed in every run, as the stage log kept them."""
    log = (scenario.run_dir / "logs" / "optimize.log").read_text()
    found = re.findall(r"Best params: lm_alpha=(\S+) and lm_beta=(\S+) with WER=(\S+)", log)
    return min((tuple(float(v) for v in match) for match in found), key=lambda pair: pair[2])


def search(**changes):
    return dict({"enabled": True, "script": str(SCRIPT), "trials": 7, "trials_per_round": 3, "alpha_max": 3.0,
                 "beta_max": 4.0}, **changes)


@pytest.fixture(scope="module")
def optimized(prepared, tools, kenlm_dir, tmp_path_factory):  # noqa: F811
    scenario = Scenario(tmp_path_factory.mktemp("optimize"), prepared, tools,
                        train={"epochs": 2}, optimize=search()).with_lm(kenlm_dir)
    proc = scenario.run("--to", "package")
    return scenario, proc


def test_the_search_runs_on_the_dev_set_with_the_lm_scorer_and_configured_ranges(optimized):
    scenario, proc = optimized
    calls = optimizer_calls(scenario)
    assert [c["flags"]["n_trials"] for c in calls] == [3, 3, 1]  # rounds of optimize.trials_per_round
    for call in calls:
        assert call["flags"]["test_files"] == str(clean_set(scenario.data, "dev"))
        assert call["flags"]["scorer_path"] == str(scenario.run_dir / "lm" / "kenlm.scorer")
        assert (call["flags"]["lm_alpha_max"], call["flags"]["lm_beta_max"]) == (3.0, 4.0)
        # dev_batch_size 4 on the 3 dev clips: one batch of them all.
        assert call["flags"]["test_batch_size"] == 3 and call["flags"]["load_evaluate"] == "best"
        assert call["flags"]["beam_width"] == 1024
    # Piped, a line per round (a terminal also gets a bar).
    assert [line.split(",")[0] for line in proc.stderr.splitlines() if line.startswith("alpha/beta: ")] == [
        "alpha/beta: 3 of 7 trials", "alpha/beta: 6 of 7 trials", "alpha/beta: 7 of 7 trials"]


def test_the_best_pair_is_written_and_the_scorer_rebuilt_with_it(optimized):
    scenario, _ = optimized
    alpha, beta, wer = announced_best(scenario)
    result = json.loads((scenario.run_dir / "optimize" / "alpha_beta.json").read_text())
    assert (result["alpha"], result["beta"], result["dev_error_rate"]) == (alpha, beta, wer)
    rounds = json.loads((scenario.run_dir / "optimize" / "trials.json").read_text())["rounds"]
    assert [len(r["reported"]) for r in rounds] == [3, 3, 1]
    lm_build, rebuild = scorer_calls(scenario)
    assert option(lm_build, "default_alpha") != repr(alpha)
    assert (option(rebuild, "default_alpha"), option(rebuild, "default_beta")) == (repr(alpha), repr(beta))
    assert option(rebuild, "lm") == option(lm_build, "lm") and option(rebuild, "vocab") == option(lm_build, "vocab")
    assert trie(scenario.run_dir / "optimize" / "kenlm.scorer")["alpha"] == alpha
    # The lm stage's scorer is left as it was: turning optimize off goes back to it.
    assert trie(scenario.run_dir / "lm" / "kenlm.scorer")["alpha"] == float(option(lm_build, "default_alpha"))


def test_evaluate_export_and_package_use_the_found_pair(optimized):
    scenario, _ = optimized
    alpha, beta, _ = announced_best(scenario)
    optimized_scorer = scenario.run_dir / "optimize" / "kenlm.scorer"
    test_call = next(c for c in scenario.calls() if c["program"] == "train" and c["flags"]["test_files"])
    assert test_call["flags"]["scorer_path"] == str(optimized_scorer)
    assert (test_call["flags"]["lm_alpha"], test_call["flags"]["lm_beta"]) == (alpha, beta)
    test = scenario.metrics()["test"]
    assert (test["lm_alpha"], test["lm_beta"], test["alpha_beta"]) == (alpha, beta, "optimized")
    # The note goes into the model card: no path of the machine that trained.
    assert test["note"].startswith("Decoded with the scorer optimize/kenlm.scorer (alpha ")
    assert "found on the dev set" in test["note"]
    zip_call = next(c for c in scenario.calls() if c["flags"]["export_zip"])
    assert zip_call["flags"]["scorer_path"] == str(optimized_scorer)
    with tarfile.open(str(scenario.run_dir / "package" / "model_tflite_fr.tar.xz")) as tar:
        assert tar.extractfile("kenlm.scorer").read() == optimized_scorer.read_bytes()
    card = (scenario.run_dir / "package" / "README.md").read_text()
    assert f"| scorer alpha, beta | {alpha:g}, {beta:g} (found on the dev set" in card


def test_a_rerun_searches_nothing_and_more_trials_redo_only_what_follows_training(optimized):
    scenario, _ = optimized
    calls = len(scenario.calls())
    again = scenario.run("--to", "package")
    assert "✓ optimize  up to date" in again.stderr and len(scenario.calls()) == calls

    # Two more trials: one round of two, after the seven already done; nothing is trained again.
    before = json.loads((scenario.run_dir / "optimize" / "alpha_beta.json").read_text())
    scenario.configure(optimize={"trials": 9})
    proc = scenario.run("--to", "package")
    assert "7 trials were done before, 9 asked for" in proc.stderr
    new = scenario.calls()[calls:]
    assert [c["program"] for c in new if c["flags"]["train_files"]] == []
    assert [c["flags"]["n_trials"] for c in new if c["program"] == "lm_optimizer"] == [2]
    alpha, _, _ = announced_best(scenario)
    after = json.loads((scenario.run_dir / "optimize" / "alpha_beta.json").read_text())
    assert after["alpha"] == alpha
    # The test is decoded again only if the new trials found a better pair.
    evaluated = any(c["flags"]["test_files"] and c["program"] == "train" for c in new)
    assert evaluated == (after["alpha"] != before["alpha"])

    # Switched off, the run decodes with the lm stage's scorer and its configured pair again.
    scenario.configure(optimize={"enabled": False})
    proc = scenario.run("--to", "package")
    assert "the scorer keeps alpha 0.931289" in proc.stderr
    assert scenario.metrics()["test"]["alpha_beta"] == "configured"
    assert scenario.metrics()["test"]["scorer"] == str(scenario.run_dir / "lm" / "kenlm.scorer")


def test_switched_on_without_the_script_is_refused_before_any_work(tmp_path):
    config = write_config(tmp_path / "dstrain.toml", tmp_path / "data")
    config.write_text(config.read_text() + "[optimize]\nenabled = true\n")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode != 0
    assert "optimize.script is not set" in proc.stderr and "lm_optimizer.py" in proc.stderr
    assert not (tmp_path / "data" / "runs" / "fr" / "state" / "check.json").exists()


def test_a_crash_loses_only_the_round_under_way(prepared, tools, kenlm_dir, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2}, optimize=search()).with_lm(kenlm_dir)
    crashed = scenario.run("--to", "optimize", check=False, DS_DOUBLE_CRASH_AFTER_CALLS="2")
    assert crashed.returncode == 1 and "stage optimize failed" in crashed.stderr
    rounds = json.loads((scenario.run_dir / "optimize" / "trials.json").read_text())["rounds"]
    assert [r["trials"] for r in rounds] == [3, 3]
    assert not (scenario.run_dir / "state" / "optimize.json").exists()

    resumed = scenario.run("--to", "optimize")
    assert "6 trials were done before, 7 asked for" in resumed.stderr
    assert [c["flags"]["n_trials"] for c in optimizer_calls(scenario)] == [3, 3, 1, 1]  # the crashed run, then 1
    alpha, beta, _ = announced_best(scenario)
    result = json.loads((scenario.run_dir / "optimize" / "alpha_beta.json").read_text())
    assert (result["alpha"], result["beta"]) == (alpha, beta)


def test_forcing_the_stage_starts_the_search_afresh(prepared, tools, kenlm_dir, tmp_path):  # noqa: F811
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 2}, optimize=search()).with_lm(kenlm_dir)
    scenario.run("--to", "optimize")
    scenario.run("--to", "optimize", "--force", "optimize")
    assert [c["flags"]["n_trials"] for c in optimizer_calls(scenario)] == [3, 3, 1, 3, 3, 1]
