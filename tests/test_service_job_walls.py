"""The walls around a job the service runs, on the real engine with the real training image: where its
downloads may connect, its read-only root and bounded /tmp, its CPU limit, and its time limit.

The host's one exception to the egress check is a test file server on loopback (A, address and port); the
other loopback server (B) is not allowed.  B's own request log proves that a refused job fetched nothing.
"""
import json
import shutil

import pytest
import requests

from tests.docker_images import docker
from tests.fixtures.common_voice import build_common_voice
from tests.http_server import FileServer
from tests.service_harness import Client, Service, remove_test_containers
from tests.test_service import ARCHIVE, job_request, run_dir, states, train_image

pytestmark = pytest.mark.docker

TIME_LIMIT = 75
EPOCHS = 20000


def redirect(server: FileServer, path: str, target: str) -> None:
    def send(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    server.api_handlers[("GET", path)] = send


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    shutil.copy(build_common_voice(tmp_path_factory.mktemp("cv")), www / ARCHIVE)
    with FileServer(www) as allowed, FileServer(www) as forbidden:
        yield allowed, forbidden


@pytest.fixture(scope="module")
def walled(servers, tmp_path_factory):
    allowed, _ = servers
    svc = Service(tmp_path_factory.mktemp("walls") / "root", train_image(), slots=1,
                  extra=["--egress-allow", f"127.0.0.1:{allowed.httpd.server_address[1]}",
                         "--job-time-limit", f"{TIME_LIMIT}s", "--stop-grace", "60",
                         # More epochs than any machine trains within the limit (an idle one here does 200).
                         "--ceiling", f"train.epochs={EPOCHS}"])
    svc.tokens = {"frank": svc.add_tenant("frank-ltd")}
    svc.start()
    yield svc
    svc.stop()
    remove_test_containers()


def test_a_redirect_to_a_refused_address_fails_the_download_and_fetches_nothing(walled, servers):
    allowed, forbidden = servers
    frank = Client(walled.url, walled.tokens["frank"])
    port = forbidden.httpd.server_address[1]
    for target in (f"{forbidden.url}/{ARCHIVE}", f"http://localhost:{port}/{ARCHIVE}",
                   "http://169.254.169.254/latest/meta-data/"):
        allowed.requests.clear()
        redirect(allowed, "/moved", target)
        reply = frank.post("/v1/jobs", json=job_request(3, to="download", **{
            "dataset.common_voice.url": f"{allowed.url}/moved"}))
        assert reply.status_code == 201, reply.text
        failed = frank.wait(reply.json()["id"], timeout=180)
        assert failed["state"] == "failed", failed
        assert "refused to connect to" in failed["cause"] and "Downloads here may reach public addresses only" in \
            failed["cause"], failed["cause"]
        assert [r["path"] for r in allowed.requests] == ["/moved"]  # the allowed server was asked, once
    assert forbidden.requests == []
    sources = [s["name"] for s in frank.get("/v1/sources").json()]
    assert ARCHIVE not in sources


def test_the_exception_downloads_and_the_container_is_walled(walled, servers):
    allowed, _ = servers
    frank = Client(walled.url, walled.tokens["frank"])
    job_id = frank.post("/v1/jobs", json=job_request(3, to="train", **{
        "dataset.common_voice.url": f"{allowed.url}/{ARCHIVE}"})).json()["id"]
    frank.wait(job_id, until=lambda job, progress: progress["epoch"] >= 1)
    (container,) = docker("ps", "-q", "--no-trunc", "--filter", f"label=dstrain.job={job_id}").stdout.split()
    info = json.loads(docker("inspect", container).stdout)[0]
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["Tmpfs"]["/tmp"].endswith(f"size={2 << 30}")
    cpus = int(docker("info", "-f", "{{.NCPU}}").stdout)
    assert host["NanoCpus"] == cpus * 10 ** 9  # one slot: all of the engine's CPUs
    assert info["Config"]["StopTimeout"] == 60
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["DSTRAIN_NETWORK__BLOCK_PRIVATE"] == "true" and env["HOME"] == "/tmp"
    assert env["DSTRAIN_NETWORK__ALLOW"] == f"127.0.0.1:{allowed.httpd.server_address[1]}"
    written = docker("exec", container, "sh", "-c", "touch /opt/x 2>&1; touch /tmp/x && echo tmp-ok; "
                     "df -B1 /tmp | tail -1", check=False).stdout
    assert "Read-only file system" in written and "tmp-ok" in written, written
    assert frank.wait(job_id, timeout=300)["state"] == "succeeded"


def test_a_job_past_its_time_limit_fails_keeps_its_checkpoint_and_resume_continues(walled, servers):
    allowed, _ = servers
    frank = Client(walled.url, walled.tokens["frank"])
    job_id = frank.post("/v1/jobs", json=job_request(EPOCHS, to="train", **{
        "dataset.common_voice.url": f"{allowed.url}/{ARCHIVE}"})).json()["id"]
    failed = frank.wait(job_id, timeout=TIME_LIMIT + 120)
    assert failed["state"] == "failed", failed
    assert failed["cause"] == (f"stopped: the time limit of {TIME_LIMIT} s was reached; its checkpoint is kept, "
                               "resume continues it")
    assert TIME_LIMIT <= failed["usage"]["wall_seconds"] < TIME_LIMIT + 60, failed["usage"]
    stopped_at = frank.get(f"/v1/jobs/{job_id}/progress").json()["epoch"]
    assert stopped_at >= 1
    checkpoints = run_dir(walled, frank, job_id) / "checkpoints"
    assert list(checkpoints.glob("train-*.index")), list(checkpoints.iterdir())

    assert frank.post(f"/v1/jobs/{job_id}/resume").status_code == 202  # a new count starts with the resume
    frank.wait(job_id, states=("running",), timeout=60)
    again = frank.wait(job_id, timeout=TIME_LIMIT + 120)
    assert again["state"] == "failed" and again["cause"] == failed["cause"], again
    assert states(frank, job_id)[:5] == ["queued", "running", "failed", "queued", "running"]
    training = json.loads((checkpoints / "dstrain-progress.json").read_text())
    assert [i["first_epoch"] for i in training["invocations"]] == [1, stopped_at + 1]
    assert requests.get(walled.url + "/healthz", timeout=10).json()["status"] == "ok"
