"""Tenants for strangers on the real engine: a uid per tenant, disk quotas, and disable, enable and remove.

A real `dstrain serve` (as root, as the tests run it), the training image, jobs on the tiny Common Voice
release.  The service's tenants get uids from --tenant-uids; a container of one tenant's uid is tried
against another's directory; a tenant passes its quota with uploads, then with a running job; a tenant is
disabled while its job runs, enabled, and removed with its data and a symlink its job planted.
"""
import json
import os
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.docker_images import deepspeech_source, docker, engine_running
from tests.fixtures.common_voice import build_common_voice
from tests.service_harness import (
    DSTRAIN,
    TEST_LABEL,
    Client,
    Service,
    clean_env,
    ensure_train_image,
    passable_dir,
    remove_test_containers,
)
from tests.test_service import ARCHIVE, TRAIN_IMAGE, job_request, need_real

pytestmark = pytest.mark.docker

UIDS = (210000, 210099)
MAX_FILES = 5


@pytest.fixture(scope="module")
def service():
    need_real(engine_running(), "no Docker engine answers (`docker info`)")
    need_real(deepspeech_source().is_file(), f"no DeepSpeech source at {deepspeech_source()}")
    ensure_train_image(TRAIN_IMAGE)
    remove_test_containers()
    place = passable_dir("dstrain-tenants-")
    svc = Service(place / "root", TRAIN_IMAGE, slots=2,
                  extra=["--max-upload", "5M", "--tenant-limit", "1", "--tenant-uids", f"{UIDS[0]}-{UIDS[1]}",
                         "--max-files", str(MAX_FILES), "--disk-check-seconds", "2"])
    svc.place = place
    svc.tokens = {name: svc.add_tenant(name) for name in ("alice-corp", "bob-labs", "carol-inc")}
    svc.start()
    yield svc
    svc.stop()
    remove_test_containers()
    subprocess.run(["rm", "-rf", str(place)], check=False)


@pytest.fixture(scope="module")
def clients(service, tmp_path_factory):
    found = {name: Client(service.url, token) for name, token in service.tokens.items()}
    archive = build_common_voice(tmp_path_factory.mktemp("cv"))
    for name in ("alice-corp", "bob-labs"):
        with open(archive, "rb") as handle:
            assert found[name].put(f"/v1/sources/{ARCHIVE}", data=handle).status_code == 201
    return found


def tenant_id(client: Client) -> str:
    return client.session.headers["Authorization"].split()[1].split(".")[0]


def tenant_dir(service: Service, client: Client) -> Path:
    return service.root / "tenants" / tenant_id(client)


def serve(service: Service, *args) -> subprocess.CompletedProcess:
    """`dstrain serve ... tenant ...` beside the running service, as the host would type it."""
    return subprocess.run([DSTRAIN, "serve", *service.args, "tenant", *args], capture_output=True, text=True,
                          env=clean_env(), timeout=600)


def states(client: Client, job_id: str):
    return [t["to_state"] for t in client.get(f"/v1/jobs/{job_id}").json()["transitions"]]


def test_each_tenant_runs_as_its_own_uid_and_cannot_reach_another(service, clients):
    alice, bob = clients["alice-corp"], clients["bob-labs"]
    jobs = {client: client.post("/v1/jobs", json=job_request(1, to="check")).json()["id"] for client in (alice, bob)}
    uids = {}
    for client, job_id in jobs.items():
        assert client.wait(job_id, timeout=300)["state"] == "succeeded"
        home = tenant_dir(service, client)
        uids[client] = os.stat(home).st_uid
        assert UIDS[0] <= uids[client] <= UIDS[1] and os.stat(home).st_gid == uids[client]
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        # What the job wrote is its tenant's uid's: its container ran as that uid.
        for written in (home / "runs" / job_id / "state" / "check.json", home / "runs" / job_id / "config.json",
                        home / "jobs" / job_id / "dstrain.toml", home / "sources" / ARCHIVE):
            assert (os.stat(written).st_uid, os.stat(written).st_gid) == (uids[client], uids[client]), written
    assert uids[alice] != uids[bob]
    listed = serve(service, "list").stdout
    assert f"uid {uids[alice]}" in listed and f"uid {uids[bob]}" in listed

    # A process of alice's uid (a job that left its container, say) given every tenant's directory: bob's is closed
    # to it, its own is open.
    tenants = service.root / "tenants"
    script = (f"ls /tenants/{tenant_id(bob)} && echo BOB-LISTED; cat /tenants/{tenant_id(bob)}/sources/{ARCHIVE} "
              f"> /dev/null && echo BOB-READ; touch /tenants/{tenant_id(bob)}/planted && echo BOB-WRITTEN; "
              f"touch /tenants/{tenant_id(bob)}/sources/planted && echo BOB-SOURCES-WRITTEN; "
              f"touch /tenants/{tenant_id(alice)}/probe && echo OWN-WRITTEN; ls /tenants && echo TENANTS-LISTED")
    tried = docker("run", "--rm", "--label", TEST_LABEL, "--network", "none", "--user",
                   f"{uids[alice]}:{uids[alice]}", "-v", f"{tenants}:/tenants", "--entrypoint", "sh", TRAIN_IMAGE,
                   "-c", script, check=False)
    assert "OWN-WRITTEN" in tried.stdout, tried
    for forbidden in ("BOB-LISTED", "BOB-READ", "BOB-WRITTEN", "BOB-SOURCES-WRITTEN", "TENANTS-LISTED"):
        assert forbidden not in tried.stdout, tried
    assert tried.stderr.count("Permission denied") >= 5, tried.stderr
    assert os.stat(tenant_dir(service, alice) / "probe").st_uid == uids[alice]
    assert not (tenant_dir(service, bob) / "planted").exists()


def test_disk_quota_refuses_uploads_and_stops_a_running_job(service, clients):
    alice, carol = clients["alice-corp"], clients["carol-inc"]
    assert serve(service, "quota", "carol-inc", "64K").returncode == 0
    reply = carol.put("/v1/sources/big.bin", data=os.urandom(100 << 10))
    assert reply.status_code == 507, reply.text
    assert "disk quota of 64 KiB exceeded: " in reply.json()["detail"] and "in use" in reply.json()["detail"]
    assert [s["name"] for s in carol.get("/v1/sources").json()] == []  # nothing of it kept
    for i in range(MAX_FILES):
        assert carol.put(f"/v1/sources/small-{i}.bin", data=b"x" * 100).status_code == 201
    reply = carol.put("/v1/sources/one-more.bin", data=b"x")
    assert reply.status_code == 507 and f"--max-files {MAX_FILES}" in reply.json()["detail"], reply.text
    assert carol.put("/v1/sources/small-0.bin", data=b"y" * 100).status_code == 201  # a replacement is no new file
    assert serve(service, "quota", "carol-inc", "default").returncode == 0
    assert "no quota" in serve(service, "list").stdout

    # A running job that passes its tenant's quota: stopped with the grace, failed, its checkpoints kept.
    job_id = alice.post("/v1/jobs", json=job_request(30, to="train")).json()["id"]
    alice.wait(job_id, until=lambda job, progress: progress["epoch"] >= 2, timeout=600)
    assert serve(service, "quota", "alice-corp", "1M").returncode == 0
    failed = alice.wait(job_id, timeout=300)
    assert failed["state"] == "failed", failed
    assert failed["cause"].startswith("disk quota of 1 MiB exceeded: ") and failed["cause"].endswith(" in use")
    stopped_at = alice.get(f"/v1/jobs/{job_id}/progress").json()["epoch"]
    assert 2 <= stopped_at < 30
    assert "interrupted" in alice.get(f"/v1/jobs/{job_id}/log").text  # it stopped cleanly, not killed
    checkpoints = tenant_dir(service, alice) / "runs" / job_id / "checkpoints"
    assert any(path.name.endswith(".index") for path in checkpoints.rglob("*"))
    for reply in (alice.post(f"/v1/jobs/{job_id}/resume"), alice.post("/v1/jobs", json=job_request(1, to="check"))):
        assert reply.status_code == 507 and "disk quota of 1 MiB exceeded" in reply.json()["detail"], reply.text
    reply = alice.put("/v1/sources/more.bin", data=b"x")
    assert reply.status_code == 507 and "disk quota of 1 MiB" in reply.json()["detail"]

    assert serve(service, "quota", "alice-corp", "default").returncode == 0
    assert alice.post(f"/v1/jobs/{job_id}/resume").status_code == 202
    assert alice.wait(job_id, timeout=600)["state"] == "succeeded"
    training = json.loads((checkpoints / "dstrain-progress.json").read_text())
    assert [i["first_epoch"] for i in training["invocations"]] == [1, stopped_at + 1]  # from its checkpoint


def test_disable_enable_and_remove_a_tenant(service, clients):
    alice, bob = clients["alice-corp"], clients["bob-labs"]
    running = bob.post("/v1/jobs", json=job_request(30, to="train")).json()["id"]
    waiting = bob.post("/v1/jobs", json=job_request(1, to="check")).json()["id"]  # behind it: limit 1
    bob.wait(running, until=lambda job, progress: progress["epoch"] >= 1, timeout=600)

    disabled = serve(service, "disable", "bob-labs")
    assert disabled.returncode == 0 and running in disabled.stdout, disabled
    reply = bob.get("/v1/jobs")  # at once: the token check reads the store at every request
    assert reply.status_code == 401 and "disabled" in reply.json()["detail"]
    assert bob.put("/v1/sources/x.bin", data=b"x").status_code == 401
    deadline = time.time() + 180
    while docker("ps", "-q", "--filter", f"label=dstrain.job={running}").stdout.strip():
        assert time.time() < deadline, "the disabled tenant's job still runs"
        time.sleep(1)
    assert "disabled since" in serve(service, "list").stdout

    assert serve(service, "enable", "bob-labs").returncode == 0
    stopped = bob.wait(running, timeout=60)
    assert (stopped["state"], stopped["cause"]) == ("cancelled", "stopped: the host disabled this tenant"), stopped
    assert states(bob, waiting) == ["queued", "cancelled"]
    assert bob.get(f"/v1/jobs/{waiting}").json()["cause"] == "stopped: the host disabled this tenant"
    assert "interrupted" in bob.get(f"/v1/jobs/{running}/log").text  # stopped with the grace, cleanly

    # Remove: refused while a job runs; --force stops it, deletes the data, never following a link it planted.
    assert bob.post(f"/v1/jobs/{running}/resume").status_code == 202
    bob.wait(running, states=("running",), timeout=120)
    home = tenant_dir(service, bob)
    host = service.place / "host-dir-bob"
    host.mkdir()
    (host / "kept.txt").write_text("the host's")
    planted = home / "runs" / "planted"
    planted.symlink_to(host)
    os.lchown(planted, os.stat(home).st_uid, os.stat(home).st_gid)  # as the job would have made it
    refused = serve(service, "remove", "bob-labs")
    assert refused.returncode != 0 and "running job" in refused.stderr, refused
    assert bob.get("/v1/jobs").status_code == 200  # nothing changed
    removed = serve(service, "remove", "bob-labs", "--force")
    assert removed.returncode == 0, removed
    assert not home.exists() and (host / "kept.txt").read_text() == "the host's"
    deadline = time.time() + 60  # stopped by the command; removed by the service's next pass
    while docker("ps", "-aq", "--filter", f"label=dstrain.job={running}").stdout.strip():
        assert time.time() < deadline, "the removed tenant's container is still there"
        time.sleep(1)
    reply = bob.get("/v1/jobs")
    assert reply.status_code == 401 and "valid bearer token" in reply.json()["detail"]
    db = sqlite3.connect(str(service.root / "service.db"))
    bob_id = tenant_id(bob)
    assert db.execute("SELECT COUNT(*) FROM tenants WHERE id = ?", (bob_id,)).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM jobs WHERE tenant = ?", (bob_id,)).fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM transitions WHERE job = ?", (running,)).fetchone()[0] == 0
    audit = (service.root / "audit.log").read_text()
    assert f"tenant {bob_id} (bob-labs) removed" in audit and f"tenant {bob_id} (bob-labs) disabled" in audit
    assert alice.get("/v1/jobs").status_code == 200  # the others go on
