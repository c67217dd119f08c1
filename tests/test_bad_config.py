"""Bad settings are refused with a clear message and a non-zero exit, before any work."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import DSTRAIN, clean_env, dstrain, write_config


def refused(proc, *phrases):
    assert proc.returncode == 2, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_language(tmp_path):
    proc = dstrain("run", "--language", "xx", "--data-root", tmp_path / "data", check=False)
    refused(proc, "unknown language 'xx'", "fr", "en")
    assert not (tmp_path / "data").exists()


def test_unknown_key_in_config_file(tmp_path):
    config = tmp_path / "dstrain.toml"
    config.write_text('languag = "fr"\n[clean]\nshared_transcript = "drop"\n')
    proc = dstrain("run", "--config", config, "--data-root", tmp_path / "data", check=False)
    refused(proc, f"unknown setting 'languag' (from file {config})",
            "unknown setting 'clean.shared_transcript'")


def test_unknown_dataset_parameter(tmp_path):
    config = tmp_path / "dstrain.toml"
    config.write_text('[dataset.common_voice]\nrelase = "cv-corpus-1"\n')
    proc = dstrain("run", "-l", "fr", "--config", config, "--data-root", tmp_path / "data", check=False)
    refused(proc, "dataset.common_voice", "relase")


def test_unknown_environment_variable(tmp_path):
    proc = dstrain("config", "-l", "fr", env=clean_env(DSTRAIN_WORKRES="4"), check=False)
    refused(proc, "unknown setting 'workres' (from env DSTRAIN_WORKRES)")


@pytest.mark.parametrize("env, phrase", [
    ({"DSTRAIN_WORKERS": "many"}, "workers: Input should be a valid integer"),
    ({"DSTRAIN_CLEAN__SHARED_TRANSCRIPTS": "maybe"}, "clean.shared_transcripts"),
    ({"DSTRAIN_DATASET__COMMON_VOICE__MAX_DURATION": "-1"}, "max_duration"),
    ({"DSTRAIN_DATASET__COMMON_VOICE__SHA256": "abc"}, "sha256"),
])
def test_bad_values(tmp_path, env, phrase):
    proc = dstrain("run", "-l", "fr", "--data-root", tmp_path / "data", env=clean_env(**env), check=False)
    refused(proc, phrase)
    assert not (tmp_path / "data").exists()


def test_bad_stage_name(tmp_path):
    proc = dstrain("run", "-l", "fr", "--data-root", tmp_path / "data", "--to", "alphabett", check=False)
    refused(proc, "--to alphabett: no such stage")


def test_unwritable_data_root_is_refused_with_the_fix():
    cmd = [DSTRAIN, "run", "-l", "fr", "--data-root", "DATA", "--to", "alphabet"]
    if os.getuid() == 0:  # root writes anywhere: run as an ordinary user, as the container does
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to drop root")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        if subprocess.run(cmd[:4] + [sys.executable, "-c", "pass"], capture_output=True).returncode != 0:
            pytest.skip("this Python is not usable by another user (installed under root's home)")
    # Under /tmp itself, so another user can reach it (pytest's tmp_path is private to root).
    home = Path(tempfile.mkdtemp(prefix="dstrain-unwritable-"))
    try:
        home.chmod(0o755)
        root = home / "data"
        root.mkdir(mode=0o755 if os.getuid() == 0 else 0o555)  # an ordinary user: make it read-only
        cmd[cmd.index("DATA")] = str(root)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=str(home))
        refused(proc, f"the data root {root} is not writable", "belongs to uid 0", "sudo chown -R",
                "Never run dstrain")
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(str(home))


def test_config_file_that_is_not_toml(tmp_path):
    config = tmp_path / "dstrain.toml"
    config.write_text("language = fr\n")
    refused(dstrain("config", "--config", config, check=False), "is not valid TOML")


def test_config_shows_each_layer(tmp_path):
    config = write_config(tmp_path / "dstrain.toml", tmp_path / "data")
    out = dstrain("config", "--config", config, "--workers", "3",
                  env=clean_env(DSTRAIN_ENGLISH_COMPATIBLE="true")).stdout
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["workers"].endswith("[flag --workers]") and " 3 " in lines["workers"]
    assert lines["english_compatible"].endswith("[env DSTRAIN_ENGLISH_COMPATIBLE]")
    assert lines["data_root"].endswith(f"[file {config}]")
    assert lines["dataset.common_voice.locale"].endswith("[language fr]")
    assert lines["clean.shared_transcripts"].endswith("[default]")
