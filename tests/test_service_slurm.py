"""`dstrain serve --launcher slurm` end to end, through the HTTP API, on the real two-node cluster of
tests/slurm/cluster.sh (one GRES GPU per node) and the real DeepSpeech 0.9.3 trainer at tiny settings.

The native runtime runs the nodes' own dstrain (tests/slurm_cluster.py's node_dstrain) and trainer
(node_tools) as each tenant's uid; the docker runtime the training image on the node's engine.  One service
for the module, on a root in /var/tmp that every uid may pass through, as shared storage would be.  Jobs are
shared between assertions where one job honestly shows several things (the restart, cancel, resume and
outside-cancel test).
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from tests.conftest import need_real
from tests.fixtures.common_voice import build_common_voice
from tests.service_harness import TEST_LABEL, Client, Service, remove_test_containers
from tests.slurm_cluster import SLURM_CONF, Cluster, cluster_up, wait_for
from tests.test_service import ARCHIVE, job_request, run_dir, states, train_image

pytestmark = [pytest.mark.slurm, pytest.mark.deepspeech]

#: Each job: one GPU (one per node), one of a node's two CPUs, and room for two jobs' memory on no node.
PER_JOB = ["--gpus-per-job", "1", "--cpus-per-job", "1", "--mem-per-job", "1200M"]


@pytest.fixture(scope="module")
def cluster():
    need_real(cluster_up(), "no Slurm cluster answers: start one with `bash tests/slurm/cluster.sh start`")
    found = Cluster()
    wait_for(lambda: not found.live(), 120, "the cluster idle before the tests")
    return found


@pytest.fixture(scope="module")
def shared_root():
    """The services' roots: under a directory every uid may pass through, not pytest's (0700)."""
    path = Path(tempfile.mkdtemp(prefix="dstrain-slurm-service-", dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def slurm_service(root: Path, *launcher: str, extra=()) -> Service:
    return Service(root, "", launcher=["--launcher", "slurm", *launcher], env={"SLURM_CONF": str(SLURM_CONF)},
                   extra=list(extra))


@pytest.fixture(scope="module")
def native(cluster, shared_root, node_dstrain, node_tools):
    svc = slurm_service(shared_root / "native", "--slurm-runtime", "native", *PER_JOB, "--node-dstrain", node_dstrain,
                        *[f"--node-env={key}={value}" for key, value in node_tools.items()],
                        extra=["--tenant-limit", "2"])
    svc.tokens = {name: svc.add_tenant(name) for name in ("alice-corp", "bob-labs")}
    svc.start()
    yield svc
    svc.stop()
    cancel_all(cluster, svc)


def cancel_all(cluster: Cluster, svc: Service) -> None:
    """Whatever of the service's jobs Slurm still runs (a failed test's)."""
    mine = [str(job["job_id"]) for job in cluster.live() if job["name"].startswith(f"dstrain-test{svc.port}-")]
    if mine:
        cluster.run("scancel", "--full", "--signal=KILL", *mine, check=False)
        cluster.run("scancel", *mine, check=False)


@pytest.fixture(scope="module")
def clients(native, tmp_path_factory):
    """alice and bob, each with its own Common Voice release uploaded."""
    found = {}
    for name in ("alice-corp", "bob-labs"):
        client = Client(native.url, native.tokens[name])
        archive = build_common_voice(tmp_path_factory.mktemp(name))
        with open(archive, "rb") as handle:
            assert client.put(f"/v1/sources/{ARCHIVE}", data=handle).status_code == 201
        found[name] = client
    return found["alice-corp"], found["bob-labs"]


def job_env(svc: Service, client: Client, job_id: str) -> dict:
    """The environment of the job's dstrain process on its node: its own, as Slurm's job gave it."""
    data = str(run_dir(svc, client, job_id).parents[1])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        if env.get("DSTRAIN_DATA_ROOT") == data and job_id.encode() in cmdline:
            return env
    return {}


def started_on(client: Client, job_id: str) -> str:
    """The node its last run started on, as its transitions say."""
    causes = [t["cause"] for t in client.get(f"/v1/jobs/{job_id}").json()["transitions"] if t["to_state"] == "running"]
    return causes[-1].rsplit(" on ", 1)[-1] if causes else ""


def download_package(client: Client, job_id: str) -> None:
    listed = {a["path"]: a["sha256"] for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()}
    sums = client.get(f"/v1/jobs/{job_id}/artifacts/package/SHA256SUMS").text
    assert sums.strip()
    for line in sums.splitlines():
        digest, name = line.split()
        body = client.get(f"/v1/jobs/{job_id}/artifacts/package/{name.lstrip('*')}").content
        assert hashlib.sha256(body).hexdigest() == digest == listed[f"package/{name.lstrip('*')}"]


def test_three_jobs_of_two_tenants_two_at_once_one_per_node_the_third_queued_in_slurm(native, clients):
    alice, bob = clients
    jobs = [(alice, alice.post("/v1/jobs", json=job_request(1)).json()["id"]),
            (alice, alice.post("/v1/jobs", json=job_request(1)).json()["id"]),
            (bob, bob.post("/v1/jobs", json=job_request(1)).json()["id"])]

    def two_running():
        found = {job_id: client.get(f"/v1/jobs/{job_id}").json() for client, job_id in jobs}
        running = [job_id for job_id, job in found.items() if job["state"] == "running"]
        return found if len(running) == 2 else None

    found = wait_for(two_running, 180, "two of the jobs running")
    running = [(client, job_id) for client, job_id in jobs if found[job_id]["state"] == "running"]
    (waiting_client, waiting), = [(client, job_id) for client, job_id in jobs if found[job_id]["state"] == "queued"]
    # One per node, each with the GPU Slurm gave it there, as its own processes see it.
    assert {started_on(client, job_id) for client, job_id in running} == {"n1", "n2"}
    for client, job_id in running:
        env = wait_for(lambda c=client, j=job_id: job_env(native, c, j), 60, f"job {job_id}'s dstrain process")
        assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["HOME"] == env["DSTRAIN_DATA_ROOT"]
        assert env["TMPDIR"].startswith("/tmp/dstrain-") and "SLURM_JOB_ID" not in env
        assert env["DSTRAIN_NETWORK__BLOCK_PRIVATE"] == "true"  # the host's forced settings reach native runs
    # The third waits in Slurm's queue, with Slurm's reason.
    view = wait_for(lambda: (lambda job: job if job["queue_reason"] == "Resources" else None)(
        waiting_client.get(f"/v1/jobs/{waiting}").json()), 60, "Slurm's reason for the third job")
    assert view["state"] == "queued" and view["attempt"] == 1

    for client, job_id in jobs:
        done = client.wait(job_id, timeout=600)
        assert done["state"] == "succeeded", (done["cause"], done["exit_code"])
        assert states(client, job_id) == ["queued", "running", "succeeded"] and done["queue_reason"] is None
        usage = done["usage"]  # one run, its wall time and GPU-seconds from Slurm's allocation
        assert usage["runs"] == 1 and usage["wall_seconds"] > 0
        assert usage["gpu_seconds"] == pytest.approx(usage["wall_seconds"])
        assert usage["cpu_seconds"] > 0
        download_package(client, job_id)
        kept = run_dir(native, client, job_id) / "logs" / "launcher-1.log"  # Slurm's output file, kept
        assert kept.stat().st_uid == (run_dir(native, client, job_id) / "config.json").stat().st_uid
    # Each tenant sees its own jobs only.
    assert alice.get(f"/v1/jobs/{jobs[2][1]}/artifacts").status_code == 404
    assert bob.get(f"/v1/jobs/{jobs[0][1]}").status_code == 404


def slurm_jobs(cluster: Cluster, svc: Service, job_id: str) -> list:
    return [job for job in cluster.jobs().values() if job["name"].startswith(f"dstrain-test{svc.port}-{job_id}-")]


def test_restart_reattaches_cancel_resume_continues_and_an_outside_scancel_fails_it(native, clients, cluster):
    """alice's long training runs through a kill -9 of the service, is cancelled, resumed, then cancelled in
    Slurm from outside; bob's short job ends while the service is down."""
    alice, bob = clients
    long_job = alice.post("/v1/jobs", json=job_request(200, to="train")).json()["id"]
    alice.wait(long_job, until=lambda job, progress: progress["epoch"] >= 1, timeout=300)
    short_job = bob.post("/v1/jobs", json=job_request(2, to="download")).json()["id"]
    bob.wait(short_job, states=("running",), timeout=60)
    (slurm_job,) = [job["job_id"] for job in slurm_jobs(cluster, native, long_job)]

    native.kill()
    records = native.root / "launchers" / "slurm" / f"test{native.port}"
    wait_for(lambda: list(records.glob(f"*-{short_job}-1.exit")), 120, "bob's job ended while the service is down")
    with pytest.raises(requests.ConnectionError):
        alice.get("/v1/jobs")
    native.start()

    assert bob.wait(short_job, timeout=60)["state"] == "succeeded"
    assert states(bob, short_job) == ["queued", "running", "succeeded"]
    # Re-attached: the same Slurm job goes on training; no second one was submitted.
    before = alice.get(f"/v1/jobs/{long_job}/progress").json()["epoch"]
    alice.wait(long_job, until=lambda job, progress: progress["epoch"] > before, timeout=120)
    assert [job["job_id"] for job in slurm_jobs(cluster, native, long_job)] == [slurm_job]
    assert alice.get(f"/v1/jobs/{long_job}").json()["attempt"] == 1

    assert alice.post(f"/v1/jobs/{long_job}/cancel").status_code == 202
    cancelled = alice.wait(long_job, timeout=120)
    assert cancelled["state"] == "cancelled", cancelled
    progress = alice.get(f"/v1/jobs/{long_job}/progress").json()
    stopped_at = progress["epoch"]
    assert 1 <= stopped_at < 200 and progress["trainings"] == 1  # one DeepSpeech run so far, never a second
    assert "interrupted" in alice.get(f"/v1/jobs/{long_job}/log").text

    assert alice.post(f"/v1/jobs/{long_job}/resume").status_code == 202
    alice.wait(long_job, until=lambda job, progress: progress["trainings"] == 2 and progress["epoch"] > stopped_at,
               timeout=300)
    training = json.loads((run_dir(native, alice, long_job) / "checkpoints" / "dstrain-progress.json").read_text())
    assert [i["first_epoch"] for i in training["invocations"]] == [1, stopped_at + 1]  # no epoch trained again

    (outside,) = [job["job_id"] for job in slurm_jobs(cluster, native, long_job) if job["job_state"] == "RUNNING"]
    assert outside != slurm_job
    cluster.run("scancel", outside)
    failed = alice.wait(long_job, timeout=cluster.kill_wait + 120)
    assert failed["state"] == "failed" and failed["attempt"] == 2, failed
    assert failed["cause"].startswith("Slurm cancelled its job: scancel, by someone other than the service"), failed
    assert states(alice, long_job) == ["queued", "running", "cancelled", "queued", "running", "failed"]
    assert failed["usage"]["runs"] == 2


def test_the_docker_runtime_runs_the_training_image_on_the_node(cluster, shared_root, tmp_path):
    image = train_image()
    svc = slurm_service(shared_root / "docker", "--slurm-runtime", "docker", "--image", image, "--network", "host",
                        "--label", TEST_LABEL, "--gpus-per-job", "0", "--cpus-per-job", "2", "--mem-per-job", "1800M")
    token = svc.add_tenant("carol-inc")
    try:
        svc.start()
        carol = Client(svc.url, token)
        with open(build_common_voice(tmp_path), "rb") as handle:
            assert carol.put(f"/v1/sources/{ARCHIVE}", data=handle).status_code == 201
        # KenLM's lmplz takes 80% of the machine's memory by default: past the container's limit (the allocation's).
        job_id = carol.post("/v1/jobs", json=job_request(1, to="train", **{"lm.memory": "256M"})).json()["id"]
        done = carol.wait(job_id, timeout=600)
        assert done["state"] == "succeeded", (done["cause"], done["exit_code"])
        assert states(carol, job_id) == ["queued", "running", "succeeded"]
        assert carol.get(f"/v1/jobs/{job_id}/progress").json()["epoch"] == 1
        assert done["usage"]["gpu_seconds"] == 0 and done["usage"]["wall_seconds"] > 0  # a CPU job
        assert subprocess.run(["docker", "ps", "-aq", "--filter", f"label=dstrain.job={job_id}"], capture_output=True,
                              text=True).stdout.strip() == ""
    finally:
        svc.stop()
        cancel_all(cluster, svc)
        remove_test_containers()


def test_a_root_a_tenants_uid_cannot_reach_is_refused(cluster, tmp_path):
    """pytest's own tmp is 0700: a job as a tenant's uid cannot pass through it, and the test job says so."""
    svc = slurm_service(tmp_path / "root", "--slurm-runtime", "native")
    proc = subprocess.run([*svc.cli_command(), "--port", str(svc.port)], capture_output=True, text=True,
                          env=svc.environment(), timeout=180)
    assert proc.returncode != 0
    assert "a tenant's uid (200000) cannot read" in proc.stderr and "mode o+x" in proc.stderr, proc.stderr
