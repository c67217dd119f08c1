"""Load on `dstrain serve`: many tenants submit at once; how fast are submit and status, and does every job end
exactly once?

    .venv/bin/python bench/service_load.py [--jobs 200] [--tenants 10] [--slots 8]

A real service process on 127.0.0.1 and the real Docker engine, with a minimal job image (Debian whose
entrypoint sleeps about a second and exits 0), so what is measured is the service, not training.  Every
tenant submits its share of the jobs at the same moment (one thread per submission), then polls the
status of its jobs until all are final.  Bounded: a fixed number of submissions, a deadline, loopback only.
Not part of CI.  Containers carry the label dstrain.test=service and are removed by it at the end.
"""
import argparse
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
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--tenant-limit", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=900, help="seconds before the benchmark gives up")
    args = parser.parse_args()
    if not engine_running():
        print("no Docker engine answers (`docker info`)", file=sys.stderr)
        return 2
    image = ensure_sleeper_image()
    remove_test_containers()
    with tempfile.TemporaryDirectory(prefix="service-load-") as tmp:
        service = Service(Path(tmp) / "root", image, slots=args.slots,
                          extra=["--tenant-limit", str(args.tenant_limit)])
        clients = [Client(service.url, service.add_tenant(f"tenant-{i:02d}")) for i in range(args.tenants)]
        service.start()
        try:
            return _run(args, service, clients)
        finally:
            service.stop()
            remove_test_containers()


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
    print(f"{args.jobs} jobs from {args.tenants} tenants, {args.slots} slots, tenant limit {args.tenant_limit}, "
          f"image {service.image}")
    print(f"submitted in {submitted:.1f} s; all final after {wall:.1f} s")
    print(line("submit", submit_times))
    print(line("status", status_times))
    final_once = len(sequences) == args.jobs and not wrong and len(finals) == args.jobs
    print(f"final states: {sorted(set(finals.values()))}; every job queued -> running -> succeeded exactly once, "
          f"one container each: {'yes' if final_once else 'NO'}")
    for job, seq in list(wrong.items())[:10]:
        print(f"  {job}: {seq} (attempt {attempts.get(job)})")
    return 0 if final_once else 1


if __name__ == "__main__":
    sys.exit(main())
