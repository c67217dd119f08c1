"""The Slurm launcher's check before the service serves: one small test job on the cluster (slurm_check.sh).

Jobs need the service's root on storage the service and every node share, reachable by the tenants' uids,
and a records directory the job script can write as the service's user (root: beware NFS's root_squash).  A
root the test job cannot read is refused, with what was wrong, before any tenant's job is submitted.  The
test job runs on one node, the one Slurm picks: it cannot prove the others are alike.
"""
import os
import secrets
import time
from pathlib import Path

from dstrain.service.layout import Layout

CHECK_SCRIPT = Path(__file__).with_name("slurm_check.sh")


def check(launcher, root: Path) -> None:
    """ValueError, saying what is wrong, unless a test job on the cluster sees ``root`` as the service does."""
    slurm, options = launcher.slurm, launcher.options
    if not slurm.check_seconds:
        return
    tenants = Layout(root).tenants
    tenants.mkdir(mode=0o711, parents=True, exist_ok=True)
    nonce = secrets.token_hex(16)
    probe = tenants / f".slurm-check-{nonce}"
    result = launcher.dir / f".check-{nonce}"
    output = launcher.dir / f".check-{nonce}.out"
    fd = os.open(str(probe), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, nonce.encode())
    finally:
        os.close(fd)
    uid = options.tenant_uids[0] if options.tenant_uids else None
    passed = slurm.node_env if slurm.runtime == "native" else {}
    env = {name: value for name, value in os.environ.items()
           if name in ("PATH", "SLURM_CONF") or name.startswith("SBATCH_")}
    env.update(passed)
    env.update(DSCHECK_PROBE=str(probe), DSCHECK_NONCE=nonce, DSCHECK_RESULT=str(result),
               DSCHECK_USER=f"{uid}:{uid}" if uid is not None else "", DSCHECK_RUNTIME=slurm.runtime,
               DSCHECK_DSTRAIN=slurm.dstrain, DSCHECK_PASS=" ".join(passed))
    args = ["sbatch", "--parsable", "--export=ALL", "--no-requeue", "--job-name", f"dstrain-{options.instance}-check",
            "--output", str(output), "--chdir", str(launcher.dir), "--cpus-per-task", "1", "--mem=256M", "--time=5"]
    for flag, value in (("--partition", slurm.partition), ("--account", slurm.account), ("--qos", slurm.qos)):
        if value:
            args.append(f"{flag}={value}")
    slurm_job = None
    try:
        proc = launcher.command(*args, *slurm.extra_args, input=CHECK_SCRIPT.read_text(encoding="utf-8"), env=env)
        if proc.returncode != 0:
            raise ValueError(f"the Slurm cluster refused the check's test job: {proc.stderr.strip()}")
        slurm_job = proc.stdout.strip().split(";")[0]
        deadline = time.monotonic() + slurm.check_seconds
        while not result.exists():
            if time.monotonic() > deadline:
                raise ValueError(f"the check's test job (Slurm job {slurm_job}) did not finish within "
                                 f"{slurm.check_seconds:g} s ({_where(launcher, slurm_job, output)}); "
                                 "--slurm-check-seconds gives it longer, 0 skips the check")
            time.sleep(0.5)
        problems = result.read_text(encoding="utf-8").strip()
        if problems:
            raise ValueError("the check's test job on the Slurm cluster found: " + "; ".join(problems.splitlines()))
    finally:
        if slurm_job is not None and not result.exists():
            launcher.command("scancel", slurm_job)
        for path in (probe, result, output):
            try:
                os.unlink(str(path))
            except FileNotFoundError:
                pass


def _where(launcher, slurm_job: str, output: Path) -> str:
    """Where the test job is: its state and Slurm's reason, or the end of what it printed."""
    for job in launcher.all_jobs():
        if str(job.get("job_id")) == slurm_job:
            return f"{job.get('job_state')}, {job.get('state_reason')}"
    try:
        return output.read_text(encoding="utf-8", errors="replace")[-300:].strip() or "it printed nothing"
    except FileNotFoundError:
        return "Slurm no longer knows it, and it wrote nothing"
