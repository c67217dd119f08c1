"""service/slurm_launcher.py on the real two-node cluster, called directly (tests/test_service_slurm.py runs it
through the service's HTTP API): the native runtime runs the nodes' own dstrain as the tenant's uid, the
docker runtime a container on the node's engine; stops, outside cancels and runs nobody watched."""
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dstrain.service.container import LABEL_JOB, ContainerOptions
from dstrain.service.launcher import ACTIVE, EXITED, WAITING, RunSpec, run_name
from dstrain.service.options import Options
from dstrain.service.slurm_launcher import FORGOTTEN, SlurmLauncher
from dstrain.service.slurm_options import SlurmOptions
from tests.conftest import RELEASE, need_real
from tests.docker_images import DEBIAN_IMAGE, docker, engine_running, ensure_debian_base, image_exists, own
from tests.slurm_cluster import NODES, SLURM_CONF, TENANT_UID, wait_for

pytestmark = pytest.mark.slurm
TENANT = "t-0123456789abcdef"
ARCHIVE = f"/{RELEASE}-fr.tar.gz"
SECRET = "mdc-key-that-must-not-leak"
#: Writes its uid (and whether it got the secret) to /data/ran, then runs until SIGTERM, noted in /data/stopped.
STOPPER_IMAGE = own("dstrain-test/slurm-stopper:latest")
STOPPER = ("id -u > /data/ran; [ -n \"$MDC_API_KEY\" ] && echo key >> /data/ran; "
           "trap 'echo stopped > /data/stopped; exit 143' TERM; while :; do sleep 0.2; done")


@pytest.fixture()
def tenant_dir(shared_dir, cv_archive) -> Path:
    """A tenant's directory as the service makes it: its uid's, 0700, with a Common Voice release uploaded."""
    data = shared_dir / "root" / "tenants" / TENANT
    (data / "sources").mkdir(parents=True)
    (data / "jobs").mkdir()
    shutil.copy(cv_archive, data / "sources" / cv_archive.name)
    data.chmod(0o700)
    return data


def settings(data: Path, job: str, url: str = "") -> None:
    """The job's dstrain.toml, as the service writes it, then the tenant's directory given to its uid."""
    (data / "jobs" / job).mkdir()
    (data / "jobs" / job / "dstrain.toml").write_text(
        f'workers = 1\n[dataset.common_voice]\nrelease = "{RELEASE}"\nmax_duration = 5.0\n'
        + (f'url = "{url}"\n' if url else ""))
    subprocess.run(["chown", "-R", f"{TENANT_UID}:{TENANT_UID}", str(data)], check=True)


def run_argv(job: str, to: str):
    """dstrain run as the scheduler gives it to a launcher (dispatch.job_argv): paths relative to the data root."""
    return ("run", "--language", "fr", "--run", job, "--config", f"jobs/{job}/dstrain.toml",
            "--datasets", "common_voice", "--to", to)


@pytest.fixture()
def make_launcher(slurm, shared_dir, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(SLURM_CONF))
    made = []

    def make(runtime: str, image: str = "", **slurm_options) -> SlurmLauncher:
        options = Options(root=shared_dir / "root", instance=own("slurmtest"), stop_grace=30)
        slurm_options.setdefault("kill_after", 5)
        made.append(SlurmLauncher(options, SlurmOptions(
            records=shared_dir / "records", runtime=runtime, poll_seconds=0.5, cpus=1, memory=1 << 30,
            container=ContainerOptions(image=image, pids=256, network="host"), **slurm_options)))
        return made[-1]

    yield make
    for launcher in made:
        launcher.close()


def spec(job: str, argv, data: Path, attempt: int = 1) -> RunSpec:
    return RunSpec(job, TENANT, attempt, run_name(own("slurmtest"), job, attempt), tuple(argv), data,
                   f"{TENANT_UID}:{TENANT_UID}", environment={"MDC_API_KEY": SECRET})


def start(launcher: SlurmLauncher, run: RunSpec) -> str:
    launcher.start(run)
    return run.handle


def run_of(launcher, handle: str, phase: str, timeout: float = 180):
    return wait_for(lambda: next((run for run in launcher.runs() if run.handle == handle and run.phase == phase),
                                 None), timeout, f"run {handle} {phase}")


def test_a_native_run_is_the_nodes_dstrain_as_the_tenants_uid_to_a_stage(make_launcher, node_dstrain, tenant_dir,
                                                                         slurm):
    launcher = make_launcher("native", dstrain=node_dstrain)
    settings(tenant_dir, "job-native")
    woken = threading.Event()
    threading.Thread(target=launcher.watch, args=(woken.set,), daemon=True).start()
    handle = start(launcher, spec("job-native", run_argv("job-native", "import"), tenant_dir))
    assert handle == f"dstrain-{own('slurmtest')}-job-native-1"

    run = run_of(launcher, handle, EXITED, 300)
    assert run.exit_code == 0 and run.killed_because is None, launcher.console_tail(handle, 40)
    assert woken.is_set()  # a new record (started, exit) woke the watcher
    # The GPU Slurm gave, the node, and the run's wall time from the job script's own clock, its CPU time.
    assert run.node in NODES and (run.devices, run.gpus) == ("0", 1) and run.job == "job-native" and run.attempt == 1
    assert 0 < run.wall_seconds < 300 and 0 < run.cpu_seconds == launcher.usage(handle).cpu_seconds
    record = tenant_dir / "runs" / "job-native" / "state" / "import.json"
    assert record.exists() and record.stat().st_uid == TENANT_UID
    # A sample database: clips.format's default.
    assert (tenant_dir / "imported" / "fr" / "common_voice" / "train.sdb").stat().st_uid == TENANT_UID
    assert "import" in launcher.console_tail(handle, 40)
    # The secret went to the job's environment only: not to Slurm's view of the job, nor to any record.
    assert SECRET not in slurm.run("squeue", "--json").stdout
    assert not [p for p in launcher.dir.iterdir() if SECRET in p.read_text(errors="replace")]


def test_a_queued_run_shows_slurms_reason_and_stop_cancels_it_unstarted(make_launcher, node_dstrain, tenant_dir):
    # --hold keeps it queued for as long as the test needs (Slurm's own reason: JobHeldUser).
    launcher = make_launcher("native", dstrain=node_dstrain, extra_args=("--hold",))
    handle = start(launcher, spec("job-held", ("--version",), tenant_dir))
    run = run_of(launcher, handle, WAITING, 30)
    assert (run.state, run.waiting, run.node, run.started) == ("PENDING", "JobHeldUser", "", None)
    launcher.stop(handle, grace_seconds=30)
    run = run_of(launcher, handle, EXITED, 30)
    assert (run.state, run.started) == ("CANCELLED", None) and run.killed_because.startswith("Slurm cancelled")
    assert not (launcher.dir / f"{handle}.started").exists()


def test_stop_asks_dstrain_to_stop_and_its_stage_records_the_interruption(make_launcher, node_dstrain, tenant_dir,
                                                                          served):
    server, _ = served
    server.held[ARCHIVE] = threading.Event()
    server.arrived[ARCHIVE] = threading.Event()
    launcher = make_launcher("native", dstrain=node_dstrain)
    settings(tenant_dir, "job-stop", url=server.url + ARCHIVE)
    (tenant_dir / "sources" / ARCHIVE.lstrip("/")).unlink()
    try:
        handle = start(launcher, spec("job-stop", run_argv("job-stop", "download"), tenant_dir))
        assert server.arrived[ARCHIVE].wait(120), launcher.console_tail(handle, 40)
        asked = time.monotonic()
        launcher.stop(handle, grace_seconds=60)
        took = time.monotonic() - asked
    finally:
        server.held[ARCHIVE].set()
    run = run_of(launcher, handle, EXITED, 30)
    # The job script passed the stop on to dstrain, which ended its stage cleanly, well within the grace.
    assert run.stop_signal == "USR1" and run.killed_because is None and run.exit_code != 0 and took < 30
    stage_log = tenant_dir / "runs" / "job-stop" / "logs" / "download.log"
    assert stage_log.read_text().strip().splitlines()[-1].endswith("failed: interrupted")
    assert stage_log.stat().st_uid == TENANT_UID


def test_a_run_cancelled_in_slurm_from_outside_ends_with_slurms_reason(make_launcher, node_dstrain, tenant_dir,
                                                                       served, slurm):
    server, _ = served
    server.held[ARCHIVE] = threading.Event()
    server.arrived[ARCHIVE] = threading.Event()
    launcher = make_launcher("native", dstrain=node_dstrain)
    settings(tenant_dir, "job-outside", url=server.url + ARCHIVE)
    (tenant_dir / "sources" / ARCHIVE.lstrip("/")).unlink()
    try:
        handle = start(launcher, spec("job-outside", run_argv("job-outside", "download"), tenant_dir))
        assert server.arrived[ARCHIVE].wait(120)
        slurm_job = next(run.slurm_job for run in launcher.runs() if run.handle == handle)
        slurm.run("scancel", slurm_job)
        run = run_of(launcher, handle, EXITED, slurm.kill_wait + 30)
    finally:
        server.held[ARCHIVE].set()
    assert (run.state, run.stop_signal) == ("CANCELLED", "TERM") and run.killed_because.startswith("Slurm cancelled")
    assert (tenant_dir / "runs" / "job-outside" / "logs" / "download.log").read_text().rstrip().endswith(
        "failed: interrupted")


def test_a_run_past_slurms_time_limit_ends_with_slurms_reason(make_launcher, node_dstrain, tenant_dir, served,
                                                              slurm):
    """--slurm-time-limit, the host's cap: one minute, the least Slurm takes; the download never ends."""
    server, _ = served
    server.held[ARCHIVE] = threading.Event()
    server.arrived[ARCHIVE] = threading.Event()
    launcher = make_launcher("native", dstrain=node_dstrain, time_limit=60.0)
    settings(tenant_dir, "job-timeout", url=server.url + ARCHIVE)
    (tenant_dir / "sources" / ARCHIVE.lstrip("/")).unlink()
    try:
        handle = start(launcher, spec("job-timeout", run_argv("job-timeout", "download"), tenant_dir))
        assert server.arrived[ARCHIVE].wait(120)
        slurm_job = next(run.slurm_job for run in launcher.runs() if run.handle == handle)
        assert slurm.job(slurm_job)["time_limit"] == 1  # minutes
        # Slurm looks at time limits every 30 s or so, then waits KillWait before its SIGKILL.
        run = run_of(launcher, handle, EXITED, 60 + 45 + slurm.kill_wait + 30)
    finally:
        server.held[ARCHIVE].set()
    assert (run.state, run.stop_signal) == ("TIMEOUT", "TERM"), run
    assert run.killed_because == "Slurm stopped its job at its time limit (TIMEOUT)"
    # dstrain had the SIGTERM: its stage ended as interrupted, the tenant's to read.
    assert (tenant_dir / "runs" / "job-timeout" / "logs" / "download.log").read_text().rstrip().endswith(
        "failed: interrupted")


def test_runs_that_ended_while_nobody_watched_are_known_from_their_records(make_launcher, node_dstrain, tenant_dir,
                                                                          served, slurm):
    server, _ = served
    server.held[ARCHIVE] = threading.Event()
    server.arrived[ARCHIVE] = threading.Event()
    first = make_launcher("native", dstrain=node_dstrain)
    settings(tenant_dir, "job-killed", url=server.url + ARCHIVE)
    (tenant_dir / "sources" / ARCHIVE.lstrip("/")).unlink()
    try:
        done = start(first, spec("job-done", ("--version",), tenant_dir))
        killed = start(first, spec("job-killed", run_argv("job-killed", "download"), tenant_dir))
        assert server.arrived[ARCHIVE].wait(120)
        ids = {run.handle: run.slurm_job for run in first.runs()}
        # The job script and dstrain killed at once, as by a crash of the node: no exit record can be written.
        # (scancel cannot do that: even --signal=KILL cancels with SIGTERM first.)
        subprocess.run(["kill", "-9", *map(str, slurm.batch_pids(ids[killed]))], check=True)
        first.close()  # the service is down from here
        # ... and had stopped, for the first run, between sbatch and its own record of it: the job script's
        # records are enough.
        (first.dir / f"{done}.submitted").unlink()
        wait_for(lambda: not any(slurm.job(ids[h]) for h in (done, killed)), slurm.min_job_age + 70,
                 "Slurm forgot both jobs", every=1)
    finally:
        server.held[ARCHIVE].set()

    again = make_launcher("native", dstrain=node_dstrain)  # the service started again
    runs = {run.handle: run for run in again.runs()}
    ok, lost = runs[done], runs[killed]
    assert (ok.phase, ok.exit_code, ok.state, ok.killed_because) == (EXITED, 0, "", None)
    assert ok.node in NODES and ok.wall_seconds > 0
    assert (lost.phase, lost.exit_code, lost.killed_because) == (EXITED, None, FORGOTTEN)
    assert lost.started is not None and lost.ended is None
    again.remove(done)
    assert done not in {run.handle for run in again.runs()}


def ensure_stopper_image() -> str:
    ensure_debian_base()
    if not image_exists(STOPPER_IMAGE):
        with tempfile.TemporaryDirectory(prefix="stopper-") as context:
            Path(context, "Dockerfile").write_text(
                f"FROM {DEBIAN_IMAGE}\nENTRYPOINT {json.dumps(['/bin/sh', '-c', STOPPER, 'stopper'])}\n")
            docker("build", "--network", "host", "-t", STOPPER_IMAGE, context)
    return STOPPER_IMAGE


@pytest.mark.docker
def test_a_docker_run_is_the_image_with_the_tenants_uid_mounts_and_limits_and_stops(make_launcher, tenant_dir):
    need_real(engine_running(), "no Docker engine answers")
    # No NVIDIA runtime on this engine: a CPU job (the next test asks for a GPU).
    launcher = make_launcher("docker", image=ensure_stopper_image(), gpus=0)
    subprocess.run(["chown", "-R", f"{TENANT_UID}:{TENANT_UID}", str(tenant_dir)], check=True)
    handle = start(launcher, spec("job-docker", run_argv("job-docker", "train"), tenant_dir))
    try:
        wait_for(lambda: (tenant_dir / "ran").exists(), 120, "the container started", every=1)
        run = run_of(launcher, handle, ACTIVE)
        container = json.loads(docker("inspect", handle).stdout)[0]
        host = container["HostConfig"]
        assert container["Config"]["User"] == f"{TENANT_UID}:{TENANT_UID}"
        assert [(m["Source"], m["Destination"]) for m in container["Mounts"]] == [(str(tenant_dir), "/data")]
        assert (host["Memory"], host["PidsLimit"], host["CapDrop"], host["Init"]) == (2 ** 30, 256, ["ALL"], True)
        # Its own CPU limit, the allocation's: dockerd puts the container outside the job's cgroup.
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["NanoCpus"] == 10 ** 9
        # The Docker launcher's walls (container.py): a read-only root, /tmp in memory, /data its working directory.
        assert host["ReadonlyRootfs"] is True and host["Tmpfs"]["/tmp"].endswith(f"size={2 << 30}")
        assert container["Config"]["WorkingDir"] == "/data"
        env = dict(item.split("=", 1) for item in container["Config"]["Env"])
        assert env["HOME"] == "/tmp" and env["MDC_API_KEY"] == SECRET
        assert SECRET not in " ".join(container["Args"])
        labels = container["Config"]["Labels"]
        assert labels[LABEL_JOB] == "job-docker" and labels["dstrain.slurm_job"] == run.slurm_job
        assert container["Args"][-len(run_argv("job-docker", "train")):] == list(run_argv("job-docker", "train"))
        assert (tenant_dir / "ran").read_text().split() == [str(TENANT_UID), "key"]

        launcher.stop(handle, grace_seconds=30)
        run = run_of(launcher, handle, EXITED, 30)
        assert (run.exit_code, run.stop_signal, run.killed_because) == (143, "USR1", None)
        assert (tenant_dir / "stopped").read_text() == "stopped\n"
        assert docker("ps", "-aq", "--filter", f"name=^{handle}$").stdout.strip() == ""
    finally:
        docker("rm", "-f", handle, check=False)


@pytest.mark.docker
def test_a_docker_run_asks_the_engine_for_the_gpus_slurm_gave(make_launcher, tenant_dir):
    need_real(engine_running(), "no Docker engine answers")
    launcher = make_launcher("docker", image=ensure_stopper_image(), gpus=1)
    handle = start(launcher, spec("job-gpu", run_argv("job-gpu", "train"), tenant_dir))
    run = run_of(launcher, handle, EXITED, 120)
    # This engine has no NVIDIA runtime: the device request for Slurm's GPU reaches it and is refused.
    assert run.exit_code == 125 and (run.devices, run.gpus) == ("0", 1)
    assert "could not select device driver" in launcher.console_tail(handle, 20)


def test_a_node_that_fails_under_a_run_is_the_infrastructures_doing(make_launcher, tenant_dir, slurm):
    """A node set down under a run, as slurmctld does to a node that stops answering: NODE_FAIL, which the
    scheduler takes for the infrastructure's (the job is queued again to resume), not the job's failure."""
    launcher = make_launcher("native", dstrain="/bin/sleep")
    subprocess.run(["chown", "-R", f"{TENANT_UID}:{TENANT_UID}", str(tenant_dir)], check=True)
    handle = start(launcher, spec("job-node", ("600",), tenant_dir))
    run = run_of(launcher, handle, ACTIVE, 60)
    wait_for(lambda: (launcher.dir / f"{handle}.started").exists(), 60, "the job script started")
    try:
        slurm.run("scontrol", "update", f"nodename={run.node}", "state=down", "reason=dstrain-test")
        run = run_of(launcher, handle, EXITED, 60)
    finally:
        slurm.run("scontrol", "update", f"nodename={run.node}", "state=resume", check=False)
    assert (run.state, run.infrastructure, run.killed_because) == ("NODE_FAIL", "its Slurm node failed (NODE_FAIL)",
                                                                   None)
    wait_for(lambda: "idle" in slurm.run("sinfo", "-h", "-n", run.node, "-o", "%t").stdout, 60, "the node back")
