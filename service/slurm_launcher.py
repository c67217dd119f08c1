"""Slurm as a launcher: one batch job per run of a dstrain job, on a cluster's nodes, through its commands.

The service decides what may run; Slurm decides where, and which GPUs.  Each run is one ``sbatch`` of
slurm_job.sh, named ``dstrain-<instance>-<job>-<attempt>`` (the run's handle), its comment carrying the job,
the attempt, the tenant's opaque id and the service's instance.  The script runs the run's payload on the
node (``docker run`` of the training image, or the node's own ``dstrain`` as the tenant's uid) and writes
its records into this service's records directory, on storage the service and every node see:

    <records>/<instance>/<handle>.submitted   written here once sbatch has accepted the run
    <records>/<instance>/<handle>.started     by the job script: node, GPUs, start time
    <records>/<instance>/<handle>.exit        by the job script: exit status, end time
    <records>/<instance>/<handle>.out         Slurm's output file (the job script's and the payload's console)

Without accounting, Slurm forgets a job MinJobAge seconds after its end; the records keep what the service
needs after that.  A run is found again after a restart from ``squeue --json`` (its comment) and from its
records, so the launcher keeps no state of its own.
"""
import json
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from dstrain.service.launcher import ACTIVE, EXITED, JobSpec, Launcher, RunState
from dstrain.service.options import CONTAINER_DATA, LABEL_ATTEMPT, LABEL_JOB, LABEL_TENANT, Options, parse_size

log = logging.getLogger("dstrain.service")

RUNTIMES = ("docker", "native")
JOB_SCRIPT = Path(__file__).with_name("slurm_job.sh")
#: Slurm's job states while a job waits or runs; any other is an end.
_LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
         "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
#: Why Slurm ended a run, as the job's cause says it.
_ENDED_BY = {"TIMEOUT": "its time limit in Slurm", "CANCELLED": "cancelled in Slurm (scancel)",
             "NODE_FAIL": "its Slurm node failed", "OUT_OF_MEMORY": "the memory limit (out of memory)",
             "PREEMPTED": "preempted by Slurm", "BOOT_FAIL": "its Slurm node did not boot",
             "DEADLINE": "its deadline in Slurm"}
FORGOTTEN = "Slurm no longer knows its job, and the job script left no exit status"
_COMMENT = re.compile(r"^dstrain job=(\S+) attempt=(\d+) tenant=(\S+) service=(\S+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SlurmOptions:
    """What the host sets for running jobs on its cluster (the service's own options are in Options)."""

    #: The service's records directory: shared by the service and every node, writable by neither tenants
    #: nor their jobs.
    records: Path
    runtime: str = "docker"
    #: GPUs per job (--gres=gpu:N); 0 for CPU jobs.
    gpus: int = 1
    cpus: int = 1
    #: Slurm's --time (minutes, or [D-]HH:MM:SS); None: the partition's default.
    time_limit: Optional[str] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    extra_args: Tuple[str, ...] = ()
    #: native: the nodes' dstrain, and their tool settings (TRAINER_PYTHON, DSTRAIN_LM__KENLM_BIN, ...).
    dstrain: str = "dstrain"
    node_env: Dict[str, str] = field(default_factory=dict)
    #: docker: seconds from Slurm's SIGTERM to killing the container; keep it below the cluster's KillWait.
    kill_after: int = 20
    poll_seconds: float = 2.0

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"--slurm-runtime {self.runtime!r}: say one of {', '.join(RUNTIMES)}")
        bad = [name for name in self.node_env if not _VARIABLE.match(name)]
        if bad:
            raise ValueError(f"not an environment variable's name: {bad[0]!r}")


@dataclass(frozen=True)
class SlurmRun(RunState):
    """A run as Slurm and its records know it: why it waits, where it ran, its allocation's times."""

    slurm_job: str = ""
    #: Slurm's job state (PENDING, RUNNING, ...); empty once Slurm has forgotten the job.
    state: str = ""
    #: Why a pending job waits (Resources, Priority, ...).
    reason: str = ""
    node: str = ""
    #: CUDA_VISIBLE_DEVICES as Slurm set it on the node.
    gpus: str = ""
    started: Optional[float] = None
    ended: Optional[float] = None
    stop_signal: str = ""

    @property
    def wall_seconds(self) -> Optional[float]:
        return None if self.started is None or self.ended is None else self.ended - self.started

    @property
    def gpu_seconds(self) -> Optional[float]:
        wall = self.wall_seconds
        return None if wall is None else wall * len([gpu for gpu in self.gpus.split(",") if gpu])


def _exit_code(raw: Optional[int]) -> Optional[int]:
    """squeue's exit_code is the wait status: a signal as 128+N, as a shell says it."""
    if raw is None:
        return None
    return 128 + (raw & 0x7F) if raw & 0x7F else raw >> 8


class SlurmLauncher(Launcher):
    def __init__(self, options: Options, slurm: SlurmOptions):
        if not _NAME.match(options.instance):
            raise ValueError(f"--instance {options.instance!r}: letters, digits, '.', '_' and '-' only")
        self.options = options
        self.slurm = slurm
        self.dir = Path(os.path.abspath(str(slurm.records))) / options.instance
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._script = JOB_SCRIPT.read_text(encoding="utf-8")
        # A run submitted between a squeue and the reading of records would look forgotten: one at a time.
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # -- Slurm's commands ----------------------------------------------------------------------------------

    def _command(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kwargs)

    def _squeue(self) -> Dict[str, dict]:
        """This instance's jobs that Slurm knows, by name.  squeue --json ignores every filter (22.05)."""
        proc = self._command("squeue", "--json")
        if proc.returncode != 0:
            raise RuntimeError(f"squeue: {proc.stderr.strip()}")
        found = {}
        for job in json.loads(proc.stdout).get("jobs", []):
            match = _COMMENT.match(job.get("comment") or "")
            if match and match.group(4) == self.options.instance:
                found[job["name"]] = job
        return found

    def available(self) -> bool:
        try:
            return self._command("scontrol", "ping").returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    # -- starting --------------------------------------------------------------------------------------

    def _handle(self, spec: JobSpec) -> str:
        return f"dstrain-{self.options.instance}-{spec.job}-{spec.attempt}"

    def _payload(self, spec: JobSpec, handle: str) -> List[str]:
        options = self.options
        if self.slurm.runtime == "native":
            # The job's argv names files as the container sees them; on the node they are in the tenant's directory.
            prefix = CONTAINER_DATA + "/"
            return [self.slurm.dstrain] + [str(spec.data_dir) + "/" + arg[len(prefix):] if arg.startswith(prefix)
                                           else arg for arg in spec.argv]
        # The same container as the Docker launcher's (docker_launcher.py): the tenant's directory and nothing
        # else, its uid, its limits, no capabilities, an init that passes SIGTERM on to dstrain.
        docker = ["docker", "run", "--rm", "--name", handle, "--init", "--user", options.job_user,
                  "--volume", f"{spec.data_dir}:{CONTAINER_DATA}", "--pids-limit", str(options.pids),
                  "--shm-size", str(parse_size(options.shm_size)), "--network", options.network,
                  "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        labels = {**options.labels, LABEL_JOB: spec.job, LABEL_TENANT: spec.tenant, LABEL_ATTEMPT: str(spec.attempt)}
        docker += [item for key, value in labels.items() for item in ("--label", f"{key}={value}")]
        if options.memory:
            docker += ["--memory", str(parse_size(options.memory))]
        # dockerd makes the container outside the job's cgroup: it gets the allocation's CPUs as its own limit.
        docker += ["--cpus", str(options.cpus or self.slurm.cpus)]
        return docker + [options.image, *spec.argv]

    def start(self, spec: JobSpec) -> str:
        handle = self._handle(spec)
        payload = self._payload(spec, handle)
        passed = {**(self.slurm.node_env if self.slurm.runtime == "native" else {}), **spec.environment}
        if not (_NAME.match(spec.job) and _NAME.match(spec.tenant)) or any("\n" in part for part in payload) \
                or any(not _VARIABLE.match(name) or "\0" in value for name, value in passed.items()):
            raise ValueError(f"job {spec.job!r}: not a plain job or tenant id, a newline in its command, or not a "
                             "variable's name in its environment")
        # sbatch passes its whole environment to the job: give it this, and nothing else of the service's.
        env = {name: value for name, value in os.environ.items()
               if name in ("PATH", "SLURM_CONF") or name.startswith("SBATCH_")}
        env.update(passed)
        env.update(DSJOB_RECORDS=str(self.dir), DSJOB_HANDLE=handle, DSJOB_RUNTIME=self.slurm.runtime,
                   DSJOB_JOB=spec.job, DSJOB_ATTEMPT=str(spec.attempt),
                   DSJOB_COMMAND="\n".join(payload), DSJOB_PASS=" ".join(passed), DSJOB_DATA=str(spec.data_dir),
                   DSJOB_USER=self.options.job_user, DSJOB_CONTAINER=handle, DSJOB_GPUS=str(self.slurm.gpus),
                   DSJOB_KILL_AFTER=str(self.slurm.kill_after))
        slurm = self.slurm
        args = ["sbatch", "--parsable", "--export=ALL", "--job-name", handle,
                "--comment", f"dstrain job={spec.job} attempt={spec.attempt} tenant={spec.tenant} "
                             f"service={self.options.instance}",
                "--output", str(self.dir / f"{handle}.out"), "--chdir", str(self.dir),
                "--cpus-per-task", str(slurm.cpus)]
        if slurm.gpus:
            args.append(f"--gres=gpu:{slurm.gpus}")
        if self.options.memory:
            args.append(f"--mem={parse_size(self.options.memory) // 2 ** 20}M")
        for flag, value in (("--time", slurm.time_limit), ("--partition", slurm.partition),
                            ("--account", slurm.account), ("--qos", slurm.qos)):
            if value:
                args.append(f"{flag}={value}")
        args += list(slurm.extra_args)
        with self._lock:
            proc = self._command(*args, input=self._script, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"sbatch: {proc.stderr.strip()}")
            slurm_job = proc.stdout.strip().split(";")[0]
            self._write(handle, "submitted", {"job": spec.job, "attempt": spec.attempt, "tenant": spec.tenant,
                                              "slurm_job": slurm_job})
        log.info("job %s: Slurm job %s (%s)", spec.job, slurm_job, shlex.join(args[:6]))
        return handle

    def resume_created(self, handle: str) -> None:
        """Nothing to do: sbatch queues a run whole, so no Slurm run is ever created but not started."""

    # -- records -------------------------------------------------------------------------------------------

    def _write(self, handle: str, suffix: str, record: dict) -> None:
        tmp = self.dir / f".{handle}.{suffix}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.dir / f"{handle}.{suffix}")

    def _read(self, handle: str, suffix: str) -> Optional[dict]:
        try:
            return json.loads((self.dir / f"{handle}.{suffix}").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("%s.%s in %s is not a record; ignored", handle, suffix, self.dir)
            return None

    # -- finding runs ------------------------------------------------------------------------------------

    def runs(self) -> List[RunState]:
        with self._lock:
            known = self._squeue()
            handles = {name.rsplit(".", 1)[0] for name in os.listdir(self.dir)
                       if name.endswith((".submitted", ".started", ".exit")) and not name.startswith(".")}
            return [run for run in (self._run(handle, known.get(handle)) for handle in sorted(handles | set(known)))
                    if run is not None]

    def _run(self, handle: str, job: Optional[dict]) -> Optional[SlurmRun]:
        submitted, started, ended = (self._read(handle, suffix) for suffix in ("submitted", "started", "exit"))
        if job is not None:
            match = _COMMENT.match(job["comment"])
            name, attempt, slurm_job = match.group(1), int(match.group(2)), str(job["job_id"])
        else:
            # Any record names its run: the job script's too, should the service have stopped before it wrote
            # that the run was submitted.
            known = submitted or ended or started
            if known is None:
                return None  # Slurm forgot it, and its records were removed
            name, attempt, slurm_job = known["job"], int(known["attempt"]), str(known["slurm_job"])
        state = job["job_state"] if job else ""
        record = ended or started or {}
        # The job script's own clock first; else Slurm's allocation, while Slurm knows the job and gave it a node
        # (a pending job's start_time is Slurm's guess, a running one's end_time its time limit, and one
        # cancelled while pending has both at the cancel).
        allocated = job if job and state != "PENDING" and job.get("nodes") else {}
        usage = dict(node=record.get("node") or allocated.get("nodes", ""), gpus=record.get("gpus", ""),
                     started=record.get("started") or allocated.get("start_time") or None,
                     ended=record.get("ended") or (allocated.get("end_time") if state not in _LIVE else None))
        if job is not None and state in _LIVE:
            # Queued or running; COMPLETING too, until Slurm says how it ended.
            return SlurmRun(name, attempt, handle, ACTIVE, slurm_job=slurm_job, state=state,
                            reason=job.get("state_reason", "") if state == "PENDING" else "",
                            stop_signal=record.get("stop_signal", ""), **usage)
        if ended is not None:
            code = int(ended["exit_code"])
        else:
            code = _exit_code(job.get("exit_code")) if job else None
        because = _ENDED_BY.get(state)
        if because is None and ended is None:
            reason = job.get("state_reason", "None") if job else ""
            because = FORGOTTEN if job is None else (f"Slurm ended its job ({state}"
                                                     + (f", {reason}" if reason != "None" else "")
                                                     + ") before the job script recorded an exit status")
        if because is None and ended is not None and ended.get("stop_signal") == "TERM":
            because = "stopped by Slurm (SIGTERM: scancel, or its time limit)"
        return SlurmRun(name, attempt, handle, EXITED, exit_code=code, killed_because=because, slurm_job=slurm_job,
                        state=state, stop_signal=(ended or {}).get("stop_signal", ""), **usage)

    def _slurm_job(self, handle: str) -> Optional[str]:
        submitted = self._read(handle, "submitted")
        if submitted is not None:
            return submitted["slurm_job"]
        job = self._squeue().get(handle)
        return str(job["job_id"]) if job else None

    # -- stopping and forgetting -------------------------------------------------------------------------

    def _live(self, handle: str) -> Optional[str]:
        job = self._squeue().get(handle)
        return job["job_state"] if job and job["job_state"] in _LIVE else None

    def stop(self, handle: str, grace_seconds: int) -> None:
        slurm_job = self._slurm_job(handle)
        if slurm_job is None:
            return
        state = self._live(handle)
        if state == "RUNNING":
            # To the job script alone, which asks the payload to stop: dstrain stops DeepSpeech, keeps what
            # it finished, and records the stage as interrupted.
            self._command("scancel", "--batch", "--signal=USR1", slurm_job)
            deadline = time.monotonic() + grace_seconds
            while time.monotonic() < deadline and self._read(handle, "exit") is None and self._live(handle):
                time.sleep(1)
        if self._live(handle) is not None:
            self._command("scancel", slurm_job)

    def console_tail(self, handle: str, lines: int) -> str:
        try:
            with open(self.dir / f"{handle}.out", "rb") as out:
                out.seek(max(0, os.fstat(out.fileno()).st_size - 64 * 1024))
                return "\n".join(out.read().decode("utf-8", "replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def remove(self, handle: str) -> None:
        """Forget the run's records.  Slurm's output file stays with the host's logs: it names no secret."""
        for suffix in ("submitted", "started", "exit"):
            try:
                os.unlink(self.dir / f"{handle}.{suffix}")
            except FileNotFoundError:
                pass

    # -- watching ----------------------------------------------------------------------------------------

    def watch(self, on_change: Callable[[], None]) -> None:
        """No event stream without slurmrestd: a new record (a run started or ended) calls ``on_change``."""
        seen = set()
        while not self._closed.wait(min(1.0, self.slurm.poll_seconds)):
            try:
                now = {name for name in os.listdir(self.dir) if name.endswith((".started", ".exit"))}
            except OSError as exc:  # the shared storage away for a moment: the scheduler's polls go on
                log.warning("records in %s: %s", self.dir, exc)
                continue
            if now - seen:
                on_change()
            seen = now

    def close(self) -> None:
        self._closed.set()
