"""Faults a host meets, with the real training image: the container engine restarts under a running job, and
the service's disk fills up under one.

The engine restarted is the test's own (tests/private_engine.py), never the shared one.  The full disk is a
small tmpfs as the service's --root, filled by the test and then freed.
"""
import json
import subprocess
import time

import pytest
import requests

from tests.docker_images import docker
from tests.fixtures.common_voice import build_common_voice
from tests.private_engine import PrivateEngine
from tests.service_harness import Client, Service, remove_test_containers
from tests.test_service import ARCHIVE, TRAIN_IMAGE, job_request, run_dir, states, train_image

pytestmark = pytest.mark.docker


def upload(client: Client, tmp_path) -> None:
    with open(build_common_voice(tmp_path), "rb") as handle:
        reply = client.put(f"/v1/sources/{ARCHIVE}", data=handle)
    assert reply.status_code == 201, reply.text


def training(service: Service, client: Client, job_id: str) -> dict:
    return json.loads((run_dir(service, client, job_id) / "checkpoints" / "dstrain-progress.json").read_text())


def test_an_engine_restart_queues_the_job_again_and_it_resumes(tmp_path):
    engine = PrivateEngine("faults")
    service = None
    try:
        engine.start()
        engine.load(train_image())
        service = Service(tmp_path / "root", TRAIN_IMAGE, slots=1, env={"DOCKER_HOST": engine.host},
                          extra=["--max-requeues", "3", "--stop-grace", "60"])
        token = service.add_tenant("ivy-corp")
        service.start()
        ivy = Client(service.url, token)
        upload(ivy, tmp_path)
        job_id = ivy.post("/v1/jobs", json=job_request(20, to="train")).json()["id"]
        ivy.wait(job_id, until=lambda job, progress: progress["epoch"] >= 2)

        took = engine.stop()
        stopped_at = training(service, ivy, job_id)["epochs_done"]
        assert 2 <= stopped_at < 20
        assert requests.get(service.url + "/healthz", timeout=10).json()["engine"] is False
        # Queued again if the service saw the container end before the engine went; else when it is back.
        assert ivy.get(f"/v1/jobs/{job_id}").json()["state"] in ("running", "queued")
        down = time.time()
        engine.start()
        ivy.wait(job_id, until=lambda job, progress: job["attempt"] >= 2 and job["state"] == "running",
                 timeout=120)
        print(f"engine stopped in {took:.1f} s; the job ran again {time.time() - down:.1f} s after the engine "
              "was started again")
        done = ivy.wait(job_id, timeout=600)
        assert done["state"] == "succeeded", (done["cause"], done["transitions"])
        moves = done["transitions"]
        assert [t["to_state"] for t in moves[:3]] == ["queued", "running", "queued"]
        assert moves[2]["cause"].startswith("stopped by the infrastructure: its container was stopped by a SIGTERM "
                                            "the service did not send (exit code 143)")
        assert "requeue 1 of at most 3" in moves[2]["cause"]
        # A start tried while the engine was going down is put back too, never failed.
        assert all(t["cause"].startswith(("started on slot", "the container engine stopped answering"))
                   for t in moves[3:-1]), moves
        assert [t["to_state"] for t in moves[-2:]] == ["running", "succeeded"]
        record = training(service, ivy, job_id)
        assert record["epochs_done"] == 20
        assert [i["first_epoch"] for i in record["invocations"]] == [1, stopped_at + 1]  # no epoch trained twice
        assert [e["epoch"] for e in record["epochs"]] == list(range(1, 21))
        assert done["usage"]["runs"] == 2  # two containers ran: before the restart and after
    finally:
        if service is not None:
            service.stop()
        engine.close()


@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (root is needed): {proc.stderr}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path) -> None:
    """Write zeros until the file system refuses."""
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 20))
                handle.flush()
        except OSError:
            pass


def test_a_full_disk_degrades_health_refuses_clearly_and_loses_no_end(small_disk, tmp_path):
    service = Service(small_disk, train_image(), slots=1, extra=["--max-requeues", "3"])  # its log: outside
    token = service.add_tenant("jay-labs")
    service.start()
    try:
        jay = Client(service.url, token)
        upload(jay, tmp_path)
        job_id = jay.post("/v1/jobs", json=job_request(30, to="train")).json()["id"]
        jay.wait(job_id, until=lambda job, progress: progress["epoch"] >= 1)
        (container,) = docker("ps", "-q", "--filter", f"label=dstrain.job={job_id}").stdout.split()
        docker("pause", container)  # so the job itself writes nothing while the disk is full
        filler = small_disk / "filler"
        fill(filler)

        health = requests.get(service.url + "/healthz", timeout=10)
        assert health.status_code == 503 and "No space left on device" in health.json()["problem"], health.text
        refused = jay.post("/v1/jobs", json=job_request(3, to="download"))
        assert refused.status_code == 507 and "disk is full" in refused.json()["detail"], refused.text
        assert jay.put("/v1/sources/more.bin", data=bytes(200_000)).status_code == 507
        assert [j["id"] for j in jay.get("/v1/jobs").json()] == [job_id]  # nothing half-made

        docker("kill", container)  # it dies while nothing can be written
        time.sleep(10)  # five passes of the scheduler
        assert jay.get(f"/v1/jobs/{job_id}").json()["state"] in ("running", "queued")  # not lost, not failed
        assert not docker("ps", "-q", "--filter", f"label=dstrain.job={job_id}").stdout.strip()  # none started

        filler.unlink()
        done = jay.wait(job_id, timeout=600)
        assert done["state"] == "succeeded", (done["cause"], done["transitions"])
        assert states(jay, job_id) == ["queued", "running", "queued", "running", "succeeded"]
        assert "SIGKILL" in done["transitions"][2]["cause"]
        assert requests.get(service.url + "/healthz", timeout=10).status_code == 200
        assert training(service, jay, job_id)["epochs_done"] == 30
    finally:
        service.stop()
        remove_test_containers()
