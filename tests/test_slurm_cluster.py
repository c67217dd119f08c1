"""What a real Slurm 22.05 cluster does, pinned where service/slurm_launcher.py relies on it.

The cluster is tests/slurm/cluster.sh's: two nodes (n1, n2) of one GRES GPU each, no accounting, no cgroups
(proctrack/linuxproc, task/none), MinJobAge and KillWait short.  Jobs here are tiny shell scripts; the
launcher's own tests (test_slurm_launcher.py) run dstrain.
"""
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import need_real
from tests.docker_images import DEBIAN_IMAGE, docker, engine_running, ensure_debian_base, own
from tests.slurm_cluster import NODES, TENANT_UID, signals_seen, wait_for, write_trapper

pytestmark = pytest.mark.slurm

#: A job that notes where it runs and which GPU it got, then waits until the test lets it end.
GATED = ('echo "$SLURMD_NODENAME ${{CUDA_VISIBLE_DEVICES:-}} ${{SLURM_JOB_GPUS:-}} $(date +%s.%N)" '
         '> {d}/$SLURM_JOB_ID.start; while [ ! -e {d}/$SLURM_JOB_ID.go ]; do sleep 0.2; done')


def state(slurm, job_id):
    job = slurm.job(job_id)
    return job and job["job_state"]


def test_two_gpu_jobs_run_at_once_one_per_node_and_a_third_waits_for_resources(slurm, shared_dir):
    d = shared_dir
    first, second, third = (slurm.sbatch("--gres=gpu:1", "--job-name", f"gpu{i}", "--output", f"{d}/%j.out",
                                         wrap=GATED.format(d=d)) for i in range(3))
    wait_for(lambda: all((d / f"{j}.start").exists() for j in (first, second)), 60, "the first two jobs started")
    jobs = slurm.jobs()
    assert {jobs[first]["nodes"], jobs[second]["nodes"]} == set(NODES)
    assert jobs[third]["job_state"] == "PENDING" and jobs[third]["state_reason"] == "Resources"
    assert jobs[third]["nodes"] == "" and not (d / f"{third}.start").exists()
    for job_id in (first, second):
        node, visible, job_gpus, started = (d / f"{job_id}.start").read_text().split()
        job = jobs[job_id]
        # Each job's own CUDA_VISIBLE_DEVICES: the index of the GPU Slurm gave it on its node.
        assert node == job["nodes"] and job["gres_detail"] == ["gpu:1(IDX:0)"]
        assert visible == job_gpus == "0"
        assert "GRES=gpu:1(IDX:0)" in slurm.run("scontrol", "-d", "show", "job", job_id).stdout
        # The allocation's start (squeue, whole seconds) is the job script's start.
        assert job["job_state"] == "RUNNING" and abs(job["start_time"] - float(started)) < 2
        # While it runs, end_time is when its time limit would end it (the partition's: none here).
        assert job["tres_per_node"] == "gres:gpu:1"

    (d / f"{first}.go").touch()
    wait_for(lambda: (d / f"{third}.start").exists(), 60, "the third job started once a GPU was free")
    assert slurm.job(third)["nodes"] == slurm.job(first)["nodes"]
    assert slurm.job(first)["job_state"] == "COMPLETED"
    for job_id in (second, third):
        (d / f"{job_id}.go").touch()
    wait_for(lambda: all(state(slurm, j) in ("COMPLETED", None) for j in (second, third)), 60, "all ended")


def test_sbatch_options_as_squeue_json_shows_them(slurm, shared_dir):
    d = shared_dir
    (d / "work").mkdir()
    comment = "dstrain job=job-1 attempt=3 tenant=t-1 service=ci"
    job_id = slurm.sbatch("--job-name", "opts", "--comment", comment, "--gpus=1", "--mem=300M", "--cpus-per-task=2",
                          "--time=5", "--output", f"{d}/out-%j.txt", "--chdir", f"{d}/work",
                          wrap='pwd; echo "$SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE $CUDA_VISIBLE_DEVICES"; '
                               + GATED.format(d=d))
    assert job_id.isdigit()  # --parsable: the id alone
    wait_for(lambda: (d / f"{job_id}.start").exists(), 60, "the job started")
    job = slurm.job(job_id)
    assert (job["name"], job["comment"], job["job_state"], job["state_reason"]) == ("opts", comment, "RUNNING", "None")
    assert job["nodes"] in NODES and job["batch_host"] == job["nodes"]
    # Minutes; and a running job's end_time is its start plus that limit.
    assert job["time_limit"] == 5 and job["end_time"] == job["start_time"] + 300
    assert (job["cpus"], job["memory_per_node"]) == (2, 300)
    # --gpus is per job, --gres per node (the first test's jobs); both give CUDA_VISIBLE_DEVICES.
    assert job["tres_per_job"] == "gres:gpu:1" and job["tres_per_node"] == ""
    # The output pattern as given; the file itself has the id.
    assert job["standard_output"] == f"{d}/out-%j.txt" and job["current_working_directory"] == f"{d}/work"
    (d / f"{job_id}.go").touch()
    wait_for(lambda: state(slurm, job_id) == "COMPLETED", 30, "the job completed")
    assert (d / f"out-{job_id}.txt").read_text().splitlines()[:2] == [f"{d}/work", "2 300 0"]

    # What no node has is refused at submit, not queued for ever.
    for impossible in ("--mem=4G", "--gres=gpu:2"):
        proc = slurm.run("sbatch", "--parsable", impossible, "--wrap", "true", check=False)
        assert proc.returncode != 0 and "Requested node configuration is not available" in proc.stderr


def _signal_job(d: Path, trapper: str) -> str:
    """A batch script with three children: one plain, one in a session of its own (setsid), one as a tenant's
    uid (setpriv).  Each, and the script, logs every signal it gets to {d}/signals.log."""
    log = d / "signals.log"
    log.touch()
    log.chmod(0o666)
    script = d / "job.sh"
    script.write_text(f"""#!/bin/bash
log={log}
trap 'echo "$(date +%s.%N) script SIGTERM" >> $log' TERM
trap 'echo "$(date +%s.%N) script SIGUSR1" >> $log' USR1
{trapper} plain $log &
setsid {trapper} setsid $log &
setpriv --reuid {TENANT_UID} --regid {TENANT_UID} --clear-groups {trapper} setpriv $log &
echo "$(date +%s.%N) script started" >> $log
while true; do wait; done
""")
    return str(script)


def test_which_processes_each_scancel_reaches(slurm, shared_dir):
    d = shared_dir
    log = d / "signals.log"
    job_id = slurm.sbatch("--output", f"{d}/%j.out", _signal_job(d, write_trapper(d)))
    wait_for(lambda: len(signals_seen(log)) == 4, 60, "the script and its three children started")

    def after(*args, settle=2.0):
        slurm.run("scancel", *args, job_id)
        time.sleep(settle)
        return signals_seen(log)

    # Without a job step, a signal without --batch or --full reaches nobody.
    assert after("--signal=TERM") == {"script": [], "plain": [], "setsid": [], "setpriv": []}
    # --batch: the batch shell alone.
    assert after("--batch", "--signal=USR1") == {"script": ["SIGUSR1"], "plain": [], "setsid": [], "setpriv": []}
    # --full: the batch shell's process group, a setpriv child included; not a child in a session of its own.
    assert after("--full", "--signal=USR1") == {"script": ["SIGUSR1"] * 2, "plain": ["SIGUSR1"], "setsid": [],
                                                 "setpriv": ["SIGUSR1"]}
    # scancel itself: SIGCONT and SIGTERM to every process of the job (linuxproc follows the whole tree),
    # then SIGKILL KillWait seconds later.
    cancelled = time.time()
    seen = after(settle=1.0)
    assert seen["script"] == ["SIGUSR1", "SIGUSR1", "SIGTERM"]
    for child in ("plain", "setsid", "setpriv"):
        assert seen[child][-2:] == ["SIGCONT", "SIGTERM"]
    ended = wait_for(lambda: state(slurm, job_id) == "CANCELLED" and time.time(), slurm.kill_wait + 30, "cancelled")
    assert ended - cancelled >= slurm.kill_wait - 1
    job = slurm.job(job_id)
    assert job["exit_code"] == 9 and abs(job["end_time"] - cancelled) < 2  # SIGKILL's wait status; end = scancel
    assert not subprocess.run(["pgrep", "-f", str(d / "trapper.py")], capture_output=True).stdout


@pytest.mark.docker
def test_scancel_reaches_a_docker_client_but_its_kill_leaves_the_container_running(slurm, shared_dir):
    need_real(engine_running(), "no Docker engine answers")
    ensure_debian_base()
    d = shared_dir
    log = d / "container.log"
    log.touch()
    log.chmod(0o666)
    name = own("slurm-signal-test")
    script = d / "job.sh"
    script.write_text(f"""#!/bin/bash
exec docker run --rm --name {name} --network host -v {d}:/sx {DEBIAN_IMAGE} sh -c \\
  "trap 'echo TERM >> /sx/container.log' TERM; echo started >> /sx/container.log; while :; do sleep 0.2; done"
""")
    docker("rm", "-f", name, check=False)
    try:
        job_id = slurm.sbatch("--output", f"{d}/%j.out", str(script))
        wait_for(lambda: log.read_text() == "started\n", 60, "the container started")
        # The docker client passes the signal it gets on to the container (sig-proxy).
        slurm.run("scancel", "--full", "--signal=TERM", job_id)
        wait_for(lambda: log.read_text() == "started\nTERM\n", 10, "the container got SIGTERM")
        # scancel: the client gets SIGTERM, then SIGKILL; the container is the engine's and runs on.
        slurm.run("scancel", job_id)
        wait_for(lambda: state(slurm, job_id) in ("CANCELLED", None), slurm.kill_wait + 30, "the job cancelled")
        inspect = docker("inspect", "-f", "{{.State.Running}}", name, check=False)
        assert inspect.stdout.strip() == "true", "the container was expected to outlive its killed client"
    finally:
        docker("rm", "-f", name, check=False)


def test_an_ended_job_stays_in_squeue_until_min_job_age_then_is_forgotten(slurm, shared_dir):
    d = shared_dir
    ids = {what: slurm.sbatch("--output", f"{d}/%j.out", wrap=wrap)
           for what, wrap in (("ok", "true"), ("exit 3", "exit 3"), ("killed", "kill -TERM $$"))}
    wait_for(lambda: all(state(slurm, j) in ("COMPLETED", "FAILED") for j in ids.values()), 60, "all ended")
    jobs = slurm.jobs()
    # exit_code is the wait status: 3 << 8 for exit 3, the signal's number for a kill.
    assert [(jobs[ids[w]]["job_state"], jobs[ids[w]]["exit_code"]) for w in ("ok", "exit 3", "killed")] == [
        ("COMPLETED", 0), ("FAILED", 768), ("FAILED", 15)]
    ended = max(jobs[j]["end_time"] for j in ids.values())
    # Without accounting, that is all Slurm will ever say: the jobs go at MinJobAge (purged within a minute).
    gone = wait_for(lambda: not any(slurm.job(j) for j in ids.values()) and time.time(),
                    slurm.min_job_age + 70, "the ended jobs forgotten", every=1)
    assert gone - ended >= slurm.min_job_age - 1
    print(f"forgotten {gone - ended:.0f} s after their end (MinJobAge={slurm.min_job_age})")


def test_a_time_limit_warns_the_batch_shell_then_terms_and_kills_every_process(slurm, shared_dir):
    d = shared_dir
    log = d / "signals.log"
    # --time is in minutes, and one is the least; B:USR1@30 asks for USR1 to the batch shell 30 s before.
    job_id = slurm.sbatch("--time=1", "--signal=B:USR1@30", "--output", f"{d}/%j.out",
                          _signal_job(d, write_trapper(d)))
    wait_for(lambda: len(signals_seen(log)) == 4, 60, "the script and its children started")
    start = slurm.job(job_id)["start_time"]
    wait_for(lambda: signals_seen(log)["script"], 70, "the warning signal", every=1)
    warned = time.time()
    assert warned < start + 60 and not any(signals_seen(log)[c] for c in ("plain", "setsid", "setpriv"))
    # At the limit (checked every 30 s or so): SIGCONT and SIGTERM to every process, SIGKILL KillWait later.
    children = ("plain", "setsid", "setpriv")
    termed = wait_for(lambda: any(signals_seen(log)[c] for c in children) and time.time(), 120, "the limit", every=1)
    assert start + 60 <= termed <= start + 60 + 45
    wait_for(lambda: all(signals_seen(log)[c] == ["SIGCONT", "SIGTERM"] for c in children), 5, "all signalled")
    job = slurm.job(job_id)
    assert (job["job_state"], job["state_reason"]) in (("COMPLETING", "TimeLimit"), ("TIMEOUT", "None"))
    final = wait_for(lambda: (slurm.job(job_id) or {}).get("job_state") == "TIMEOUT" and slurm.job(job_id),
                     slurm.kill_wait + 30, "TIMEOUT")
    assert final["exit_code"] == 9 and time.time() - termed >= slurm.kill_wait - 2
    print(f"warned {warned - start:.0f} s and terminated {termed - start:.0f} s after the start (limit 60 s)")


def test_a_job_runs_as_a_tenants_uid_by_setpriv_not_sbatch_uid(slurm, shared_dir):
    d = shared_dir
    env = dict(slurm.env, SERVICE_SECRET="s3cret")
    # A tenant's uid has no passwd entry: sbatch --uid refuses it.
    proc = subprocess.run(["sbatch", f"--uid={TENANT_UID}", "--wrap", "true"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Invalid --uid specification" in proc.stderr
    # A uid it knows runs, but with the submitter's whole environment (and its HOME); its output file is
    # opened as that uid.
    nobody = d / "nobody"
    nobody.mkdir()
    subprocess.run(["chown", "65534:65534", str(nobody)], check=True)
    out = subprocess.run(["sbatch", "--parsable", "--uid=65534", "--gid=65534", "--chdir", str(nobody),
                          "--output", f"{nobody}/%j.out", "--wrap", 'id -u; echo "$HOME $SERVICE_SECRET"'],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    slurm.submitted.append(out)
    wait_for(lambda: state(slurm, out) == "COMPLETED", 30, "the --uid job")
    assert (nobody / f"{out}.out").read_text().split() == ["65534", "/root", "s3cret"]
    # A root job that drops to the uid itself: any uid, a clean environment, no groups, no capabilities.
    job_id = slurm.sbatch("--output", f"{d}/%j.out", wrap=(
        f"setpriv --reuid={TENANT_UID} --regid={TENANT_UID} --clear-groups --no-new-privs --inh-caps=-all "
        f"env -i PATH=/usr/bin:/bin sh -c 'id -u; id -G; echo \"[$SERVICE_SECRET]\"; grep CapEff /proc/self/status'"))
    wait_for(lambda: state(slurm, job_id) == "COMPLETED", 30, "the setpriv job")
    assert (d / f"{job_id}.out").read_text().split() == [str(TENANT_UID), str(TENANT_UID), "[]", "CapEff:",
                                                           "0000000000000000"]


def test_a_batch_script_killed_outright_fails_its_job_and_leaves_its_own_session_running(slurm, shared_dir):
    d = shared_dir
    job_id = slurm.sbatch("--output", f"{d}/%j.out", wrap=f"setsid sleep 300 & echo $! > {d}/child; wait")
    wait_for(lambda: (d / "child").exists() and (d / "child").read_text().strip(), 60, "the child started")
    child = int((d / "child").read_text())
    # scancel cannot kill outright: --signal=KILL still cancels with SIGTERM first, as scancel does.
    script, *_ = slurm.batch_pids(job_id)
    try:
        subprocess.run(["kill", "-9", str(script)], check=True)
        job = wait_for(lambda: state(slurm, job_id) == "FAILED" and slurm.job(job_id), 30, "the job failed")
        assert (job["state_reason"], job["exit_code"]) == ("JobLaunchFailure", 9)
        # Without cgroups, a process that left the script's session is no longer the job's: it runs on.
        time.sleep(2)
        assert Path(f"/proc/{child}").exists()
    finally:
        subprocess.run(["kill", "-9", str(child)], check=False)
