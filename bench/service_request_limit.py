"""What a 50 MB job request costs `dstrain serve`, with the body limit (1 MB, the default) and without it in
effect (a limit of 200 MB): the service's memory before and after, the reply, and how long another tenant's
request waited meanwhile.

    .venv/bin/python bench/service_request_limit.py [--megabytes 50]

A real service process on 127.0.0.1 and the real Docker engine (no job runs: the request is refused).  Not
part of CI.
"""
import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.service_harness import Client, Service, ensure_holder_image, remove_test_containers  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024


def measure(limit: str, megabytes: int) -> str:
    with tempfile.TemporaryDirectory() as home:
        service = Service(Path(home) / "root", ensure_holder_image(), slots=1, extra=["--max-request", limit])
        sender = Client(service.url, service.add_tenant("sender"))
        other = Client(service.url, service.add_tenant("other"))
        service.start()
        try:
            before = rss_mb(service.proc.pid)
            huge = "x" * (megabytes << 20)
            body = json.dumps({"language": "fr", "overrides": {"dataset.common_voice.release": huge}})
            waited = []

            def meanwhile():
                time.sleep(0.2)
                started = time.time()
                other.get("/v1/jobs")
                waited.append(time.time() - started)
            thread = threading.Thread(target=meanwhile)
            thread.start()
            started = time.time()
            reply = sender.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"})
            took = time.time() - started
            thread.join()
            return (f"--max-request {limit:>5}: HTTP {reply.status_code} in {took:.2f} s; service memory "
                    f"{before:.0f} -> {rss_mb(service.proc.pid):.0f} MB; another tenant's request took "
                    f"{waited[0]:.2f} s")
        finally:
            service.stop()
            remove_test_containers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    for limit in ("1M", "200M"):
        print(measure(limit, args.megabytes))


if __name__ == "__main__":
    main()
