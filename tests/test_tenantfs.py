"""tenantfs: the service reaches a tenant's files beneath the tenant directory's descriptor, never through a
symlink, both with openat2 and with the O_NOFOLLOW walk it falls back to where the kernel lacks openat2.

The fallback is tested for real: the syscall number is pointed at one no kernel has, so the kernel itself
answers ENOSYS, as an old kernel or a seccomp filter would.  The race is real too: a process running as
another uid (setpriv) swaps files and directories for symlinks in a tight loop while this one reads.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dstrain.service import beneath, tenantfs

#: The uid the racing swapper runs as (a job's, here: no one's on this machine).
SWAPPER_UID = 54321
#: Reads raced against the swapper: the check-then-open this replaced let 60 of 10,000 out here.
READS = 10000


@pytest.fixture(params=["openat2", "walk"])
def both_ways(request, monkeypatch):
    """Every test of this module once with openat2, once with the fallback walk."""
    monkeypatch.setattr(beneath, "_openat2_works", None)
    if request.param == "walk":
        monkeypatch.setattr(beneath, "OPENAT2_SYSCALL", 99999)  # the kernel answers ENOSYS
    yield request.param
    assert tenantfs.openat2_in_use() is (request.param == "openat2"), "the other way was taken"


@pytest.fixture()
def place():
    """A directory every uid may pass through (pytest's own are root's alone), for the swapper's sake."""
    with tempfile.TemporaryDirectory(prefix="tenantfs-", dir="/tmp") as found:
        os.chmod(found, 0o711)
        yield Path(found)


def _tenant(place: Path) -> Path:
    """A tenant's tree with plain files, and the things a hostile job leaves: links out, a FIFO, a socket."""
    tenant = place / "tenant"
    package = tenant / "runs" / "job-1" / "package"
    package.mkdir(parents=True)
    (package / "README.md").write_text("the model card\n")
    (package / "model.tar.xz").write_bytes(b"m" * 5000)
    (place / "outside").mkdir()
    (place / "outside" / "secret").write_text("OUTSIDE-SECRET\n")
    (package / "escape").symlink_to(place / "outside" / "secret")
    (tenant / "runs" / "job-1" / "linked").symlink_to(place / "outside")
    os.mkfifo(str(package / "fifo"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(package / "socket"))
    return tenant


def test_reads_only_plain_files_reached_without_a_link(both_ways, place):
    tenant = _tenant(place)
    with tenantfs.Tree(tenant) as tree:
        assert tree.read("runs/job-1/package/README.md").data == b"the model card\n"
        assert tree.read("runs/job-1/package/README.md", offset=-5).data == b"card\n"
        assert tree.read("runs/job-1/package/model.tar.xz", offset=10, limit=3).data == b"mmm"
        # A FIFO would block an open without O_NONBLOCK: this must come back at once, with nothing.
        for absent in ("runs/job-1/package/escape", "runs/job-1/linked/secret", "runs/job-1/package/fifo",
                       "runs/job-1/package/socket", "runs/job-1/package", "runs/job-1/package/missing"):
            assert tree.read(absent) is None, absent
            with pytest.raises(tenantfs.NotFound):
                tree.open_file(absent)
        for bad in ("../outside/secret", "/etc/passwd", "runs/../../outside/secret", "a//b"):
            with pytest.raises(ValueError):
                tree.read(bad)
        assert [entry.path for entry in tree.files("runs/job-1")] == \
            ["runs/job-1/package/README.md", "runs/job-1/package/model.tar.xz"]
        assert tree.files("runs/job-1/linked") == []
        with pytest.raises(tenantfs.NotFound):
            tree.open_dir("runs/job-1/linked")
    # The tenant's directory itself is never a symlink either.
    (place / "alias").symlink_to(tenant)
    with pytest.raises(tenantfs.NotFound):
        tenantfs.Tree(place / "alias")


def _state(path: Path):
    status = os.lstat(path)
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), status.st_mtime_ns, \
        sorted(os.listdir(path)) if path.is_dir() else None


def test_writes_never_follow_a_link(both_ways, place):
    tenant = _tenant(place)
    host_dir = place / "host-dir"
    host_dir.mkdir()
    (tenant / "sources").symlink_to(host_dir)
    (tenant / "jobs").symlink_to(host_dir)
    before = _state(host_dir)
    owner = (SWAPPER_UID, SWAPPER_UID)
    with tenantfs.Tree(tenant) as tree:
        for directory in ("sources", "jobs/job-2", "runs/job-1/linked/x"):
            with pytest.raises(tenantfs.Refused, match="not a plain directory"):
                tree.make_dirs(directory, owner)
        with pytest.raises(tenantfs.NotFound):
            tree.remove_file("runs/job-1/linked/secret")
        with pytest.raises(tenantfs.NotFound):  # the link's name is not a file of the tenant's to delete
            tree.remove_file("runs/job-1/package/escape")
        assert _state(host_dir) == before and (place / "outside" / "secret").read_text() == "OUTSIDE-SECRET\n"

        # A new file: made under a new name, given to its owner, renamed over whatever the name was.
        directory = tree.make_dirs("runs/job-1/package", owner)
        try:
            with tenantfs.NewFile(directory, "escape", owner) as new:
                new.write(b"replaced")
                new.publish()
            with tenantfs.NewFile(directory, "scratch", owner) as abandoned:
                abandoned.write(b"not kept")
            os.mkdir("a-dir", dir_fd=directory)
            with pytest.raises(tenantfs.Refused, match="is a directory"):
                with tenantfs.NewFile(directory, "a-dir", owner) as new:
                    new.publish()
        finally:
            os.close(directory)
        made = tree.make_dirs("jobs-real/job-3", owner)
        os.close(made)
        tree.remove_file("runs/job-1/package/model.tar.xz")
    package = tenant / "runs" / "job-1" / "package"
    assert not (package / "escape").is_symlink() and (package / "escape").read_bytes() == b"replaced"
    assert (place / "outside" / "secret").read_text() == "OUTSIDE-SECRET\n"
    assert sorted(os.listdir(package)) == ["README.md", "a-dir", "escape", "fifo", "socket"]  # no temporaries
    if os.geteuid() == 0:
        assert os.stat(package / "escape").st_uid == SWAPPER_UID
        for made in (tenant / "jobs-real", tenant / "jobs-real" / "job-3"):
            assert (os.stat(made).st_uid, stat.S_IMODE(os.stat(made).st_mode)) == (SWAPPER_UID, 0o700)


def test_usage_counts_blocks_once_and_never_follows(place):
    tenant = _tenant(place)
    (place / "outside" / "big").write_bytes(os.urandom(1 << 20))
    (tenant / "runs" / "big-link").symlink_to(place / "outside" / "big")
    (tenant / "data.bin").write_bytes(os.urandom(300_000))
    os.link(tenant / "data.bin", tenant / "runs" / "same-data.bin")
    with open(tenant / "sparse", "wb") as handle:  # 100 MB long, a few blocks on disk
        handle.truncate(100 << 20)
        handle.write(b"x")
    os.sync()
    with tenantfs.Tree(tenant) as tree:
        used = tree.usage()
    # du counts allocated blocks, hard links once, and follows no symlink: the same rules.
    du = int(subprocess.run(["du", "-s", "-B1", str(tenant)], capture_output=True, text=True, check=True)
             .stdout.split()[0])
    assert used == du
    assert 300_000 < used < 1 << 20  # the data once, not twice, and not the 1 MiB behind the link


def test_remove_tree_deletes_links_not_what_they_name(place):
    tenant = _tenant(place)
    deep = tenant / "deep"
    current = deep
    for _ in range(tenantfs.MAX_DEPTH + 10):  # deeper than a walk holds descriptors for
        current = current / "d"
    current.mkdir(parents=True)
    (current / "bottom").write_text("x")
    with tenantfs.Tree(tenant) as tree, pytest.raises(tenantfs.Refused, match="deeper than"):
        tree.usage()
    tenantfs.remove_tree(place, "tenant")
    assert not tenant.exists()
    assert (place / "outside" / "secret").read_text() == "OUTSIDE-SECRET\n"
    tenantfs.remove_tree(place, "tenant")  # gone already: nothing to do


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_all_gives_the_tree_and_no_more(place):
    tenant = _tenant(place)
    (place / "outside" / "linked-hard").write_text("a host file")
    os.link(place / "outside" / "linked-hard", tenant / "hard")
    with tenantfs.Tree(tenant) as tree:
        kept = tree.chown_all((SWAPPER_UID, SWAPPER_UID))
    assert kept == 1  # the hard link: its other name is outside
    assert os.stat(tenant / "hard").st_uid == 0
    for path in (tenant, tenant / "runs" / "job-1" / "package" / "README.md", tenant / "runs" / "job-1"):
        assert os.stat(path).st_uid == SWAPPER_UID
    assert os.lstat(tenant / "runs" / "job-1" / "package" / "escape").st_uid == SWAPPER_UID  # the link itself
    assert os.stat(place / "outside" / "secret").st_uid == 0  # not what it names


SWAPPER = Path(__file__).with_name("link_swapper.py")


def swapper(uid: int, pairs, hold: float = 0.0) -> subprocess.Popen:
    """tests/link_swapper.py as ``uid`` (a job's): it swaps each [path, target] pair for a symlink in a loop."""
    process = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                shutil.which("python3", path="/usr/bin:/bin") or sys.executable, str(SWAPPER),
                                json.dumps([[str(path), str(target)] for path, target in pairs]), str(hold)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    if process.poll() is not None:
        raise AssertionError(f"the swapper exited: {process.communicate()}")
    return process


def stop(process: subprocess.Popen) -> int:
    """How many swaps it made; everything is back in place."""
    process.terminate()
    out, err = process.communicate(timeout=60)
    assert out.strip().isdigit(), err
    return int(out)


def seeded_outside(place: Path):
    """Files outside the tenant's tree with a marker each, root's alone as the host's are; /etc/shadow too."""
    targets, markers = [], []
    for name in ("other-tenant-file", "service.db"):
        marker = f"MARKER-{name}-{os.urandom(6).hex()}"
        path = place / "outside" / name
        path.write_text(marker * 10)
        os.chmod(path, 0o600)
        targets.append(path)
        markers.append(marker.encode())
    readme = place / "outside" / "README.md"  # where the swapped package directory leads
    marker = f"MARKER-package-{os.urandom(6).hex()}"
    readme.write_text(marker)
    markers.append(marker.encode())
    shadow = Path("/etc/shadow")
    if shadow.is_file():
        targets.append(shadow)
        markers.append(shadow.read_bytes().splitlines()[0])
    return targets, markers


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_racing_swapper_never_leads_a_read_outside(both_ways, place):
    tenant = _tenant(place)
    package = tenant / "runs" / "job-1" / "package"
    targets, markers = seeded_outside(place)
    pairs = [(package / "README.md", target) for target in targets] + [(package, place / "outside")]
    subprocess.run(["chown", "-R", f"{SWAPPER_UID}:{SWAPPER_UID}", str(tenant)], check=True)
    racing = swapper(SWAPPER_UID, pairs)
    try:
        results = []
        for _ in range(READS):
            with tenantfs.Tree(tenant) as tree:
                found = tree.read("runs/job-1/package/README.md")
                results.append((found.data if found else None, [e.path for e in tree.files("runs/job-1/package")]))
    finally:
        swaps = stop(racing)
    for data, listed in results:
        assert data in (None, b"the model card\n")
        assert not any(marker in (data or b"") for marker in markers)
        # (the swapper's own entries: the real README under its hidden name while the link stands in for it)
        assert {path for path in listed if "/.swap-" not in path} <= {"runs/job-1/package/README.md",
                                                                        "runs/job-1/package/model.tar.xz"}
    served = sum(1 for data, _ in results if data)
    refused = len(results) - served
    print(f"{both_ways}: {READS} reads during {swaps} swaps: {served} read the tenant's file, {refused} found a "
          "link (refused), 0 read outside")
    assert served and refused and swaps > 100  # the race was run, both ways
