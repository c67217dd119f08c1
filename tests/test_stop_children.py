"""A stop stops everything dstrain started (issue 18, class 6).

The real lmplz, sorting a corpus big enough that it is still at work, and DeepSpeech's training (the
test double, blocked in an epoch) must end with dstrain whichever way dstrain ends: SIGTERM (docker stop,
Slurm's scancel), Ctrl-C (SIGINT to the terminal's process group), or SIGKILL of dstrain alone (kill -9,
the out-of-memory killer, Slurm's last word).  /proc is then searched for one left running.  And no code of
the pipeline starts a program or a process but through pipeline/processes.py and pipeline/workers.py,
which tie every child to dstrain.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DSTRAIN, clean_env, dstrain, need_real, write_config
from tests.test_lm import fake_scorer_tool
from tests.test_training import Scenario, prepared, tools  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
#: Letters of the test release's alphabet.
LETTERS = "abcdeilmnoprstu"


@pytest.fixture(scope="module")
def kenlm(tmp_path_factory) -> Path:
    """lmplz, filter and build_binary from docker/build_kenlm.sh (built once per machine, then cached).

    lmplz runs with SIGPIPE ignored: at work on a big corpus it sorts for minutes without a word, so the pipe
    that dstrain reads its output from, closed, would not end it either."""
    prefix = tmp_path_factory.mktemp("kenlm")
    built = subprocess.run(["bash", str(REPO / "docker" / "build_kenlm.sh"), str(prefix)], timeout=1800)
    need_real(built.returncode == 0, "KenLM could not be built here")
    wrapped = prefix / "tools"
    wrapped.mkdir()
    for name in ("filter", "build_binary"):
        (wrapped / name).symlink_to(prefix / "bin" / name)
    (wrapped / "lmplz").write_text(f"#!/bin/sh\ntrap '' PIPE\nexec {prefix / 'bin' / 'lmplz'} \"$@\"\n")
    (wrapped / "lmplz").chmod(0o755)
    return wrapped


@pytest.fixture(scope="module")
def before_lm(cv_archive, tmp_path_factory) -> Path:
    """A data root with the test release imported, cleaned and its alphabet built, and a text of a million
    random words placed in sources/: lmplz takes seconds over its 5-grams."""
    root = tmp_path_factory.mktemp("before-lm")
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(str(cv_archive), str(data / "sources" / cv_archive.name))
    dstrain("run", "-l", "fr", "--config", write_config(root / "c.toml", data), "--to", "alphabet")
    rng = random.Random(18)
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 9))) for _ in range(5000)]
    lines = (" ".join(rng.choice(words) for _ in range(10)) for _ in range(100_000))
    (data / "sources" / "big.txt").write_text("\n".join(lines) + "\n")
    return data


def _config(tmp_path: Path, data: Path, kenlm: Path) -> Path:
    config = write_config(tmp_path / "c.toml", data)
    with config.open("a") as out:  # the scorer is never reached: the fake packager will do
        out.write(f'[lm]\nkenlm_bin = "{kenlm}"\nscorer_tool = "{fake_scorer_tool(tmp_path)}"\norder = 5\n'
                  'memory = "64M"\nsources = ["big"]\n[lm.source.big]\nfilename = "big.txt"\nlicence = "test"\n')
    return config


def _processes():
    """(pid, parent pid, state, name, command line) of every process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        yield int(stat.parent.name), int(fields[1]), fields[0], name, command


def _lmplz_of(data: Path):
    """The running lmplz processes writing under ``data``."""
    return [pid for pid, _, state, name, command in _processes()
            if name == "lmplz" and str(data) in command and state != "Z"]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_lmplz_stops_with_dstrain(before_lm, kenlm, tmp_path, how):
    data = tmp_path / "data"
    shutil.copytree(str(before_lm), str(data))
    config = _config(tmp_path, data, kenlm)
    # A session of its own, as a shell's job: Ctrl-C reaches its whole process group, and only it.
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--only", "lm"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _lmplz_of(data):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        lmplz = _lmplz_of(data)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        elif how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.kill()
        _, err = proc.communicate(timeout=60)
        # Stopped before dstrain ends; killed with it (by the kernel) when dstrain is killed.
        deadline = time.monotonic() + (2 if how == "SIGKILL" else 0)
        while _lmplz_of(data) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _lmplz_of(data):  # never leave one running on a shared machine
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"lmplz {pid} outlived dstrain ({how})")
    assert lmplz and not _lmplz_of(data)
    if how != "SIGKILL":
        assert "stage lm failed: interrupted" in err and "Traceback" not in err


#: How a program or a process can be started from Python, other than through processes.py and workers.py.
SPAWNS = re.compile(r"\bsubprocess\.(Popen|run|call|check_call|check_output|getoutput|getstatusoutput)\b|"
                    r"\bos\.(system|popen|fork|forkpty|exec\w*|spawn\w*|posix_spawn\w*)\b|"
                    r"\bmultiprocessing\b|\bProcessPoolExecutor\b|\bpty\.spawn\b")
#: Where children may be started: the helpers every other module goes through.
SPAWNERS = {"pipeline/processes.py", "pipeline/workers.py"}


def test_every_child_is_started_through_the_one_helper():
    found = []
    for package in ("pipeline", "importers", "languages"):
        for path in sorted((REPO / package).rglob("*.py")):
            where = path.relative_to(REPO).as_posix()
            if where in SPAWNERS:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                code = line.split("#", 1)[0]
                if SPAWNS.search(code):
                    found.append(f"{where}:{number}: {line.strip()}")
    assert not found, "start children through pipeline/processes.py (or workers.py for pools):\n" + "\n".join(found)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_deepspeech_stops_with_dstrain(prepared, tools, tmp_path, how):  # noqa: F811
    """DeepSpeech's training (the test double, blocked in an epoch, silent, as a real one is for minutes) ends
    with dstrain: stopped by it on SIGTERM, killed by the kernel when dstrain is killed."""
    scenario = Scenario(tmp_path, prepared, tools, train={"epochs": 4})
    env = clean_env(TRAINER_PYTHON=str(tools["python"]), DS_DOUBLE_RECORD=str(scenario.record),
                    DS_DOUBLE_HANG_AT_EPOCH="2")
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(scenario.config), "--from", "train",
                             "--to", "train"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)

    def trainers():
        return [pid for pid, _, state, _, command in _processes()
                if "deepspeech_training.train" in command and str(scenario.data) in command and state != "Z"]

    try:
        deadline = time.monotonic() + 120
        while not (trainers() and (scenario.run_dir / "checkpoints").is_dir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(1)  # into its epochs
        proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        _, err = proc.communicate(timeout=90)
        deadline = time.monotonic() + (2 if how == "SIGKILL" else 0)
        while trainers() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in trainers():
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the trainer {pid} outlived dstrain ({how})")
    if how == "SIGTERM":
        assert "stage train failed: interrupted" in err
