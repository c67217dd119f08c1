"""A job's container, whoever starts it: the Docker launcher on this machine (through the SDK), or Slurm's
docker runtime on a node (``docker run`` in the job script).  Both are given one ``Container`` made here, so
the two cannot drift apart.

A container gets its tenant's directory at /data and nothing else of the host, as its working directory; its
tenant's own uid (never root); memory, CPU and process limits; no capabilities; a read-only root file
system with a bounded /tmp in memory, where HOME and the caches of Python's libraries point; an init that
passes the stop signal on to dstrain.  Its labels carry the job, the attempt, the tenant's opaque id and the
service's instance: a restarted service finds its containers by them.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import click

from dstrain.service.launchers import section

#: Where a job's container sees its tenant's directory (the image's DSTRAIN_DATA_ROOT and working directory).
CONTAINER_DATA = "/data"

#: Every container the service starts carries these labels; the restart finds its own by them.
LABEL_JOB = "dstrain.job"
LABEL_TENANT = "dstrain.tenant"
LABEL_SERVICE = "dstrain.service"
LABEL_ATTEMPT = "dstrain.attempt"

#: Everything a job writes outside /data goes to its /tmp: the root file system is read-only.
WRITABLE_ELSEWHERE = {"HOME": "/tmp", "TMPDIR": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache",
                      "MPLCONFIGDIR": "/tmp/.cache/matplotlib", "NUMBA_CACHE_DIR": "/tmp/.cache/numba",
                      "PYTHONDONTWRITEBYTECODE": "1"}


def parse_labels(pairs: Sequence[str]) -> Dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key in (LABEL_JOB, LABEL_TENANT, LABEL_SERVICE, LABEL_ATTEMPT):
            raise ValueError(f"--label {pair!r}: give KEY=VALUE, not one of the service's own labels")
        labels[key] = value
    return labels


@dataclass(frozen=True)
class ContainerOptions:
    """What the host sets for every job's container, on this machine's engine or on a Slurm node's."""

    image: str = "dstrain:latest"
    #: Size of each job's /tmp, a tmpfs (the rest of its root file system is read-only).
    tmp_size: int = 2 << 30
    pids: int = 4096
    shm_size: int = 1 << 30
    #: 'bridge' on a normal engine.  'host' gives jobs the host's loopback too (docs/service.md).
    network: str = "bridge"
    #: Extra labels for every container (a test's, a billing system's).
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Container:
    """One run's container, as both the SDK and `docker run` are told it."""

    name: str
    image: str
    command: Tuple[str, ...]
    user: str
    #: The tenant's directory on the engine's host, mounted at CONTAINER_DATA.
    data_dir: str
    environment: Dict[str, str]
    labels: Dict[str, str]
    tmp_size: int
    pids: int
    shm_size: int
    network: str
    memory: Optional[int]
    cpus: Optional[float]
    stop_timeout: int
    workdir: str = CONTAINER_DATA
    read_only: bool = True
    cap_drop: Tuple[str, ...] = ("ALL",)
    security_opt: Tuple[str, ...] = ("no-new-privileges",)
    #: docker-init passes SIGTERM on to dstrain, which stops DeepSpeech and records the stage's end.
    init: bool = True

    @property
    def tmpfs(self) -> Dict[str, str]:
        return {"/tmp": f"rw,nosuid,nodev,size={self.tmp_size}"}

    def run_args(self, secrets: Sequence[str] = ()) -> List[str]:
        """`docker run`'s arguments before the image.  The ``secrets`` among the variables go by name only
        (``--env NAME``): their values stay out of every command line, and come from the environment of the
        `docker run` client."""
        args = ["--rm", "--name", self.name, "--user", self.user, "--volume", f"{self.data_dir}:{CONTAINER_DATA}",
                "--workdir", self.workdir, "--pids-limit", str(self.pids), "--shm-size", str(self.shm_size),
                "--network", self.network, "--stop-timeout", str(self.stop_timeout)]
        args += ["--read-only"] if self.read_only else []
        args += ["--init"] if self.init else []
        args += [item for mount, how in self.tmpfs.items() for item in ("--tmpfs", f"{mount}:{how}")]
        args += [item for cap in self.cap_drop for item in ("--cap-drop", cap)]
        args += [item for opt in self.security_opt for item in ("--security-opt", opt)]
        args += [item for key, value in self.labels.items() for item in ("--label", f"{key}={value}")]
        args += [item for name, value in self.environment.items()
                 for item in ("--env", name if name in secrets else f"{name}={value}")]
        if self.memory:
            args += ["--memory", str(self.memory)]
        if self.cpus:
            args += ["--cpus", f"{self.cpus:g}"]
        return args


def container_of(options: ContainerOptions, spec, instance: str, memory: Optional[int], cpus: Optional[float],
                 stop_timeout: int) -> Container:
    """The container of the run ``spec`` (a launcher.RunSpec)."""
    return Container(
        name=spec.handle, image=options.image, command=tuple(spec.argv), user=spec.user, data_dir=str(spec.data_dir),
        environment={**WRITABLE_ELSEWHERE, **spec.settings, **spec.environment},
        labels={**options.labels, LABEL_JOB: spec.job, LABEL_TENANT: spec.tenant, LABEL_SERVICE: instance,
                LABEL_ATTEMPT: str(spec.attempt)},
        tmp_size=options.tmp_size, pids=options.pids, shm_size=options.shm_size, network=options.network,
        memory=memory, cpus=cpus, stop_timeout=stop_timeout)


_SECTION = "Job containers (--launcher docker, and --launcher slurm --slurm-runtime docker)"

#: The containers' flags: the Docker launcher's, and Slurm's docker runtime's.
FLAGS = section(
    _SECTION,
    click.Option(["--image"], default="dstrain:latest", show_default=True,
                 help="The image each job runs (Dockerfile.train)."),
    click.Option(["--tmp-size"], default="2g", show_default=True,
                 help="Each job's /tmp, in memory; the rest of its root file system is read-only."),
    click.Option(["--pids"], default=4096, show_default=True, type=int, help="Each job's process limit."),
    click.Option(["--shm-size"], default="1g", show_default=True, help="Each job's /dev/shm (NVIDIA's TF1 advice)."),
    click.Option(["--network"], default="bridge", show_default=True,
                 help="Jobs' network: 'bridge' keeps them off the host's loopback; 'host' only where there is no "
                      "bridge."),
    click.Option(["--label"], multiple=True, metavar="KEY=VALUE", help="An extra label for every job's container."),
)


def options_of(params: Dict) -> ContainerOptions:
    """The containers' flags, checked (ValueError names a bad one)."""
    from dstrain.service.units import parse_size

    return ContainerOptions(image=params["image"], tmp_size=parse_size(params["tmp_size"]), pids=params["pids"],
                            shm_size=parse_size(params["shm_size"]), network=params["network"],
                            labels=parse_labels(params["label"]))
