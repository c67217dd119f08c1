"""Bad settings are refused with a clear message and a non-zero exit, before any work."""
import json
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
        if os.getuid() == 0:
            refused(proc, f"the data root {root} is not writable", f"{root}  (uid 0 gid 0)",
                    f"sudo chown -R 65534:65534 {root}\n", "Never run dstrain")
        else:  # one's own folder, made read-only: not a question of owners
            refused(proc, f"the data root {root} is not writable", "chmod u+rwX")
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


def test_workers_are_capped_at_a_few_per_core(tmp_path):
    limit = 4 * len(os.sched_getaffinity(0))
    proc = dstrain("config", "-l", "fr", "--workers", "100000000")
    assert f"workers = 100000000 (from flag --workers) is more than this machine can use: at most 4 per core, " \
           f"{limit} on its" in proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("workers "))
    assert f"= {limit} " in line and line.endswith("[flag --workers, capped at 4 per core]")
    assert "capped" not in dstrain("config", "-l", "fr", "--workers", str(limit)).stdout


def test_an_empty_data_root_is_not_the_current_directory(tmp_path):
    proc = dstrain("run", "-l", "fr", env=clean_env(DSTRAIN_DATA_ROOT=""), cwd=str(tmp_path), check=False)
    refused(proc, "data_root: Value error, must not be empty", "env DSTRAIN_DATA_ROOT")
    assert list(tmp_path.iterdir()) == []


def test_a_data_root_under_the_home_folder_is_there(tmp_path):
    out = dstrain("config", "-l", "fr", "--json", env=clean_env(DSTRAIN_DATA_ROOT="~/dstrain-data", HOME=str(tmp_path)),
                  cwd=str(tmp_path)).stdout
    assert json.loads(out)["data_root"]["value"] == str(tmp_path / "dstrain-data")


@pytest.mark.parametrize("root", ["/", "/usr", "/etc", "/usr/local", "/var/lib", "/home", "/tmp", "/proc/x",
                                  "/etc/dstrain", "/data/../usr"])
def test_a_system_directory_is_no_data_root(root):
    proc = dstrain("config", "-l", "fr", env=clean_env(DSTRAIN_DATA_ROOT=root), check=False)
    refused(proc, "is a system directory; a data root needs a folder of its own", "(from env DSTRAIN_DATA_ROOT)")


def test_a_link_to_a_system_directory_is_no_data_root(tmp_path):
    (tmp_path / "data").symlink_to("/usr")
    proc = dstrain("run", "-l", "fr", "--data-root", tmp_path / "data", check=False)
    refused(proc, "data_root: /usr is a system directory", "(from flag --data-root)")


def test_a_file_is_no_data_root(tmp_path):
    (tmp_path / "notes").write_text("mine\n")
    config = tmp_path / "dstrain.toml"
    for root, phrase in ((tmp_path / "notes", f"{tmp_path / 'notes'} is a file, not a directory"),
                         (tmp_path / "notes" / "data", f"{tmp_path / 'notes'} is a file, so it cannot hold")):
        config.write_text(f'data_root = "{root}"\n')
        refused(dstrain("run", "-l", "fr", "--config", config, check=False), phrase, f"(from file {config})")
    assert (tmp_path / "notes").read_text() == "mine\n"


@pytest.mark.parametrize("archive", ["../../x.tar.gz", "/tmp/x.tar.gz", "sub/x.tar.gz", ".hidden.tar.gz"])
def test_an_archive_is_a_file_name_in_sources_never_a_path(tmp_path, archive):
    data = tmp_path / "deep" / "data"
    env = clean_env(DSTRAIN_DATASET__COMMON_VOICE__ARCHIVE=archive)
    proc = dstrain("run", "-l", "fr", "--data-root", data, "--datasets", "common_voice", env=env, check=False)
    refused(proc, f"dataset.common_voice.archive: {archive!r} (from env DSTRAIN_DATASET__COMMON_VOICE__ARCHIVE) "
                  "is not a file name")
    assert list(tmp_path.iterdir()) == []


# -- issue 18, class 3: links are followed before the check, as the kernel follows them --------------------

@pytest.mark.parametrize("given", ["lnk/..", "lnk/../share", "lnk/../../local/./share/..", "deep/lnk/.."])
def test_a_link_then_dot_dot_reaching_a_system_directory_is_no_data_root(tmp_path, given):
    """`lnk/..` with lnk a link to /usr/local/share is /usr/local to the kernel: refused, and nothing written."""
    (tmp_path / "lnk").symlink_to("/usr/local/share")
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "lnk").symlink_to("/usr/local/share")
    before = set(os.listdir("/usr/local"))
    for args in (["run", "-l", "fr", "--data-root", given, "--to", "download"],
                 ["check", "-l", "fr", "--to", "alphabet", "--data-root", given]):
        proc = dstrain(*args, cwd=str(tmp_path), check=False)
        refused(proc, "is a system directory; a data root needs a folder of its own", "(from flag --data-root)")
    config = tmp_path / "c.toml"
    config.write_text(f'data_root = "{tmp_path / given}"\n')
    refused(dstrain("run", "-l", "fr", "--config", config, check=False), "is a system directory",
            f"(from file {config})")
    assert set(os.listdir("/usr/local")) == before


def test_a_language_folder_is_read_and_never_written(tmp_path):
    """language_dirs may name a shared, read-only folder (the system's): loading it leaves no __pycache__."""
    folder = tmp_path / "languages"
    dstrain("new-language", "br", "--locale", "br-FR", "--dir", folder)
    before = sorted(p.name for p in folder.iterdir())
    dstrain("config", "-l", "br", env=clean_env(DSTRAIN_LANGUAGE_DIRS=str(folder)))
    assert sorted(p.name for p in folder.iterdir()) == before == ["br.py"]


def test_the_service_folder_is_never_a_system_directory(tmp_path):
    (tmp_path / "lnk").symlink_to("/usr/local/share")
    for root in ("lnk/..", "/etc", "/usr"):
        proc = dstrain("serve", "--root", root, "tenant", "add", "someone", cwd=str(tmp_path), check=False)
        assert proc.returncode == 2 and "is a system directory: the service needs a folder of its own" in proc.stderr
    assert not Path("/usr/local/service.db").exists()


# -- issue 18, class 7: a config that is not text, or pathological, gets the one-paragraph error --------------

PATHOLOGICAL = {
    "latin-1": ("language = \"fr\"\n# café\n".encode("latin-1"), "is not valid UTF-8 (byte 0xe9"),
    "binary": (bytes(range(256)) * 4, "is not valid UTF-8"),
    "nested arrays": (b"workers = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nests its arrays or tables too deeply"),
    "nested tables": (b"workers = " + b"{a=" * 50_000 + b"1" + b"}" * 50_000 + b"\n", "too deeply"),
    "a number of 5000 digits": (b"workers = " + b"9" * 5000 + b"\n", "holds a value that cannot be read"),
    "two megabytes": (b"# " + b"x" * (2 << 20) + b"\n", "is over 1 MB"),
}


@pytest.mark.parametrize("what", sorted(PATHOLOGICAL))
def test_a_config_file_that_is_not_settings_gets_the_config_error(tmp_path, what):
    content, phrase = PATHOLOGICAL[what]
    config = tmp_path / "c.toml"
    config.write_bytes(content)
    proc = dstrain("config", "-l", "fr", "--data-root", tmp_path / "data", "--config", config, check=False)
    refused(proc, f"error: config file {config}", phrase)
    assert len(proc.stderr) < 2000  # one paragraph, not the file back
    assert not (tmp_path / "data").exists()


def test_a_device_given_as_config_file_is_not_read_whole(tmp_path):
    proc = dstrain("config", "-l", "fr", "--data-root", tmp_path / "data", "--config", "/dev/zero", check=False)
    refused(proc, "config file /dev/zero is over 1 MB")


def test_a_variable_or_flag_that_is_not_utf8_gets_the_config_error(tmp_path):
    env = {os.fsencode(k): os.fsencode(v) for k, v in clean_env().items()}
    env[b"DSTRAIN_RUN"] = b"caf\xe9"
    proc = subprocess.run([DSTRAIN, "config", "-l", "fr", "--data-root", str(tmp_path / "data")], env=env,
                          capture_output=True, text=True, errors="replace")
    refused(proc, "run (from env DSTRAIN_RUN)", "is not valid UTF-8")
    proc = subprocess.run([os.fsencode(DSTRAIN), b"config", b"-l", b"fr", b"--data-root", str(tmp_path).encode()
                           + b"/caf\xe9"], env=clean_env(), capture_output=True, text=True, errors="replace")
    refused(proc, "data_root (from flag --data-root)", "is not valid UTF-8")


def test_a_value_of_100_000_characters_is_shown_cut_short(tmp_path):
    proc = dstrain("config", "-l", "fr", "--data-root", tmp_path / "data", check=False,
                   env=clean_env(DSTRAIN_WORKERS="[" * 100_000))
    refused(proc, "workers: ", "(100002 characters) from env DSTRAIN_WORKERS")
    assert len(proc.stderr) < 2000


@pytest.mark.parametrize("inside, target", [("runs", "/usr/local"), ("runs/fr/logs", "/usr/local/share"),
                                            ("imported/fr", "/usr/local/lib"), ("sources", "/var/lib")])
def test_a_folder_of_the_data_root_that_links_to_a_system_directory_is_refused(tmp_path, inside, target):
    """The data root is a folder of its own, but a folder dstrain writes in there is a link to a system
    directory: the kernel would write there.  Refused before anything is written, saying which link."""
    data = tmp_path / "data"
    link = data / inside
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    before = set(os.listdir(target))
    proc = dstrain("run", "-l", "fr", "--data-root", data, "--to", "download", check=False)
    refused(proc, f"{link} is a link to {target}, a system directory, and dstrain writes in it")
    assert set(os.listdir(target)) == before
    link.unlink()
    link.mkdir()
    assert dstrain("config", "-l", "fr", "--data-root", data).returncode == 0
