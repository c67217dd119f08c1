"""`dstrain serve` end to end: a real service process, the real Docker engine, the real training image.

One image build (cached by the engine) and one service for the module.  Jobs train the image's DeepSpeech
0.9.3 on a small espeak-made Common Voice release, with tiny settings: a job from download to package takes
about 20 s here.  Every container carries the label dstrain.test=service, and only those are removed.
"""
import hashlib
import http.client
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.docker_images import deepspeech_source, docker, engine_running, own
from tests.fixtures.common_voice import build_common_voice
from tests.http_server import FileServer
from tests.service_harness import TEST_LABEL, Client, Service, free_port, remove_test_containers

pytestmark = pytest.mark.docker

#: Built from this tree: the other engineer's tests keep dstrain-test/train:latest for theirs, and the two
#: trees' images differ until they are merged.
TRAIN_IMAGE = own("dstrain-test/train:service")
RELEASE = "cv-corpus-99.0-2099-01-01"
ARCHIVE = f"{RELEASE}-fr.tar.gz"
#: Small enough for seconds per job on two cores (tests/conftest.py's corpus, DeepSpeech at width 64).
TINY = {
    "workers": 2,
    "dataset.common_voice.release": RELEASE,
    "dataset.common_voice.max_duration": 5.0,
    "train.n_hidden": 64, "train.train_batch_size": 2, "train.dev_batch_size": 2, "train.test_batch_size": 2,
    "train.early_stop": False,
    "train.smoke": False,  # tests/test_check.py tries it
    "lm.sources": [],
    "export.formats": ["tflite"],
    "evaluate.beam_width": 50,
}
MDC_KEY = "mdc-secret-4f1d2c"
METRICS_TOKEN = "metrics-token-of-the-host-5e2a"


def need_real(available: bool, why: str) -> None:
    """Skip without the real thing, but fail when tests/run.sh asks for real tools (REQUIRE_REAL_TOOLS=1).

    A copy of the helper the container issue adds to tests/conftest.py; use that one once both are merged.
    """
    if available:
        return
    if os.environ.get("REQUIRE_REAL_TOOLS") == "1":
        pytest.fail(f"REQUIRE_REAL_TOOLS=1, but {why}")
    pytest.skip(why)


def job_request(epochs: int, to=None, **overrides) -> dict:
    return {"language": "fr", "datasets": ["common_voice"], "overrides": dict(TINY, **{"train.epochs": epochs},
                                                                              **overrides), "to": to}


def train_image() -> str:
    """The training image of this tree, built (or found in the engine's cache); the other service tests use it."""
    need_real(engine_running(), "no Docker engine answers (`docker info`)")
    from tests.docker_images import build_train_image

    source = deepspeech_source()
    need_real(source.is_file(), f"no DeepSpeech source at {source} (DEEPSPEECH_SOURCE)")
    with FileServer(source.parent) as server:
        build_train_image(f"{server.url}/{source.name}", tag=TRAIN_IMAGE)
    return TRAIN_IMAGE


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    train_image()
    remove_test_containers()
    home = tmp_path_factory.mktemp("service")
    (home / "metrics.token").write_text(METRICS_TOKEN)
    # Jobs reach public addresses only; the test's file servers are on loopback: the host allows it.
    svc = Service(home / "root", TRAIN_IMAGE, slots=2,
                  extra=["--max-upload", "1M", "--tenant-limit", "1", "--egress-allow", "127.0.0.1",
                         "--metrics-token-file", str(home / "metrics.token")])
    svc.tokens = {name: svc.add_tenant(name) for name in ("alice-corp", "bob-labs", "carol-inc")}
    svc.start()
    yield svc
    svc.stop()
    remove_test_containers()


@pytest.fixture(scope="module")
def clients(service, tmp_path_factory):
    """Each tenant with its own Common Voice release uploaded (alice and bob; carol uploads nothing)."""
    found = {name: Client(service.url, token) for name, token in service.tokens.items()}
    for name in ("alice-corp", "bob-labs"):
        archive = build_common_voice(tmp_path_factory.mktemp(name))
        with open(archive, "rb") as handle:
            reply = found[name].put(f"/v1/sources/{ARCHIVE}", data=handle)
        assert reply.status_code == 201, reply.text
        assert reply.json()["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        found[name].archive_sha256 = reply.json()["sha256"]
    return found


def states(client: Client, job_id: str):
    return [t["to_state"] for t in client.get(f"/v1/jobs/{job_id}").json()["transitions"]]


def run_dir(service: Service, client: Client, job_id: str) -> Path:
    tenant_id = client.session.headers["Authorization"].split()[1].split(".")[0]
    return service.root / "tenants" / tenant_id / "runs" / job_id


def test_two_tenants_train_and_download_only_their_own(service, clients):
    alice, bob = clients["alice-corp"], clients["bob-labs"]
    jobs = {}
    for client in (alice, bob):
        pinned = job_request(3, **{"dataset.common_voice.sha256": client.archive_sha256})
        reply = client.post("/v1/jobs", json=dict(pinned, mdc_api_key=MDC_KEY))
        assert reply.status_code == 201, reply.text
        assert MDC_KEY not in reply.text
        jobs[client] = reply.json()["id"]

    # Alice follows her job's log live; the stream ends by itself when the job does.
    streamed = []
    reader = Client(service.url, service.tokens["alice-corp"])
    follower = threading.Thread(target=lambda: streamed.append(
        reader.get(f"/v1/jobs/{jobs[alice]}/log", params={"follow": "true"}).text))
    follower.start()

    for client, job_id in jobs.items():
        job = client.wait(job_id, timeout=300)
        assert job["state"] == "succeeded", job
        progress = client.get(f"/v1/jobs/{job_id}/progress").json()
        assert progress["epoch"] == progress["epochs"] == 3 and progress["stages_done"][-1] == "package"
        assert progress["train_loss"] > 0 and progress["dev_loss"] > 0 and progress["wer"] is not None

        listed = {a["path"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()}
        assert {"reports/report.html", "reports/loss.png", "package/SHA256SUMS"} <= set(listed)
        sums = client.get(f"/v1/jobs/{job_id}/artifacts/package/SHA256SUMS").text
        assert sums
        for line in sums.splitlines():
            digest, name = line.split()
            body = client.get(f"/v1/jobs/{job_id}/artifacts/package/{name.lstrip('*')}").content
            assert hashlib.sha256(body).hexdigest() == digest == listed[f"package/{name.lstrip('*')}"]["sha256"]
        # Range: the second half of the model tarball, then the rest of it from an offset.
        model = next(path for path in listed if path.startswith("package/model_tflite"))
        whole = client.get(f"/v1/jobs/{job_id}/artifacts/{model}").content
        part = client.get(f"/v1/jobs/{job_id}/artifacts/{model}", headers={"Range": f"bytes={len(whole) // 2}-"})
        assert part.status_code == 206 and part.content == whole[len(whole) // 2:]
        assert part.headers["Content-Range"] == f"bytes {len(whole) // 2}-{len(whole) - 1}/{len(whole)}"

    follower.join(timeout=60)
    assert not follower.is_alive() and "[train]" in streamed[0] and "[package]" in streamed[0]

    # Neither sees, reads nor cancels the other's jobs and files: 404, as for a job that does not exist.
    for client, other in ((alice, bob), (bob, alice)):
        theirs = jobs[other]
        assert [j["id"] for j in client.get("/v1/jobs").json()] == [jobs[client]]
        for path in ("", "/progress", "/log", "/artifacts", "/artifacts/package/SHA256SUMS"):
            assert client.get(f"/v1/jobs/{theirs}{path}").status_code == 404, path
        assert client.post(f"/v1/jobs/{theirs}/cancel").status_code == 404
        assert client.post(f"/v1/jobs/{theirs}/resume").status_code == 404
        assert [s["sha256"] for s in client.get("/v1/sources").json() if s["name"] == ARCHIVE] == \
            [client.archive_sha256]
    assert alice.archive_sha256 != bob.archive_sha256

    # No name, token or key in what the service keeps or says.
    secrets = [MDC_KEY, *service.tokens.values()]
    names = list(service.tokens)
    kept = (service.root / "service.db").read_bytes() + service.log.read_bytes()
    for path in (service.root / "service.db-wal",):
        kept += path.read_bytes() if path.exists() else b""
    for word in secrets:
        assert word.encode() not in kept
    db = sqlite3.connect(str(service.root / "service.db"))
    jobs_and_transitions = json.dumps(db.execute("SELECT * FROM jobs").fetchall() +
                                      db.execute("SELECT * FROM transitions").fetchall())
    for word in secrets + names:
        assert word not in jobs_and_transitions
        assert word.encode() not in service.log.read_bytes()
        assert not any(word in str(p) for p in service.root.rglob("*"))


def test_bad_input_is_refused_and_creates_no_job(service, clients):
    alice = clients["alice-corp"]
    before = len(alice.get("/v1/jobs").json())
    good = job_request(3)

    for token in (None, "t-0000.nope", service.tokens["alice-corp"] + "x"):
        anonymous = Client(service.url, token)
        for reply in (anonymous.get("/v1/jobs"), anonymous.post("/v1/jobs", json=good)):
            assert reply.status_code == 401 and "bearer token" in reply.json()["detail"]

    def refused(body, field):
        reply = alice.post("/v1/jobs", json=body)
        assert reply.status_code == 422, reply.text
        assert any(field in ".".join(map(str, error["loc"])) for error in reply.json()["detail"]), reply.text
        return reply.json()["detail"]

    assert refused(job_request(0), "overrides.train.epochs")[0]["msg"].startswith("Input should be greater")
    refused(dict(good, overrides={"train": {"learning_rate": "fast"}}), "overrides.train.learning_rate")
    refused(dict(good, overrides={"train.no_such_key": 1}), "overrides.train.no_such_key")
    assert "not allowed" in refused(dict(good, overrides={"data_root": "/etc"}), "overrides.data_root")[0]["msg"]
    refused(dict(good, overrides={"train.trainer_python": "/bin/sh"}), "overrides.train.trainer_python")
    refused(dict(good, overrides={"dataset.common_voice.url": "file:///etc/passwd"}), "dataset.common_voice.url")
    assert "unknown language 'xx'" in refused(dict(good, language="xx"), "language")[0]["msg"]
    refused(dict(good, to="nowhere"), "to")
    refused(dict(good, datasets=["no_such_corpus"]), "overrides")
    secret_kept = alice.post("/v1/jobs", json={"mdc_api_key": MDC_KEY, "overrides": {"train.epochs": 0}})
    assert secret_kept.status_code == 422 and MDC_KEY not in secret_kept.text  # no input echoed

    # Uploads: over the cap (1M here), declared or streamed; names that are paths.
    big = b"\0" * (1024 * 1024 + 1)
    assert alice.put("/v1/sources/big.tar.gz", data=big).status_code == 413

    def chunks():
        for _ in range(17):
            yield b"\0" * 65536
    reply = alice.put("/v1/sources/big.tar.gz", data=chunks())
    assert reply.status_code == 413 and "cap" in reply.json()["detail"]
    assert alice.put("/v1/sources/.hidden", data=b"x").status_code == 400
    assert alice.put("/v1/sources/..%2F..%2Fservice.db", data=b"x").status_code in (400, 404)
    assert alice.delete("/v1/sources/no-such.tar.gz").status_code == 404
    assert alice.delete(f"/v1/sources/{ARCHIVE}.verified.json").status_code == 400  # the pipeline's, not hers
    assert alice.put("/v1/sources/scratch.bin", data=b"x").status_code == 201
    assert alice.delete("/v1/sources/scratch.bin").status_code == 204

    # An artifact path with '..' (sent raw: clients normalise it away), absolute, or not an artifact.
    job_id = alice.get("/v1/jobs").json()[0]["id"]
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    auth = {"Authorization": alice.session.headers["Authorization"]}
    for path in ("../../../../service.db", "package/../../../../service.db", "%2e%2e/%2e%2e/config.json"):
        connection.request("GET", f"/v1/jobs/{job_id}/artifacts/{path}", headers=auth)
        reply = connection.getresponse()
        body = json.loads(reply.read())
        assert reply.status == 400 and "'..'" in body["detail"], (path, reply.status, body)
    assert alice.get(f"/v1/jobs/{job_id}/artifacts/config.json").status_code == 404
    # A symlink in the run (as a job's container could make) is not followed out of the tenant's directory.
    package = run_dir(service, alice, job_id) / "package"
    (package / "escape").symlink_to(service.root / "service.db")
    assert alice.get(f"/v1/jobs/{job_id}/artifacts/package/escape").status_code == 404
    assert "package/escape" not in [a["path"] for a in alice.get(f"/v1/jobs/{job_id}/artifacts").json()]
    (package / "escape").unlink()
    assert alice.get(f"/v1/jobs/{job_id}/artifacts/checkpoints/dstrain-progress.json").status_code == 404

    assert len(alice.get("/v1/jobs").json()) == before
    names = [s["name"] for s in alice.get("/v1/sources").json()]
    assert names == [ARCHIVE] and not [p for p in service.root.rglob(".upload-*")]


def test_kill_9_then_restart_reattaches_records_and_keeps_the_queue(service, clients):
    """alice: a long job runs, a second one waits behind it (her limit is 1); bob: a short job that ends
    while the service is down.  After kill -9 and a restart nothing is lost and nothing runs twice."""
    alice, bob = clients["alice-corp"], clients["bob-labs"]
    long_job = alice.post("/v1/jobs", json=job_request(30, to="train")).json()["id"]
    waiting = alice.post("/v1/jobs", json=job_request(3, to="download")).json()["id"]
    alice.wait(long_job, until=lambda job, progress: progress["epoch"] >= 1)
    short_job = bob.post("/v1/jobs", json=job_request(3, to="download")).json()["id"]
    bob.wait(short_job, states=("running",), timeout=30)
    containers = docker("ps", "-q", "--no-trunc", "--filter", f"label=dstrain.job={long_job}").stdout.split()
    assert len(containers) == 1

    service.kill()
    assert docker("inspect", "-f", "{{.State.Running}}", containers[0]).stdout.strip() == "true"
    deadline = time.time() + 120
    while docker("ps", "-q", "--filter", f"label=dstrain.job={short_job}").stdout.strip():
        assert time.time() < deadline, "bob's job did not end while the service was down"
        time.sleep(1)
    with pytest.raises(requests.ConnectionError):
        alice.get("/v1/jobs")
    service.start()

    assert states(alice, waiting) == ["queued"]  # still behind alice's first job
    assert bob.wait(short_job, timeout=60)["state"] == "succeeded"
    assert states(bob, short_job) == ["queued", "running", "succeeded"]
    done = alice.wait(long_job, timeout=300)
    assert done["state"] == "succeeded" and done["attempt"] == 1, done
    assert states(alice, long_job) == ["queued", "running", "succeeded"]
    progress = alice.get(f"/v1/jobs/{long_job}/progress").json()
    assert progress["epoch"] == 30 and progress["trainings"] == 1  # one DeepSpeech run, never a second
    assert (run_dir(service, alice, long_job) / "logs" / "train.log").read_text().count("▶ train") == 1
    assert alice.wait(waiting, timeout=300)["state"] == "succeeded"
    assert states(alice, waiting) == ["queued", "running", "succeeded"]


def test_cancel_then_resume_continues_from_the_last_checkpoint(service, clients):
    bob = clients["bob-labs"]
    job_id = bob.post("/v1/jobs", json=job_request(30, to="train")).json()["id"]
    bob.wait(job_id, until=lambda job, progress: progress["epoch"] >= 2)
    reply = bob.post(f"/v1/jobs/{job_id}/cancel")
    assert reply.status_code == 202 and reply.json()["cancel_requested"]
    cancelled = bob.wait(job_id, timeout=120)
    assert cancelled["state"] == "cancelled", cancelled
    stopped_at = bob.get(f"/v1/jobs/{job_id}/progress").json()["epoch"]
    assert 2 <= stopped_at < 30
    assert "interrupted" in bob.get(f"/v1/jobs/{job_id}/log").text  # the stage recorded how it ended
    assert bob.post(f"/v1/jobs/{job_id}/cancel").status_code == 409

    assert bob.post(f"/v1/jobs/{job_id}/resume").status_code == 202
    done = bob.wait(job_id, timeout=300)
    assert done["state"] == "succeeded" and done["attempt"] == 2
    assert states(bob, job_id) == ["queued", "running", "cancelled", "queued", "running", "succeeded"]
    training = json.loads((run_dir(service, bob, job_id) / "checkpoints" / "dstrain-progress.json").read_text())
    assert training["epochs_done"] == 30
    # The second DeepSpeech run started from the first one's checkpoint, at the epoch where it stopped.
    assert [i["first_epoch"] for i in training["invocations"]] == [1, stopped_at + 1]


def test_a_failed_job_says_why_from_its_failure_record_and_resumes(service, clients, tmp_path):
    """carol has no archive: download fails; she gives the job a URL to download from, then resumes."""
    carol = clients["carol-inc"]
    job_id = carol.post("/v1/jobs", json=job_request(3, to="download")).json()["id"]
    failed = carol.wait(job_id, timeout=120)
    assert failed["state"] == "failed" and failed["exit_code"] != 0
    assert failed["cause"].startswith("stage download failed: ") and ARCHIVE in failed["cause"], failed["cause"]

    archive = build_common_voice(tmp_path)
    with FileServer(tmp_path) as server:
        url = f"{server.url}/{archive.name}"
        by_url = carol.post("/v1/jobs", json=job_request(3, to="download", **{"dataset.common_voice.url": url}))
        assert carol.wait(by_url.json()["id"], timeout=120)["state"] == "succeeded"
    sources = {s["name"]: s for s in carol.get("/v1/sources").json()}
    assert sources[ARCHIVE]["size"] == archive.stat().st_size and sources[ARCHIVE]["sha256"] is None

    assert carol.post(f"/v1/jobs/{job_id}/resume").status_code == 202  # the archive is there now
    assert carol.wait(job_id, timeout=120)["state"] == "succeeded"
    assert states(carol, job_id) == ["queued", "running", "failed", "queued", "running", "succeeded"]


def test_health_and_metrics(service, clients):
    assert requests.get(service.url + "/healthz", timeout=10).json()["engine"] is True
    text = requests.get(service.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                        timeout=10).text
    assert 'dstrain_jobs{state="succeeded"}' in text and "dstrain_slots 2.0" in text
    assert "dstrain_slots_in_use" in text and "alice" not in text
    docs = requests.get(service.url + "/openapi.json", timeout=10).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/artifacts/{path}", "/v1/sources/{name}"} <= set(docs["paths"])


def test_compose_service_profile_runs_the_api_and_its_jobs(service, tmp_path):
    """docker-compose.yml's `serve` (profile service): the API on the host's loopback, jobs started through the
    mounted socket on tenant directories under the same path inside and out."""
    need_real(docker("compose", "version", check=False).returncode == 0, "no docker compose v2")
    need_real(Path("/var/run/docker.sock").exists(), "the engine's socket is not /var/run/docker.sock")
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() else (1000, 1000)
    root = tmp_path / "service-root"
    root.mkdir()
    os.chown(str(root), uid, gid)
    port = free_port()
    env = dict(os.environ, UID=str(uid), GID=str(gid), DOCKER_GID=str(os.stat("/var/run/docker.sock").st_gid),
               SERVICE_ROOT=str(root), SERVICE_PORT=str(port), DSTRAIN_IMAGE=TRAIN_IMAGE, JOB_NETWORK="host",
               SERVICE_ARGS=f"--slots 1 --label {TEST_LABEL} --instance compose{port}")
    compose = ["compose", "-p", f"dstrain-service-test-{port}", "--profile", "service"]
    repo = Path(__file__).resolve().parents[1]
    try:
        docker(*compose, "up", "-d", "--no-build", "serve", env=env, cwd=repo)
        deadline = time.time() + 60
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["engine"] is True
                break
            except requests.ConnectionError:
                assert time.time() < deadline, docker(*compose, "logs", env=env, cwd=repo).stdout
                time.sleep(0.5)
        added = docker(*compose, "exec", "-T", "serve", "dstrain", "serve", "--root", root, "tenant", "add", "acme",
                       env=env, cwd=repo).stdout
        client = Client(f"http://127.0.0.1:{port}", added.strip().splitlines()[-1])
        job_id = client.post("/v1/jobs", json=job_request(3, to="check")).json()["id"]
        assert client.wait(job_id, timeout=120)["state"] == "succeeded"
        assert "[check]" in client.get(f"/v1/jobs/{job_id}/log").text
    finally:
        docker(*compose, "down", env=env, cwd=repo, check=False)
