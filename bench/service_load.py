"""Load on `dstrain serve`: many tenants submit at once; how fast are submit and status, and does every job end
exactly once?

    .venv/bin/python bench/service_load.py [--launcher docker|slurm] [--jobs 200] [--tenants 10] [--slots 8]

A real service process on 127.0.0.1 with a job that exits 0 after about a second, so what is measured is the
service and its launcher, not training:
- docker: the real Docker engine and a minimal job image (Debian whose entrypoint sleeps a second), in
  --slots CPU slots; containers carry the label dstrain.test=service and are removed by it at the end;
- slurm: the real Slurm cluster of tests/slurm/cluster.sh (start it first, and export SLURM_CONF), the native
  runtime with a "dstrain" on the nodes that sleeps a second, CPU jobs of one CPU (--slots is not used:
  Slurm places them, four at once on the two nodes of two CPUs).
Every tenant submits its share of the jobs at the same moment (one thread per submission), then polls the
status of its jobs until all are final.  Bounded: a fixed number of submissions, a deadline, loopback only.
Not part of CI.
"""
import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.docker_images import engine_running  # noqa: E402
from tests.service_harness import FINAL, Client, Service, ensure_sleeper_image, remove_test_containers  # noqa: E402
from tests.slurm_cluster import SLURM_CONF, cluster_up  # noqa: E402

JOB = {"language": "fr", "datasets": ["common_voice"],
       "overrides": {"dataset.common_voice.release": "cv-corpus-99.0-2099-01-01", "train.epochs": 1}}


def percentile(values, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def line(name: str, seconds) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"{name:<8} {len(ms):>6} requests   p50 {percentile(ms, 0.50):7.1f} ms   p99 {percentile(ms, 0.99):7.1f} ms"
            f"   max {max(ms):7.1f} ms   mean {statistics.mean(ms):7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launcher", choices=("docker", "slurm"), default="docker")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--tenant-limit", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=900, help="seconds before the benchmark gives up")
    args = parser.parse_args()
    if args.launcher == "docker" and not engine_running():
        print("no Docker engine answers (`docker info`)", file=sys.stderr)
        return 2
    if args.launcher == "slurm" and not cluster_up():
        print("no Slurm cluster answers: bash tests/slurm/cluster.sh start", file=sys.stderr)
        return 2
    # Under /var/tmp, which every uid may pass through: a tenant's uid runs the Slurm jobs.
    tmp = Path(tempfile.mkdtemp(prefix="service-load-", dir="/var/tmp"))
    tmp.chmod(0o711)
    try:
        if args.launcher == "docker":
            remove_test_containers()
            service = Service(tmp / "root", ensure_sleeper_image(), slots=args.slots,
                              extra=["--tenant-limit", str(args.tenant_limit)])
        else:
            sleeper = tmp / "dstrain"
            sleeper.write_text("#!/bin/sh\nsleep 1\n")
            os.chmod(sleeper, 0o755)
            service = Service(tmp / "root", "", env={"SLURM_CONF": str(SLURM_CONF)}, extra=[
                "--tenant-limit", str(args.tenant_limit)], launcher=[
                "--launcher", "slurm", "--slurm-runtime", "native", "--node-dstrain", str(sleeper),
                "--gpus-per-job", "0", "--cpus-per-job", "1", "--mem-per-job", "256M"])
        clients = [Client(service.url, service.add_tenant(f"tenant-{i:02d}")) for i in range(args.tenants)]
        service.start()
        try:
            return _run(args, service, clients)
        finally:
            service.stop()
            if args.launcher == "docker":
                remove_test_containers()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, service: Service, clients) -> int:
    per_tenant = [args.jobs // args.tenants + (1 if i < args.jobs % args.tenants else 0)
                  for i in range(args.tenants)]
    submit_times, status_times, lock = [], [], threading.Lock()
    owned = {i: [] for i in range(args.tenants)}
    start = threading.Barrier(args.jobs)

    def submit(tenant: int):
        client = Client(service.url, None)
        client.session.headers.update(clients[tenant].session.headers)
        start.wait()  # every submission leaves at the same moment
        began = time.perf_counter()
        reply = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": str(uuid.uuid4())})
        took = time.perf_counter() - began
        assert reply.status_code == 201, reply.text
        with lock:
            submit_times.append(took)
            owned[tenant].append(reply.json()["id"])

    began = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(submit, t) for t, count in enumerate(per_tenant) for _ in range(count)]:
            future.result()
    submitted = time.time() - began

    deadline = time.time() + args.deadline
    finals = {}

    def watch(tenant: int):
        client = clients[tenant]
        pending = list(owned[tenant])
        while pending and time.time() < deadline:
            for job_id in list(pending):
                t0 = time.perf_counter()
                reply = client.get(f"/v1/jobs/{job_id}")
                took = time.perf_counter() - t0
                with lock:
                    status_times.append(took)
                if reply.json()["state"] in FINAL:
                    finals[job_id] = reply.json()["state"]
                    pending.remove(job_id)
            time.sleep(0.2)

    with ThreadPoolExecutor(max_workers=args.tenants) as pool:
        list(pool.map(watch, range(args.tenants)))
    wall = time.time() - began

    # Every job reached a final state, exactly once, after exactly one run: read from the store itself.
    db = sqlite3.connect(str(service.root / "service.db"))
    rows = db.execute("SELECT job, to_state FROM transitions ORDER BY seq").fetchall()
    sequences = {}
    for job_id, state in rows:
        sequences.setdefault(job_id, []).append(state)
    attempts = dict(db.execute("SELECT id, attempt FROM jobs").fetchall())
    expected = ["queued", "running", "succeeded"]
    wrong = {job: seq for job, seq in sequences.items() if seq != expected or attempts[job] != 1}
    where = (f"{args.slots} slots, image {service.image}" if args.launcher == "docker" else
             "Slurm: the native runtime, CPU jobs of one CPU on 2 nodes of 2 CPUs")
    print(f"{args.jobs} jobs from {args.tenants} tenants, launcher {args.launcher} ({where}), tenant limit "
          f"{args.tenant_limit}")
    print(f"submitted in {submitted:.1f} s; all final after {wall:.1f} s")
    print(line("submit", submit_times))
    print(line("status", status_times))
    final_once = len(sequences) == args.jobs and not wrong and len(finals) == args.jobs
    print(f"final states: {sorted(set(finals.values()))}; every job queued -> running -> succeeded exactly once, "
          f"one run each: {'yes' if final_once else 'NO'}")
    for job, seq in list(wrong.items())[:10]:
        print(f"  {job}: {seq} (attempt {attempts.get(job)})")
    return 0 if final_once else 1


if __name__ == "__main__":
    sys.exit(main())
