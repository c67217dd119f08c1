"""A run keeps the settings it was given: later commands of the same run start from them (run_settings.py).

So `dstrain status` without them describes the run as it was run, and resuming needs none of them again; a
value given anew wins and is kept; --reset-settings starts from the defaults.  Places on this machine and
secrets are never kept.
"""
import json
import shutil

from tests.conftest import clean_env, dstrain
from tests.test_training import prepared  # noqa: F401 (fixture)

PREPARED = ("check", "download", "import", "clean", "alphabet")


def states(data, *args, **env) -> dict:
    out = dstrain("status", "-l", "fr", "--data-root", data, *args, env=clean_env(**env)).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines()[2:] if line and not line.startswith(" ")}


def shown(data, *args, **env):
    proc = dstrain("config", "-l", "fr", "--data-root", data, "--json", *args, env=clean_env(**env))
    return json.loads(proc.stdout), proc.stderr


def test_status_without_the_runs_settings_describes_the_run_as_it_was_run(prepared, tmp_path):  # noqa: F811
    """The prepared run was given its settings in a file (tests/commands.py's write_config): one dataset, one
    release, a shorter max_duration.  Without that file, the defaults would ask for six datasets."""
    data = tmp_path / "data"
    shutil.copytree(str(prepared), str(data))
    given = json.loads((data / "runs" / "fr" / "config.json").read_text())["datasets"]["source"]
    assert given.startswith("file ")

    assert {stage: states(data)[stage] for stage in PREPARED} == dict.fromkeys(PREPARED, "done")
    resolved, _ = shown(data)
    assert resolved["datasets"] == {"value": ["common_voice"], "source": f"kept by run fr, {given}"}
    assert resolved["dataset.common_voice.max_duration"]["value"] == 5.0
    assert resolved["workers"]["source"] == "default"  # this machine's, not the run's
    assert resolved["data_root"]["source"] == "flag --data-root"

    # A value given again wins: the stages that read it, and those after them, are what a run would redo.
    changed = states(data, DSTRAIN_CLEAN__SHARED_TRANSCRIPTS="keep")
    assert [changed[stage] for stage in PREPARED] == ["done", "done", "done", "stale", "stale"]
    # --reset-settings: the defaults and what is given now, as if the run had been given nothing.
    assert states(data, "--reset-settings")["download"] == "stale"
    assert shown(data, "--reset-settings")[0]["datasets"]["source"] == "default"


def test_a_run_keeps_what_it_was_given_but_no_place_on_this_machine_no_limit_of_its_host_and_no_secret(tmp_path):
    data = tmp_path / "data"
    secret = "https://someone:hunter22@mirror.example/cv-corpus-99.0-2099-01-01-fr.tar.gz"
    first = dstrain("run", "-l", "fr", "--data-root", data, "--only", "check",
                    env=clean_env(DSTRAIN_TRAIN__EPOCHS="7", DSTRAIN_LM__KENLM_BIN="/opt/kenlm/bin",
                                  DSTRAIN_DATASET__COMMON_VOICE__URL=secret, DSTRAIN_NETWORK__BLOCK_PRIVATE="true",
                                  DSTRAIN_ARCHIVES__MAX_EXPANDED_BYTES="20000"))
    # How to go on is said at the start, before anything can stop it.
    assert (f"to go on later, with the settings it keeps: dstrain run -l fr --data-root {data} --only check"
            in first.stderr)
    resolved, warned = shown(data)
    assert resolved["train.epochs"] == {"value": 7, "source": "kept by run fr, env DSTRAIN_TRAIN__EPOCHS"}
    assert resolved["lm.kenlm_bin"] == {"value": None, "source": "default"}
    # The limits a host sets on a job hold for the command that gives them (a service gives them to each job).
    assert resolved["network.block_private"] == {"value": False, "source": "default"}
    assert resolved["archives.max_expanded_bytes"]["source"] == "default"
    assert "dataset.common_voice.url" not in resolved
    assert "dataset.common_voice.url: run fr kept it without its secret part" in warned and "hunter22" not in warned

    # Given anew, a value wins and is kept in its turn, with where it came from this time.
    dstrain("run", "-l", "fr", "--data-root", data, "--only", "check", "--config",
            _file(tmp_path / "more.toml", "[train]\nepochs = 9\n"), env=clean_env())
    assert shown(data)[0]["train.epochs"] == {"value": 9,
                                              "source": f"kept by run fr, file {tmp_path / 'more.toml'}"}
    assert "hunter22" not in (data / "runs" / "fr" / "config.json").read_text()


def _file(path, text):
    path.write_text(text)
    return path
