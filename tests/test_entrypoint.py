"""The image's entrypoint, docker/as_data_owner.sh, run on the host: the same script, the same setpriv.

It starts as root and becomes the owner of the data root before its command runs; the container tests
(tests/test_compose_owner.py) show the same through `docker compose`.  Rootless Docker cannot run here, so its
case is shown with a real user namespace (unshare --user --map-root-user, as a user who is not root): there,
root is the host user, as under rootless Docker or Podman.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import need_real

SCRIPT = Path(__file__).resolve().parents[1] / "docker" / "as_data_owner.sh"
#: A host user who is not root, and has no passwd entry: the entrypoint needs none.
OWNER = 4251
STATUS = r'grep -E "^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):" /proc/self/status'


def _in_user_namespace(uid_map: Path) -> bool:
    proc = subprocess.run(["bash", "-c", '. "$1"; in_user_namespace "$2"', "bash", str(SCRIPT), str(uid_map)],
                          capture_output=True, text=True)
    assert proc.stderr == ""
    return proc.returncode == 0


@pytest.mark.parametrize("uid_map, inside", [
    ("         0          0 4294967295\n", False),  # the host's own namespace: Docker run by root
    ("         0       1000          1\n         1     100000      65536\n", True),  # rootless Docker
    ("         0     100000      65536\n", True),  # userns-remap
    ("         0       1000          1\n", True),  # Podman, unshare --map-root-user
])
def test_the_user_namespace_is_read_from_uid_map(tmp_path, uid_map, inside):
    (tmp_path / "uid_map").write_text(uid_map)
    assert _in_user_namespace(tmp_path / "uid_map") == inside


def test_an_unreadable_uid_map_counts_as_the_hosts_namespace(tmp_path):
    # Then root stays refused: the safe side.
    assert not _in_user_namespace(tmp_path / "missing")


@pytest.fixture()
def place():
    """A directory another uid can reach (pytest's own are root's alone)."""
    need_real(os.geteuid() == 0, "root, to start the entrypoint as Docker does")
    path = Path(tempfile.mkdtemp(prefix="dstrain-entrypoint-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(str(path))


def _data(place: Path, owner: int) -> Path:
    data = place / "data"
    data.mkdir()
    os.chown(str(data), owner, owner)
    return data


def _status(text: str) -> dict:
    return {key: value.split() for key, value in (line.split(":", 1) for line in text.splitlines())}


def _entrypoint(data: Path, *command, user=(), env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*user, str(SCRIPT), *command], capture_output=True, text=True, timeout=60,
                          env=dict(PATH=os.environ["PATH"], DSTRAIN_DATA_ROOT=str(data), **(env or {})))


def test_root_becomes_the_owner_of_the_data_with_nothing_left_to_regain(place):
    data = _data(place, OWNER)
    proc = _entrypoint(data, "sh", "-c", f'touch "$DSTRAIN_DATA_ROOT/written"; exec {STATUS}')
    assert proc.returncode == 0, proc.stderr
    status = _status(proc.stdout)
    assert status["Uid"] == [str(OWNER)] * 4 and status["Gid"] == [str(OWNER)] * 4
    assert status["Groups"] == []
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities][0], 16) == 0, capabilities
    assert status["NoNewPrivs"] == ["1"]
    written = (data / "written").stat()
    assert (written.st_uid, written.st_gid) == (OWNER, OWNER)


def test_data_owned_by_root_is_refused_and_nothing_runs(place):
    # Through docker compose, the refusal names ./data and the host's chown: tests/test_compose_owner.py.
    data = _data(place, 0)
    proc = _entrypoint(data, "touch", str(data / "written"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"the data directory {data} belongs to root" in proc.stderr and "Nothing was written." in proc.stderr
    assert list(data.iterdir()) == []


def test_started_as_another_user_it_runs_the_command_as_that_user(place):
    # UID and GID in .env, `user:`, or the service's jobs: no drop, whoever owns the data.
    data = _data(place, 0)
    proc = _entrypoint(data, "id", "-u", user=["setpriv", f"--reuid={OWNER}", f"--regid={OWNER}", "--clear-groups"])
    assert proc.returncode == 0 and proc.stdout.strip() == str(OWNER)


def test_in_a_user_namespace_root_is_the_host_user_and_keeps_no_capability(place):
    """Rootless Docker's case: the data is the host user's, seen as root's inside; the job stays root there."""
    data = _data(place, OWNER)
    rootless = ["setpriv", f"--reuid={OWNER}", f"--regid={OWNER}", "--clear-groups",
                "unshare", "--user", "--map-root-user"]
    need_real(subprocess.run([*rootless, "true"]).returncode == 0, "user namespaces for users who are not root")
    proc = _entrypoint(data, "sh", "-c", f'id -u; touch "$DSTRAIN_DATA_ROOT/written"; exec {STATUS}', user=rootless)
    assert proc.returncode == 0, proc.stderr
    uid, status = proc.stdout.split("\n", 1)
    assert uid == "0"
    status = _status(status)
    for capabilities in ("CapPrm", "CapEff", "CapBnd"):
        assert int(status[capabilities][0], 16) == 0, capabilities
    assert status["NoNewPrivs"] == ["1"]
    written = (data / "written").stat()
    assert (written.st_uid, written.st_gid) == (OWNER, OWNER)
