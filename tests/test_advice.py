"""When the operating system stops a run (a file owned by someone else, a read-only or full disk, no more
processes), the user gets one paragraph naming the files and the command that fixes it, never a traceback.

Real users (setpriv), a real read-only bind mount, a real full tmpfs, a real process limit (prlimit).
"""
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dstrain.pipeline.advice import foreign_paths
from tests.conftest import DSTRAIN, RELEASE, clean_env

pytestmark = pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root, to act as other users and to mount file systems")
ALICE = 1001
#: A user with no process of its own anywhere, so that a process limit counts only this test's processes.
LONER = 47213


@pytest.fixture(scope="module")
def other_users():
    """Whether this Python runs for another user (not one built under root's private home)."""
    probe = subprocess.run(["setpriv", f"--reuid={LONER}", f"--regid={LONER}", "--clear-groups", sys.executable,
                            "-c", "pass"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("this Python is not usable by another user (installed under root's home)")


@pytest.fixture
def shared(tmp_path):
    """A directory other users can reach (pytest's tmp_path is private to root)."""
    home = Path(tempfile.mkdtemp(prefix="dstrain-advice-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(str(home))


@contextlib.contextmanager
def mounted(*args, target: Path):
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def as_user(uid: int, home: Path, *args, limit=()):
    """dstrain run by ``uid``, as that user would type it (``limit``: prlimit options)."""
    prlimit = ["prlimit", *limit] if limit else []
    return subprocess.run([*prlimit, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", DSTRAIN,
                           *map(str, args)], capture_output=True, text=True, cwd=str(home),
                          env=clean_env(HOME=str(home)), timeout=300)


def config(home: Path) -> Path:
    path = home / "dstrain.toml"
    path.write_text(f'datasets = ["common_voice"]\nworkers = 2\n[dataset.common_voice]\nrelease = "{RELEASE}"\n'
                    "max_duration = 5.0\n")
    path.chmod(0o644)
    return path


def advised_command(stderr: str, program: str) -> list:
    """The command the advice gives, as a user would copy it (without the sudo: the test is root)."""
    line = next(line for line in stderr.splitlines() if line.strip().startswith("sudo " + program))
    return shlex.split(line)[1:]


def no_traceback(proc):
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_after_sudo_dstrain_the_user_is_told_which_folders_to_take_back(other_users, shared):
    data = shared / "data"
    subprocess.run(["install", "-d", "-o", str(ALICE), "-g", str(ALICE), str(data), str(data / "runs")], check=True)
    run = ["run", "-l", "fr", "--data-root", data, "--to", "check"]
    # The user's data root, then one `sudo dstrain` that makes the run's folder root's ...
    subprocess.run([DSTRAIN, *map(str, run)], check=True, capture_output=True, env=clean_env())
    # ... and the user's next run.
    proc = as_user(ALICE, shared, *run)
    no_traceback(proc)
    fr = data / "runs" / "fr"
    locks = data / "runs" / ".locks"  # the run's lock, the first thing a run writes
    assert f"may not write {locks}/fr.lock" in proc.stderr
    assert f"    {locks}  (uid 0 gid 0)\n    {fr}  (uid 0 gid 0)\n" in proc.stderr
    # Those folders, not the data root, not /.
    assert f"    sudo chown -R {ALICE}:{ALICE} {locks} {fr}\n" in proc.stderr
    assert "resume with:\n    dstrain run -l fr --data-root" in proc.stderr
    assert "Traceback" in as_user(ALICE, shared, "-v", *run).stderr  # -v shows it

    subprocess.run(advised_command(proc.stderr, "chown"), check=True)
    assert as_user(ALICE, shared, *run).returncode == 0


def test_a_data_root_the_user_cannot_create_gets_it_made_for_them(other_users, shared):
    (shared / "srv").mkdir(mode=0o755)
    data = shared / "srv" / "dstrain" / "data"
    proc = as_user(ALICE, shared, "run", "-l", "fr", "--data-root", data, "--to", "check")
    no_traceback(proc)
    assert f"{shared / 'srv'} belongs to uid 0 gid 0" in proc.stderr
    assert f"    sudo install -d -o {ALICE} -g {ALICE} {data}\n" in proc.stderr
    assert "chown" not in proc.stderr
    subprocess.run(advised_command(proc.stderr, "install"), check=True)
    assert as_user(ALICE, shared, "run", "-l", "fr", "--data-root", data, "--to", "check").returncode == 0


def test_a_read_only_data_root_is_not_an_ownership_problem(other_users, shared):
    (shared / "disk" / "data").mkdir(parents=True)
    with mounted("--bind", "-o", "ro", str(shared / "disk"), target=shared / "ro"):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(shared / "ro")], check=True)
        for user in (ALICE, 0):
            proc = as_user(user, shared, "run", "-l", "fr", "--data-root", shared / "ro" / "data", "--to", "check")
            no_traceback(proc)
            assert f"is on a read-only file system (mounted at {shared / 'ro'})" in proc.stderr
            assert "chown -R" not in proc.stderr and "sudo" not in proc.stderr


def test_a_full_disk_says_so_and_the_run_resumes_once_there_is_room(shared, cv_archive):
    with mounted("-t", "tmpfs", "-o", "size=400k", "tmpfs", target=shared / "small") as disk:
        (disk / "data" / "sources").mkdir(parents=True)
        shutil.copy(cv_archive, disk / "data" / "sources")
        run = ["run", "-l", "fr", "--config", config(shared), "--data-root", disk / "data", "--to", "import"]
        proc = subprocess.run([DSTRAIN, *map(str, run)], capture_output=True, text=True, env=clean_env())
        no_traceback(proc)
        assert re.search(rf"The disk is full: .* free of 4\d\d kB on the file system mounted at {disk}\)",
                         proc.stderr), proc.stderr
        assert "resume with:\n    dstrain run" in proc.stderr
        assert (disk / "data" / "runs" / "fr" / "state" / "download.json").exists()  # kept

        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        again = subprocess.run([DSTRAIN, *map(str, run)], capture_output=True, text=True, env=clean_env())
        assert again.returncode == 0, again.stderr
        assert "download  up to date" in again.stderr
        assert (disk / "data" / "imported" / "fr" / "common_voice" / "train.sdb").exists()  # the default format


def test_too_many_processes_is_explained(other_users, shared, cv_archive):
    data = shared / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(cv_archive, data / "sources")
    subprocess.run(["chown", "-R", f"{LONER}:{LONER}", str(data)], check=True)
    proc = as_user(LONER, shared, "run", "-l", "fr", "--config", config(shared), "--data-root", data,
                   "--to", "import", limit=["--nproc=2"])
    no_traceback(proc)
    assert "The system refused to start another process (at most 2 for your user, `ulimit -u`)" in proc.stderr
    assert "resume with:" in proc.stderr


def test_only_the_top_most_folders_of_someone_else_are_named(tmp_path):
    for folder in ("runs/fr/lm", "runs/de", "sources"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "sources" / "x.tar.gz").write_bytes(b"x")
    for path in (tmp_path, tmp_path / "runs", tmp_path / "runs" / "de", tmp_path / "sources"):
        os.chown(str(path), ALICE, ALICE)
    found, partial = foreign_paths(tmp_path, ALICE)
    assert sorted(found) == [tmp_path / "runs" / "fr", tmp_path / "sources" / "x.tar.gz"] and not partial
    assert foreign_paths(tmp_path, ALICE, limit=2)[1] is True
