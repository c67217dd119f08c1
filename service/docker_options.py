"""The Docker launcher's flags (`dstrain serve --launcher docker`, the default): its slots, each job's memory
and CPUs, and the job containers' flags (container.py).  The launcher itself is docker_launcher.py, imported
when the service starts (it loads the Docker SDK)."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import click

from dstrain.service.container import FLAGS as CONTAINER_FLAGS
from dstrain.service.container import ContainerOptions
from dstrain.service.launcher import Slot
from dstrain.service.launchers import LauncherKind, section


def gpu_slots(spec: str) -> Tuple[Slot, ...]:
    """'0,1,2,3': four jobs of one GPU each; '0+1,2+3': two jobs of two GPUs each."""
    slots = []
    for group in spec.split(","):
        devices = tuple(part.strip() for part in group.split("+") if part.strip())
        if not devices:
            raise ValueError(f"--gpus {spec!r}: an empty slot")
        slots.append(Slot("gpu" + "+".join(devices), devices))
    names = [slot.name for slot in slots]
    if len(set(names)) != len(names):
        raise ValueError(f"--gpus {spec!r}: a device listed twice")
    return tuple(slots)


def cpu_slots(count: int) -> Tuple[Slot, ...]:
    if count < 1:
        raise ValueError("--slots must be at least 1")
    return tuple(Slot(f"cpu{i}") for i in range(count))


def parse_cpus(text: str) -> Union[float, str, None]:
    """'auto' (the engine's CPUs shared among the slots), 'none', or a number of CPUs."""
    word = str(text).strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else "auto"
    try:
        cpus = float(word)
    except ValueError:
        raise ValueError(f"--cpus {text!r}: give a number of CPUs, auto or none") from None
    if cpus <= 0:
        raise ValueError(f"--cpus {text!r}: give a positive number (none for no limit)")
    return cpus


@dataclass(frozen=True)
class DockerOptions:
    slots: Tuple[Slot, ...] = field(default_factory=lambda: cpu_slots(1))
    #: Each job's memory limit in bytes; None: none.
    memory: Optional[int] = 16 << 30
    #: CPUs per job: a number, "auto" (the engine's CPUs divided among the slots) or None (no limit).
    cpus: Union[float, str, None] = "auto"
    container: ContainerOptions = field(default_factory=ContainerOptions)


_SECTION = "The Docker engine of this machine (--launcher docker)"

FLAGS = section(
    _SECTION,
    click.Option(["--gpus"], metavar="IDS",
                 help="GPU slots: '0,1' is two jobs of one GPU each; '0+1,2+3' two of two."),
    click.Option(["--slots"], type=int, help="Without GPUs: how many jobs run at once on the CPU [default: 1]."),
    click.Option(["--memory"], default="16g", show_default=True, help="Each job's memory limit ('' for none)."),
    click.Option(["--cpus"], default="auto", show_default=True,
                 help="Each job's CPU limit: a number of CPUs, auto (the engine's CPUs divided among the slots) or "
                      "none."),
)


def options_of(params: Dict[str, Any]) -> DockerOptions:
    from dstrain.service import container
    from dstrain.service.units import parse_size

    slots = gpu_slots(params["gpus"]) if params["gpus"] else cpu_slots(params["slots"] or 1)
    return DockerOptions(slots=slots, memory=parse_size(params["memory"]) if params["memory"] else None,
                         cpus=parse_cpus(params["cpus"]), container=container.options_of(params))


DOCKER = LauncherKind("docker", "one container per job on this machine's Docker engine, in slots (--gpus, --slots)",
                      FLAGS + CONTAINER_FLAGS, options_of, "dstrain.service.docker_launcher:DockerLauncher")
