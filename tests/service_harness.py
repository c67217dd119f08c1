"""A real `dstrain serve` for the service's tests and benchmark: a subprocess on loopback, its tenants, its
engine's containers labelled so that only they are cleaned up, and a minimal job image.

Nothing here mocks the engine: the service starts real containers on the Docker engine of this machine.
Everything it starts carries the label ``dstrain.test=service``; cleanup removes by that label only.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import requests

from tests.docker_images import (
    DEBIAN_IMAGE,
    build_train_image,
    deepspeech_source,
    docker,
    ensure_debian_base,
    image_exists,
    own,
)
from tests.http_server import FileServer

DSTRAIN = str(Path(sys.executable).with_name("dstrain"))
TEST_LABEL = "dstrain.test=" + own("service")
#: A job image whose entrypoint sleeps about a second and succeeds, whatever dstrain arguments it is given.
SLEEPER_IMAGE = "dstrain-test/sleeper:latest"
FINAL = ("succeeded", "failed", "cancelled")


def ensure_sleeper_image() -> str:
    ensure_debian_base()
    if not image_exists(SLEEPER_IMAGE):
        with tempfile.TemporaryDirectory(prefix="sleeper-") as context:
            Path(context, "Dockerfile").write_text(
                f"FROM {DEBIAN_IMAGE}\n"
                # The job's arguments (run --language ...) land in "$@" and are ignored.
                'ENTRYPOINT ["/bin/sh", "-c", "sleep 1", "sleeper"]\n')
            docker("build", "--network", "host", "-t", SLEEPER_IMAGE, context)
    return SLEEPER_IMAGE


def ensure_train_image(tag: str) -> str:
    """The training image of this tree (tests/docker_images.py), built once and then from the engine's cache."""
    source = deepspeech_source()
    if not source.is_file():
        raise FileNotFoundError(f"no DeepSpeech source at {source} (DEEPSPEECH_SOURCE)")
    with FileServer(source.parent) as server:
        build_train_image(f"{server.url}/{source.name}", tag=tag)
    return tag


def passable_dir(prefix: str) -> Path:
    """A new directory under /tmp that every uid may pass through (pytest's own are root's alone): a service
    root there lets a test act as a tenant's uid in the tenant's directory, as its jobs do."""
    found = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    found.chmod(0o711)
    return found


#: A job image whose entrypoint waits until it is stopped: a job of it holds its slot, so others stay queued.
HOLDER_IMAGE = "dstrain-test/holder:latest"


def ensure_holder_image() -> str:
    ensure_debian_base()
    if not image_exists(HOLDER_IMAGE):
        with tempfile.TemporaryDirectory(prefix="holder-") as context:
            Path(context, "Dockerfile").write_text(
                f"FROM {DEBIAN_IMAGE}\n"
                'ENTRYPOINT ["/bin/sh", "-c", "exec sleep infinity", "holder"]\n')
            docker("build", "--network", "host", "-t", HOLDER_IMAGE, context)
    return HOLDER_IMAGE


def remove_test_containers() -> None:
    """Every container a service test started, and nothing else on the shared engine."""
    found = docker("ps", "-aq", "--filter", f"label={TEST_LABEL}").stdout.split()
    if found:
        docker("rm", "-f", *found, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DSTRAIN_", "MDC_"))}


class Service:
    """`dstrain serve` as a subprocess; ``restart()`` after ``kill()`` brings it back on the same root and port."""

    def __init__(self, root: Path, image: str, slots: int = 2, extra: Optional[List[str]] = None,
                 env: Optional[dict] = None):
        self.root = Path(root)
        self.image = image
        #: Variables besides the clean environment, e.g. DOCKER_HOST for an engine of the test's own.
        self.env = dict(env or {})
        self.port = free_port()
        self.args = ["--root", str(self.root), "--image", image, "--slots", str(slots), "--network", "host",
                     "--label", TEST_LABEL, "--instance", f"test{self.port}", "--memory", "4g",
                     "--stop-grace", "60", *(extra or [])]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.root.parent / f"service-{self.port}.log"

    def cli(self, *args) -> str:
        proc = subprocess.run([DSTRAIN, "serve", *self.args, *args], capture_output=True, text=True,
                              env=dict(clean_env(), **self.env), timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"dstrain serve {args}: {proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def add_tenant(self, name: str) -> str:
        """Its token: the last line of `tenant add`."""
        return self.cli("tenant", "add", name).strip().splitlines()[-1]

    def start(self) -> "Service":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([DSTRAIN, "serve", *self.args, "--port", str(self.port)], stdout=log,
                                         stderr=subprocess.STDOUT, env=dict(clean_env(), **self.env))
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dstrain serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError("dstrain serve did not answer within 60 s:\n" + self.log.read_text())

    def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class Client:
    """One tenant's view of the API."""

    def __init__(self, url: str, token: Optional[str]):
        self.url = url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=60, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.session.put(self.url + path, timeout=300, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.session.delete(self.url + path, timeout=60, **kwargs)

    def wait(self, job_id: str, states=FINAL, timeout: float = 300, until=None) -> dict:
        """Poll the job until it is in one of ``states`` (or ``until(job, progress)`` holds)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.get(f"/v1/jobs/{job_id}").json()
            if until is not None:
                if until(job, self.get(f"/v1/jobs/{job_id}/progress").json()):
                    return job
            elif job["state"] in states:
                return job
            if until is not None and job["state"] in FINAL:
                raise AssertionError(f"job {job_id} ended before the condition held: {job}")
            time.sleep(1)
        # The job's own log says where it stands: the stage it is stuck in is the first thing to know.
        log_tail = self.get(f"/v1/jobs/{job_id}/log").text[-3000:]
        raise AssertionError(f"job {job_id} not done within {timeout} s: {self.get(f'/v1/jobs/{job_id}').json()}\n"
                             f"its log ends with:\n{log_tail}")
