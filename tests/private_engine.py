"""A Docker engine of a test's own, to restart under a running job: the shared engine is never restarted.

Its own data root (under ~/.cache/dstrain, so an image loaded into it stays for the next run), exec root and
socket (under /tmp: a socket's path must be short), without the bridge network and iptables these machines
lack, on overlay2 like the shared one.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.docker_images import docker, docker_binary, own


class PrivateEngine:
    def __init__(self, name: str):
        self.data = Path.home() / ".cache" / "dstrain" / own(f"engine-{name}")
        self.run = Path(tempfile.mkdtemp(prefix="dse-", dir="/tmp"))
        self.host = f"unix://{self.run}/docker.sock"
        self.log = self.run / "dockerd.log"
        self.proc = None

    def env(self) -> dict:
        return dict(os.environ, DOCKER_HOST=self.host)

    def docker(self, *args, check=True, **kwargs) -> subprocess.CompletedProcess:
        return docker(*args, check=check, env=self.env(), **kwargs)

    def answers(self) -> bool:
        return self.docker("info", check=False, timeout=20).returncode == 0

    def start(self) -> "PrivateEngine":
        self.data.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data), "--exec-root", str(self.run / "exec"),
                 "-H", self.host, "--pidfile", str(self.run / "docker.pid"), "--bridge=none", "--iptables=false",
                 "--storage-driver=overlay2"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not self.answers():
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("the private dockerd did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.5)
        return self

    def stop(self, timeout: float = 180) -> float:
        """SIGTERM, as a host's restart does: the engine stops its containers (each with its stop timeout) and
        exits.  Returns the seconds it took."""
        started = time.time()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.time() - started

    def load(self, image: str) -> None:
        """The shared engine's ``image``, loaded into this one unless it is there already (same id)."""
        wanted = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
        have = self.docker("image", "inspect", "-f", "{{.Id}}", image, check=False).stdout.strip()
        if have == wanted:
            return
        saved = subprocess.Popen([docker_binary(), "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run([docker_binary(), "load"], stdin=saved.stdout, capture_output=True, env=self.env())
        saved.stdout.close()
        assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
        # Older builds of the same tag stay behind as dangling layers: drop them, it is this engine's own store.
        self.docker("image", "prune", "-f", check=False)

    def close(self) -> None:
        """Remove its containers and stop it; the data root (its images) stays for the next run."""
        if self.proc is not None and self.proc.poll() is None:
            found = self.docker("ps", "-aq", check=False).stdout.split()
            if found:
                self.docker("rm", "-f", *found, check=False)
            self.stop()
        # dockerd leaves its network namespace file mounted in its exec root.
        with open("/proc/self/mounts") as mounts:
            inside = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.run) + "/")]
        for mountpoint in inside:
            subprocess.run(["umount", "-l", mountpoint], check=False)
        shutil.rmtree(self.run, ignore_errors=True)
