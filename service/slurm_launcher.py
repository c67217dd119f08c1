"""Slurm as a launcher: one batch job per run of a dstrain job, on a cluster's nodes, through its commands.

The service decides what may run; Slurm decides where, and which GPUs.  Each run is one ``sbatch`` of
slurm_job.sh, named by the run's handle (``dstrain-<instance>-<job>-<attempt>``), its comment carrying the job,
the attempt, the tenant's opaque id and the service's instance.  The script runs the run's payload on the
node (``docker run`` of the training image, or the node's own ``dstrain`` as the tenant's uid) and writes
its records into this service's records directory, on storage the service and every node see:

    <records>/<instance>/<handle>.submitted   written here once sbatch has accepted the run
    <records>/<instance>/<handle>.started     by the job script: node, GPUs, start time
    <records>/<instance>/<handle>.exit        by the job script: exit status, end time, CPU time
    <records>/<instance>/<handle>.out         Slurm's output file (the job script's and the payload's console)

Without accounting, Slurm forgets a job MinJobAge seconds after its end; the records keep what the service
needs after that.  A run is found again after a restart from ``squeue --json`` (its comment) and from its
records, so the launcher keeps no state of its own.  Runs are submitted with ``--no-requeue``: a run Slurm
ends for the infrastructure's sake (its node failed, preemption) is queued again by the service, as a new
run that resumes from the checkpoint, counted by --max-requeues.
"""
import json
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from dstrain.service.container import container_of
from dstrain.service.launcher import ACTIVE, EXITED, WAITING, Launcher, RunSpec, RunState, Usage
from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.slurm_options import SlurmOptions

log = logging.getLogger("dstrain.service")

JOB_SCRIPT = Path(__file__).with_name("slurm_job.sh")
#: Slurm's job states while a job waits; then while it runs (COMPLETING too, until Slurm says how it ended).
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
_LIVE = _WAITING | {"CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT",
                    "STOPPED"}
#: Why Slurm ended a run, as the job's cause says it: the job's failure.
_ENDED_BY = {"TIMEOUT": "Slurm stopped its job at its time limit (TIMEOUT)",
             "CANCELLED": "Slurm cancelled its job: scancel, by someone other than the service (CANCELLED)",
             "OUT_OF_MEMORY": "the memory limit (out of memory, in Slurm)",
             "DEADLINE": "Slurm stopped its job at its deadline (DEADLINE)"}
#: ... and the infrastructure's ends: the service queues the job again.
_INFRASTRUCTURE = {"NODE_FAIL": "its Slurm node failed (NODE_FAIL)", "PREEMPTED": "Slurm preempted it (PREEMPTED)",
                   "BOOT_FAIL": "its Slurm node did not boot (BOOT_FAIL)"}
FORGOTTEN = ("Slurm no longer knows its job, and the job script left no exit status (the node or the script "
             "was killed)")
_COMMENT = re.compile(r"^dstrain job=(\S+) attempt=(\d+) tenant=(\S+) service=(\S+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CPU = re.compile(r"(\d+)m([\d.]+)s")


@dataclass(frozen=True)
class SlurmRun(RunState):
    """A run as Slurm and its records know it."""

    slurm_job: str = ""
    #: Slurm's job state (PENDING, RUNNING, ...); empty once Slurm has forgotten the job.
    state: str = ""
    #: CUDA_VISIBLE_DEVICES as Slurm set it on the node.
    devices: str = ""
    #: The signal the job script passed on to the payload: USR1 (the service's stop) or TERM (Slurm's).
    stop_signal: str = ""
    #: The payload's CPU time (native runtime), by the job script's own count.
    cpu_seconds: Optional[float] = None

    @property
    def wall_seconds(self) -> Optional[float]:
        return None if self.started is None or self.ended is None else self.ended - self.started


def _exit_code(raw: Optional[int]) -> Optional[int]:
    """squeue's exit_code is the wait status: a signal as 128+N, as a shell says it."""
    if raw is None:
        return None
    return 128 + (raw & 0x7F) if raw & 0x7F else raw >> 8


def _cpu_seconds(times: str) -> Optional[float]:
    """bash's `times` line of the children: '1m2.345s 0m0.500s' (user, system) -> 62.845."""
    found = _CPU.findall(times or "")
    return sum(int(minutes) * 60 + float(seconds) for minutes, seconds in found) if found else None


class SlurmLauncher(Launcher):
    slots = None
    run_noun = "Slurm job"
    engine_noun = "Slurm cluster"

    def __init__(self, options: Options, slurm: SlurmOptions):
        self.options = options
        self.slurm = slurm
        records = slurm.records or Layout(options.root).launcher_dir("slurm")
        records = Path(os.path.abspath(str(records)))
        records.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir = records / options.instance
        self.dir.mkdir(exist_ok=True, mode=0o700)
        for directory in (records, self.dir):  # the service's alone, whatever the umask made them
            os.chmod(str(directory), 0o700)
        self._script = JOB_SCRIPT.read_text(encoding="utf-8")
        # A run submitted between a squeue and the reading of records would look forgotten: one at a time.
        self._lock = threading.Lock()
        self._closed = threading.Event()

    # -- Slurm's commands ----------------------------------------------------------------------------------

    def command(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kwargs)

    def all_jobs(self) -> List[dict]:
        """Every job Slurm knows, anyone's, ended ones too until MinJobAge: squeue --json ignores every filter
        (22.05)."""
        proc = self.command("squeue", "--json")
        if proc.returncode != 0:
            raise RuntimeError(f"squeue: {proc.stderr.strip()}")
        return json.loads(proc.stdout).get("jobs", [])

    def _squeue(self) -> Dict[str, dict]:
        """This instance's jobs that Slurm knows, by name."""
        found = {}
        for job in self.all_jobs():
            match = _COMMENT.match(job.get("comment") or "")
            if match and match.group(4) == self.options.instance:
                found[job["name"]] = job
        return found

    def available(self) -> bool:
        try:
            return self.command("scontrol", "ping").returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def preflight(self, root: Path) -> None:
        from dstrain.service.slurm_check import check

        check(self, root)

    # -- starting --------------------------------------------------------------------------------------

    def _payload(self, spec: RunSpec) -> List[str]:
        if self.slurm.runtime == "native":
            return [self.slurm.dstrain, *spec.argv]
        # The Docker launcher's container (container.py), with the allocation's memory and CPUs as its limits:
        # dockerd makes it outside the job's cgroup.
        made = container_of(self.slurm.container, spec, self.options.instance, self.slurm.memory, self.slurm.cpus,
                            self.options.stop_grace)
        return ["docker", "run", *made.run_args(secrets=tuple(spec.environment)), made.image, *made.command]

    def start(self, spec: RunSpec) -> None:
        slurm = self.slurm
        payload = self._payload(spec)
        # What the job script passes on by name: with docker, the secrets alone (the rest is in docker's arguments).
        passed = {**slurm.node_env, **spec.settings, **spec.environment} if slurm.runtime == "native" else \
            dict(spec.environment)
        if not (_NAME.match(spec.job) and _NAME.match(spec.tenant)) or any("\n" in part for part in payload) \
                or any(not _VARIABLE.match(name) or "\0" in value for name, value in passed.items()):
            raise ValueError(f"job {spec.job!r}: not a plain job or tenant id, a newline in its command, or not a "
                             "variable's name in its environment")
        # sbatch passes its whole environment to the job: give it this, and nothing else of the service's.
        env = {name: value for name, value in os.environ.items()
               if name in ("PATH", "SLURM_CONF") or name.startswith("SBATCH_")}
        env.update(passed)
        env.update(DSJOB_RECORDS=str(self.dir), DSJOB_HANDLE=spec.handle, DSJOB_RUNTIME=slurm.runtime,
                   DSJOB_JOB=spec.job, DSJOB_ATTEMPT=str(spec.attempt), DSJOB_COMMAND="\n".join(payload),
                   DSJOB_PASS=" ".join(passed) if slurm.runtime == "native" else "", DSJOB_DATA=str(spec.data_dir),
                   DSJOB_USER=spec.user, DSJOB_GPUS=str(slurm.gpus), DSJOB_KILL_AFTER=str(slurm.kill_after))
        args = ["sbatch", "--parsable", "--export=ALL", "--no-requeue", "--job-name", spec.handle,
                "--comment", f"dstrain job={spec.job} attempt={spec.attempt} tenant={spec.tenant} "
                             f"service={self.options.instance}",
                "--output", str(self.dir / f"{spec.handle}.out"), "--chdir", str(self.dir),
                "--cpus-per-task", str(slurm.cpus)]
        if slurm.gpus:
            args.append(f"--gres=gpu:{slurm.gpus}")
        if slurm.memory:
            args.append(f"--mem={max(1, slurm.memory // 2 ** 20)}M")
        minutes = slurm.minutes(spec.time_left, self.options.stop_grace)
        for flag, value in (("--time", minutes), ("--partition", slurm.partition), ("--account", slurm.account),
                            ("--qos", slurm.qos)):
            if value:
                args.append(f"{flag}={value}")
        args += list(slurm.extra_args)
        with self._lock:
            proc = self.command(*args, input=self._script, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"sbatch: {proc.stderr.strip()}")
            slurm_job = proc.stdout.strip().split(";")[0]
            self._write(spec.handle, "submitted", {"job": spec.job, "attempt": spec.attempt, "tenant": spec.tenant,
                                                   "slurm_job": slurm_job})
        log.info("job %s: Slurm job %s (%s)", spec.job, slurm_job, shlex.join(args[:6]))

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
        allocated = job if job and state not in _WAITING and job.get("nodes") else {}
        ids = [gpu for gpu in str(record.get("job_gpus") or record.get("gpus") or "").split(",") if gpu]
        found = dict(node=record.get("node") or allocated.get("nodes", ""),
                     gpus=(len(ids) or int(record.get("gpus_asked", 0))) if record else
                     (self.slurm.gpus if allocated else None),
                     started=record.get("started") or allocated.get("start_time") or None,
                     ended=record.get("ended") or (allocated.get("end_time") if state not in _LIVE else None),
                     slurm_job=slurm_job, state=state, devices=record.get("gpus", ""),
                     stop_signal=record.get("stop_signal", ""), cpu_seconds=_cpu_seconds(record.get("cpu", "")))
        if job is not None and state in _WAITING:
            reason = job.get("state_reason", "")
            return SlurmRun(name, attempt, handle, WAITING, waiting="" if reason == "None" else reason, **found)
        if job is not None and state in _LIVE:
            return SlurmRun(name, attempt, handle, ACTIVE, **found)
        code = int(ended["exit_code"]) if ended is not None else (_exit_code(job.get("exit_code")) if job else None)
        because, infrastructure = _ENDED_BY.get(state), _INFRASTRUCTURE.get(state)
        if because is None and infrastructure is None and ended is None:
            reason = job.get("state_reason", "None") if job else ""
            because = FORGOTTEN if job is None else (f"Slurm ended its job ({state}"
                                                     + (f", {reason}" if reason != "None" else "")
                                                     + ") before the job script recorded an exit status")
        if because is None and infrastructure is None and record.get("stop_signal") == "TERM":
            because = "stopped by Slurm (SIGTERM: scancel by someone other than the service, or its time limit)"
        return SlurmRun(name, attempt, handle, EXITED, exit_code=code, killed_because=because,
                        infrastructure=infrastructure, **found)

    def _slurm_job(self, handle: str) -> Optional[str]:
        submitted = self._read(handle, "submitted")
        if submitted is not None:
            return submitted["slurm_job"]
        job = self._squeue().get(handle)
        return str(job["job_id"]) if job else None

    def usage(self, handle: str) -> Optional[Usage]:
        """The payload's CPU time, by the job script's count once it ended (no accounting: no peak memory)."""
        ended = self._read(handle, "exit")
        cpu = _cpu_seconds(ended.get("cpu", "")) if ended else None
        return Usage(cpu_seconds=cpu) if cpu is not None else None

    # -- stopping and forgetting -------------------------------------------------------------------------

    def _live(self, handle: str) -> Optional[str]:
        job = self._squeue().get(handle)
        return job["job_state"] if job and job["job_state"] in _LIVE else None

    def stop(self, handle: str, grace_seconds: int) -> None:
        slurm_job = self._slurm_job(handle)
        if slurm_job is None:
            return
        if self._live(handle) == "RUNNING":
            # To the job script alone, which asks the payload to stop: dstrain stops DeepSpeech, keeps what
            # it finished, and records the stage as interrupted.
            self.command("scancel", "--batch", "--signal=USR1", slurm_job)
            deadline = time.monotonic() + grace_seconds
            while time.monotonic() < deadline and self._read(handle, "exit") is None and self._live(handle):
                time.sleep(1)
        if self._live(handle) is not None:
            self.command("scancel", slurm_job)

    def console_tail(self, handle: str, lines: int) -> str:
        data = self.kept_output(handle) or b""
        return "\n".join(data[-64 * 1024:].decode("utf-8", "replace").splitlines()[-lines:])

    def kept_output(self, handle: str) -> Optional[bytes]:
        """The end of Slurm's output file (its last MiB)."""
        try:
            with open(self.dir / f"{handle}.out", "rb") as out:
                out.seek(max(0, os.fstat(out.fileno()).st_size - (1 << 20)))
                return out.read()
        except FileNotFoundError:
            return None

    def remove(self, handle: str) -> None:
        """Forget the run's records and its output file (the service keeps the output in the tenant's run)."""
        for suffix in ("submitted", "started", "exit", "out"):
            try:
                os.unlink(self.dir / f"{handle}.{suffix}")
            except FileNotFoundError:
                pass

    # -- watching ----------------------------------------------------------------------------------------

    def watch(self, on_change: Callable[[], None]) -> None:
        """No event stream without slurmrestd: a new record (a run started or ended) calls ``on_change``."""
        seen = set()
        while not self._closed.wait(self.slurm.poll_seconds):
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
