"""The Slurm launcher's flags (`dstrain serve --launcher slurm`): what each job asks of the cluster, how it runs
on its node, and where the job records go.  The launcher itself is slurm_launcher.py.

Slurm decides where each job runs and which GPUs it gets; the service decides what may run (the tenant's
limit, first come first served) and submits a job with sbatch once its rules allow it.
"""
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import click

from dstrain.service.container import FLAGS as CONTAINER_FLAGS
from dstrain.service.container import ContainerOptions
from dstrain.service.launchers import LauncherKind, section

RUNTIMES = ("docker", "native")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: sbatch options the launcher sets itself, which an extra argument must not change: the records rely on them.
_OWN = ("--job-name", "-J", "--comment", "--output", "-o", "--error", "-e", "--export", "--chdir", "-D",
        "--parsable", "--requeue", "--open-mode", "--wrap")


@dataclass(frozen=True)
class SlurmOptions:
    """What the host sets for running jobs on its cluster (the service's own options are in Options)."""

    #: The launcher's records: shared by the service and every node, writable by neither tenants nor their jobs.
    #: None: <root>/launchers/slurm (layout.py).
    records: Optional[Path] = None
    runtime: str = "docker"
    #: GPUs per job (--gres=gpu:N); 0 for CPU jobs (a cluster without GPUs).
    gpus: int = 1
    cpus: int = 4
    #: Each job's memory (--mem), in bytes; None: the partition's default.
    memory: Optional[int] = 16 << 30
    #: The most Slurm lets one run take (its --time), in seconds; the service's --job-time-limit lowers it.
    time_limit: Optional[float] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    extra_args: Tuple[str, ...] = ()
    #: native: the nodes' dstrain, and their tool settings (TRAINER_PYTHON, DSTRAIN_LM__KENLM_BIN, ...).
    dstrain: str = "dstrain"
    node_env: Dict[str, str] = field(default_factory=dict)
    #: docker: seconds from Slurm's SIGTERM to killing the container; keep it below the cluster's KillWait.
    kill_after: int = 20
    #: Seconds the check at start (a test job on the cluster) may take; 0: no check.
    check_seconds: float = 120.0
    #: How often the records are looked at for a run that started or ended.
    poll_seconds: float = 1.0
    #: docker: the job containers (container.py).
    container: ContainerOptions = field(default_factory=ContainerOptions)

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"--slurm-runtime {self.runtime!r}: say one of {', '.join(RUNTIMES)}")
        if self.gpus < 0 or self.cpus < 1:
            raise ValueError("--gpus-per-job must be 0 or more, --cpus-per-job 1 or more")
        bad = [name for name in self.node_env if not _VARIABLE.match(name)]
        if bad:
            raise ValueError(f"--node-env: not an environment variable's name: {bad[0]!r}")
        own = [arg for arg in self.extra_args if arg.split("=", 1)[0] in _OWN]
        if own:
            raise ValueError(f"--sbatch-arg {own[0]!r}: the launcher sets that itself")

    def minutes(self, time_left: Optional[float], grace: int) -> Optional[int]:
        """Slurm's --time for a run: the host's cap, lowered to what is left of the job's time limit plus the
        grace and a minute, a backstop to the service's own stop should the service be down then."""
        limits = [limit for limit in (self.time_limit, None if time_left is None else time_left + grace + 60)
                  if limit is not None]
        return max(1, math.ceil(min(limits) / 60)) if limits else None


def _pairs(pairs, flag: str) -> Dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{flag} {pair!r}: give KEY=VALUE")
        found[key] = value
    return found


_SECTION = "A Slurm cluster (--launcher slurm)"

FLAGS = section(
    _SECTION,
    click.Option(["--slurm-runtime"], type=click.Choice(RUNTIMES), default="docker", show_default=True,
                 help="How a job runs on its node: docker (the image, as with --launcher docker) or native (the "
                      "node's own dstrain, as the tenant's uid)."),
    click.Option(["--gpus-per-job"], default=1, show_default=True, type=click.IntRange(0),
                 help="GPUs each job asks for (--gres=gpu:N); 0 on a cluster without GPUs."),
    click.Option(["--cpus-per-job"], default=4, show_default=True, type=click.IntRange(1),
                 help="CPUs each job asks for (--cpus-per-task)."),
    click.Option(["--mem-per-job"], default="16g", show_default=True,
                 help="Memory each job asks for (--mem); '' for the partition's default."),
    click.Option(["--slurm-partition"], help="The partition jobs go to [default: the cluster's]."),
    click.Option(["--slurm-account"], help="The account jobs are charged to."),
    click.Option(["--slurm-qos"], help="The QOS jobs ask for."),
    click.Option(["--slurm-time-limit"], metavar="DURATION",
                 help="The most one run may take in Slurm (90m, 48h); --job-time-limit lowers it for each run "
                      "[default: what is left of --job-time-limit, plus --stop-grace and a minute]."),
    click.Option(["--sbatch-arg"], multiple=True, metavar="ARG",
                 help="An extra sbatch argument, e.g. --sbatch-arg=--constraint=a100 (repeat it)."),
    click.Option(["--slurm-records"], type=click.Path(file_okay=False),
                 help="Where the job records go, on storage the service and every node share, which no tenant "
                      "can write [default: ROOT/launchers/slurm]."),
    click.Option(["--node-dstrain"], default="dstrain", show_default=True,
                 help="native: the nodes' dstrain command (a path every tenant's uid can run)."),
    click.Option(["--node-env"], multiple=True, metavar="KEY=VALUE",
                 help="native: a variable for every job, e.g. TRAINER_PYTHON=/opt/ds/venv/bin/python (repeat it)."),
    click.Option(["--slurm-kill-after"], default=20, show_default=True, type=click.IntRange(1),
                 help="docker: seconds from Slurm's SIGTERM to killing the container; below the cluster's KillWait."),
    click.Option(["--slurm-check-seconds"], default=120.0, show_default=True, type=click.FloatRange(0),
                 help="How long the test job run at start may take (it checks that nodes see ROOT and can run "
                      "jobs); 0 skips it."),
)


def options_of(params: Dict[str, Any]) -> SlurmOptions:
    from dstrain.service import container
    from dstrain.service.units import parse_duration, parse_size

    return SlurmOptions(
        records=Path(params["slurm_records"]) if params["slurm_records"] else None, runtime=params["slurm_runtime"],
        gpus=params["gpus_per_job"], cpus=params["cpus_per_job"],
        memory=parse_size(params["mem_per_job"]) if params["mem_per_job"] else None,
        time_limit=parse_duration(params["slurm_time_limit"]) if params["slurm_time_limit"] else None,
        partition=params["slurm_partition"], account=params["slurm_account"], qos=params["slurm_qos"],
        extra_args=tuple(params["sbatch_arg"]), dstrain=params["node_dstrain"],
        node_env=_pairs(params["node_env"], "--node-env"), kill_after=params["slurm_kill_after"],
        check_seconds=params["slurm_check_seconds"], container=container.options_of(params))


SLURM = LauncherKind("slurm", "one sbatch job per job on a Slurm cluster, which decides where (--gpus-per-job)",
                     FLAGS + CONTAINER_FLAGS, options_of, "dstrain.service.slurm_launcher:SlurmLauncher")
