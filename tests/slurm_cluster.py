"""The real Slurm cluster of tests/slurm/cluster.sh, for the tests of Slurm itself and of the Slurm launcher.

tests/run.sh starts it before the tests and stops it after them; by hand: ``bash tests/slurm/cluster.sh
start``.  Tests marked ``slurm`` take the ``slurm`` fixture, which skips when no cluster answers, or fails
where tests/run.sh promised one (REQUIRE_REAL_TOOLS=1).  Each test starts on an idle cluster, and the jobs
it submitted are cancelled when it ends.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from tests.conftest import need_real
from tests.docker_images import NAMESPACE, REPO

CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_DIR = Path(os.environ.get("DSTRAIN_SLURM_DIR", "/run/dstrain-slurm"))
SLURM_CONF = SLURM_DIR / "slurm.conf"
NODES = ("n1", "n2")
#: A uid and gid with no passwd entry, as a tenant's are (a range the host sets aside).
TENANT_UID = 4242
#: The nodes' own dstrain (the README's second path), installed where any uid can run it: a tenant's job
#: cannot reach a virtualenv under /root.
NODE_DSTRAIN_DIR = Path(os.environ.get("DSTRAIN_TEST_NODE", "/opt/dstrain-test-node" + (f"-{NAMESPACE}"
                                                                                        if NAMESPACE else "")))


def cluster_up() -> bool:
    return shutil.which("sbatch") is not None and subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True).returncode == 0


class Cluster:
    def __init__(self):
        self.env = dict(os.environ, SLURM_CONF=str(SLURM_CONF))
        self.submitted: List[str] = []
        settings = dict(line.split("=", 1) for line in SLURM_CONF.read_text().splitlines()
                        if "=" in line and not line.startswith("#") and " " not in line.split("=", 1)[0])
        self.min_job_age = int(settings["MinJobAge"])
        self.kill_wait = int(settings["KillWait"])

    def run(self, *args, check=True, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, env=self.env, timeout=60,
                              **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sbatch(self, *args, wrap: Optional[str] = None) -> str:
        """A job's id: sbatch --parsable prints it (with ';cluster' on a federation)."""
        out = self.run("sbatch", "--parsable", *args, *(["--wrap", wrap] if wrap else [])).stdout.strip()
        job_id = out.split(";")[0]
        self.submitted.append(job_id)
        return job_id

    def jobs(self) -> Dict[str, dict]:
        """Every job slurmctld still knows, by id: squeue --json lists ended ones too, until MinJobAge."""
        return {str(job["job_id"]): job for job in json.loads(self.run("squeue", "--json").stdout)["jobs"]}

    def job(self, job_id: str) -> Optional[dict]:
        return self.jobs().get(job_id)

    def live(self) -> List[dict]:
        return [job for job in self.jobs().values() if job["job_state"] in ("PENDING", "RUNNING", "COMPLETING")]

    def scontrol_job(self, job_id: str) -> Dict[str, str]:
        """``scontrol -d show job``'s KEY=VALUE pairs (values without spaces)."""
        text = self.run("scontrol", "-d", "show", "job", job_id).stdout
        return dict(item.split("=", 1) for item in text.split() if "=" in item)

    def batch_pids(self, job_id: str) -> List[int]:
        """The processes of the job's batch step, its script first (``scontrol listpids``, asked of its node's
        slurmd: with two on one host, named)."""
        listed = self.run("scontrol", "listpids", job_id, self.job(job_id)["nodes"]).stdout
        rows = [line.split() for line in listed.splitlines()[1:]]
        return [int(row[0]) for row in sorted(rows, key=lambda row: row[3] != "0") if row[2] == "batch"]

    def cancel_mine(self) -> None:
        live = {job["job_id"] for job in self.live()}
        mine = [job_id for job_id in self.submitted if int(job_id) in live]
        if mine:
            self.run("scancel", "--signal=KILL", "--full", *mine, check=False)
            self.run("scancel", *mine, check=False)


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    """``condition()``'s first true value, polled; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)


@pytest.fixture()
def slurm():
    need_real(cluster_up(), "no Slurm cluster answers: start one with `bash tests/slurm/cluster.sh start` "
                            "(tests/run.sh does)")
    cluster = Cluster()
    wait_for(lambda: not cluster.live(), 120, "the cluster idle before the test")
    yield cluster
    cluster.cancel_mine()


@pytest.fixture()
def shared_dir():
    """A directory every uid can traverse, as a cluster's shared storage is: not under pytest's tmp (0700)."""
    path = Path(tempfile.mkdtemp(prefix="dstrain-slurm-", dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def node_dstrain() -> str:
    """This checkout's dstrain, installed as a node would have it (the virtualenv made once, the package and any
    dependency it gained installed each session: pip reinstalls a local project whatever its version says)."""
    python = NODE_DSTRAIN_DIR / "bin" / "python"
    base = "/usr/bin/python3"
    need_real(os.access(base, os.X_OK), f"no {base} to install the nodes' dstrain with")
    if not python.exists():
        subprocess.run([base, "-m", "venv", str(NODE_DSTRAIN_DIR)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    return str(NODE_DSTRAIN_DIR / "bin" / "dstrain")


@pytest.fixture(scope="session")
def node_tools() -> Dict[str, str]:
    """The real trainer and KenLM where a tenant's uid can run them (tests/slurm/node_tools.sh copies them out
    of /root once per trainer build): the nodes' tool settings, for the native runtime's --node-env."""
    trainer = os.environ.get("TRAINER_PYTHON", "")
    need_real(os.access(trainer, os.X_OK), "no TRAINER_PYTHON: eval \"$(bash tests/trainer_env.sh)\" first")
    build = Path(trainer).parents[2].name  # trainer-0.9.3-<key>: TRAINER_PYTHON is <it>/venv/bin/python
    dest = Path("/opt") / f"dstrain-test-node-tools-{build}"
    out = subprocess.run(["bash", str(CLUSTER_SCRIPT.with_name("node_tools.sh")), str(dest)], check=True,
                         capture_output=True, text=True, timeout=1800).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


TRAPPER = r"""
import os, signal, sys, time
name, log = sys.argv[1], sys.argv[2]
def note(text):
    with open(log, "a") as out:
        out.write(f"{time.time():.2f} {name} {text}\n")
def record(number, _):
    note(signal.Signals(number).name)
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCONT):
    signal.signal(number, record)
note(f"started uid={os.getuid()} pgid={os.getpgid(0)} sid={os.getsid(0)}")
while True:
    time.sleep(0.1)
"""


def write_trapper(directory: Path) -> str:
    """A program that writes every signal it gets to a log, and ignores it: `python TRAPPER NAME LOG`."""
    path = directory / "trapper.py"
    path.write_text(TRAPPER)
    path.chmod(0o755)
    return f"/usr/bin/python3 {path}"


def signals_seen(log: Path) -> Dict[str, List[str]]:
    """What each program of a trapper log got, in order: {name: ["SIGCONT", "SIGTERM", ...]}."""
    seen: Dict[str, List[str]] = {}
    for line in log.read_text().splitlines():
        _, name, what = line.split(" ", 2)
        seen.setdefault(name, [])
        if what.startswith("SIG"):
            seen[name].append(what)
    return seen
