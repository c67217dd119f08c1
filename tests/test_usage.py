"""Usage per job and per tenant: the figures the service records for a finished job of the real training image
match the engine's own, read independently by the test from the container's cgroup while it runs and from the
engine's start and die events.  The service samples every pass (2 s), so its CPU-seconds may miss the last
pass's worth; the test reads every 0.2 s."""
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from dstrain.service.ledger import Ledger
from dstrain.service.store import Store
from dstrain.service.usage import of_runs
from tests.docker_images import docker, docker_binary
from tests.fixtures.common_voice import build_common_voice
from tests.service_harness import Client, Service, remove_test_containers
from tests.test_service import ARCHIVE, job_request, train_image

pytestmark = pytest.mark.docker

METRICS_TOKEN = "usage-test-metrics-token-77"


class CgroupReader(threading.Thread):
    """The container's own counters, from the kernel: CPU time and the memory high-water mark, until it ends."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.paths = {}
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") or [""]:
                self.paths[name] = path
        self.cpu_seconds, self.peak = 0.0, 0

    def _read(self) -> bool:
        if "cpuacct" in self.paths:  # cgroup v1
            cpu = Path("/sys/fs/cgroup/cpuacct", self.paths["cpuacct"].lstrip("/"), "cpuacct.usage")
            memory = Path("/sys/fs/cgroup/memory", self.paths["memory"].lstrip("/"), "memory.max_usage_in_bytes")
            self.cpu_seconds = int(cpu.read_text()) / 1e9
            self.peak = max(self.peak, int(memory.read_text()))
        else:  # cgroup v2
            base = Path("/sys/fs/cgroup", self.paths[""].lstrip("/"))
            stat = dict(line.split() for line in (base / "cpu.stat").read_text().splitlines())
            self.cpu_seconds = int(stat["usage_usec"]) / 1e6
            self.peak = max(self.peak, int((base / "memory.peak").read_text()))
        return True

    def run(self):
        while True:
            try:
                self._read()
            except (OSError, ValueError):
                return  # the cgroup is gone: the container ended
            time.sleep(0.2)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("usage")
    (home / "metrics.token").write_text(METRICS_TOKEN)
    svc = Service(home / "root", train_image(), slots=1, extra=["--metrics-token-file", str(home / "metrics.token")])
    svc.tokens = {name: svc.add_tenant(name) for name in ("gina-corp", "hal-labs")}
    svc.start()
    yield svc
    svc.stop()
    remove_test_containers()


def test_usage_of_a_finished_job_matches_the_engines(service, tmp_path):
    gina = Client(service.url, service.tokens["gina-corp"])
    with open(build_common_voice(tmp_path), "rb") as handle:
        assert gina.put(f"/v1/sources/{ARCHIVE}", data=handle).status_code == 201
    events = subprocess.Popen([docker_binary(), "events", "--format", "{{json .}}", "--filter",
                               f"label=dstrain.service=test{service.port}", "--filter", "event=start",
                               "--filter", "event=die"], stdout=subprocess.PIPE, text=True)
    try:
        job_id = gina.post("/v1/jobs", json=job_request(5, to="train")).json()["id"]
        deadline = time.time() + 120
        while not (found := docker("ps", "-q", "--no-trunc", "--filter", f"label=dstrain.job={job_id}").stdout.split()):
            assert time.time() < deadline
            time.sleep(0.1)
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", found[0]).stdout)
        reader = CgroupReader(pid)
        reader.start()
        done = gina.wait(job_id, timeout=600)
        reader.join(timeout=30)
    finally:
        events.terminate()
    seen = {e["status"]: e["timeNano"] / 1e9 for e in map(json.loads, events.stdout.read().splitlines())
            if e.get("id") == found[0]}
    assert done["state"] == "succeeded", done
    usage = done["usage"]
    engine_wall = seen["die"] - seen["start"]
    print(f"service: {usage}; engine: wall {engine_wall:.2f} s, cpu {reader.cpu_seconds:.2f} s, "
          f"peak {reader.peak} B")
    assert usage["runs"] == 1 and usage["gpu_seconds"] == 0  # a CPU slot
    assert engine_wall - 1 <= usage["wall_seconds"] <= engine_wall + 3  # its end is seen at the next pass
    cpus = int(docker("info", "-f", "{{.NCPU}}").stdout)
    assert reader.cpu_seconds - 2 * cpus - 1 <= usage["cpu_seconds"] <= reader.cpu_seconds + 0.1
    assert 0.9 * reader.peak <= usage["peak_memory_bytes"] <= reader.peak

    total = gina.get("/v1/usage").json()
    assert total["jobs"] == 1 and total["runs"] == 1 and total["cpu_seconds"] == usage["cpu_seconds"]
    assert total["tenant"] == service.tokens["gina-corp"].split(".")[0]
    # Her directory on disk, as du counts it (the job has ended: nothing writes there now).
    du = int(subprocess.run(["du", "-s", "-B1", str(service.root / "tenants" / total["tenant"])], check=True,
                            capture_output=True, text=True).stdout.split()[0])
    assert du > 0 and abs(total["disk_bytes"] - du) <= 0.05 * du, (total["disk_bytes"], du)
    hal = Client(service.url, service.tokens["hal-labs"]).get("/v1/usage").json()
    assert hal["jobs"] == 0 and hal["wall_seconds"] == 0  # only its own
    assert gina.get("/v1/usage", params={"since": "2999-01-01T00:00:00Z"}).json()["jobs"] == 0
    assert gina.get("/v1/usage", params={"since": "yesterday"}).status_code == 422
    metrics = requests.get(service.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                           timeout=10).text
    assert f'dstrain_tenant_cpu_seconds_total{{tenant="{total["tenant"]}"}} {usage["cpu_seconds"]}' in metrics


def test_gpu_seconds_are_the_slots_gpus_times_the_run(tmp_path):
    store = Store(tmp_path / "service.db")
    store.add_tenant("t-1", "one", "h")
    job, _ = store.submit("t-1", "fr", None, {}, None, None, "h", lambda job_id: None)
    ledger = Ledger(store)
    ledger.start(job, 1, "gpu0+1", 2, at=1000.0)
    ledger.usage(job.id, 1, 30.0, 5 << 30)
    ledger.usage(job.id, 1, 20.0, 4 << 30)  # a late sample never lowers the counts
    ledger.end(job.id, 1, "requeued", at=1100.0)
    ledger.start(job, 2, "gpu0+1", 2, at=2000.0)
    usage = of_runs(ledger.of_job(job.id), at=2050.0)  # the second still running
    assert (usage.runs, usage.wall_seconds, usage.gpu_seconds) == (2, 150.0, 300.0)
    assert (usage.cpu_seconds, usage.peak_memory_bytes) == (30.0, 5 << 30)
    assert [run.attempt for run in ledger.requeued_before(job.id, 2)] == [1]
