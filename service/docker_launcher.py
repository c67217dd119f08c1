"""The Docker engine as a launcher: one container per run of a job, through the `docker` SDK, in slots.

Each run's container is container.py's (the tenant's directory at /data and nothing else of the host, its
uid, its limits, a read-only root, an init), given its slot's GPUs through a device request and the stop grace
for the engine's own shutdown too.  Its name is the run's handle; its labels carry the job, the attempt, the
tenant's opaque id and this service's instance: on restart the service finds its containers by them and by
nothing else.
"""
import logging
import threading
import time
from typing import Callable, List, Optional

from docker.errors import APIError, DockerException, NotFound
from docker.types import DeviceRequest

import docker
from dstrain.service.container import CONTAINER_DATA, LABEL_ATTEMPT, LABEL_JOB, LABEL_SERVICE, container_of
from dstrain.service.docker_options import DockerOptions
from dstrain.service.launcher import ACTIVE, CREATED, EXITED, Launcher, RunSpec, RunState, Usage
from dstrain.service.options import Options

log = logging.getLogger("dstrain.service")

_PHASES = {"created": CREATED, "running": ACTIVE, "paused": ACTIVE, "restarting": ACTIVE, "removing": EXITED,
           "exited": EXITED, "dead": EXITED}


class DockerLauncher(Launcher):
    run_noun = "container"
    engine_noun = "container engine"

    def __init__(self, options: Options, docker_options: DockerOptions, client=None):
        self.options = options
        self.docker = docker_options
        self.slots = docker_options.slots
        try:
            self.client = client or docker.from_env(timeout=60)
        except DockerException as exc:
            raise RuntimeError(f"the Docker engine does not answer ({exc}); is dockerd running, and is its socket "
                               "reachable (DOCKER_HOST)?") from None
        self._events = None
        self._closed = threading.Event()
        self._engine_cpus: Optional[int] = None

    @property
    def _mine(self) -> str:
        return f"{LABEL_SERVICE}={self.options.instance}"

    def available(self) -> bool:
        try:
            return bool(self.client.ping())
        except (DockerException, OSError):
            return False

    def start(self, spec: RunSpec) -> None:
        made = container_of(self.docker.container, spec, self.options.instance, self.docker.memory,
                            self._cpus(), self.options.stop_grace)
        api = self.client.api  # the low-level call: the high-level one has no stop timeout
        devices = spec.slot.devices if spec.slot else ()
        host_config = api.create_host_config(
            binds={made.data_dir: {"bind": CONTAINER_DATA, "mode": "rw"}},
            device_requests=[DeviceRequest(device_ids=list(devices), capabilities=[["gpu"]])] if devices else None,
            mem_limit=made.memory,
            nano_cpus=int(made.cpus * 1e9) if made.cpus else None,
            pids_limit=made.pids,
            shm_size=made.shm_size,
            read_only=made.read_only,
            tmpfs=made.tmpfs,
            network_mode=made.network,
            cap_drop=list(made.cap_drop),
            security_opt=list(made.security_opt),
            init=made.init,
        )
        created = api.create_container(
            made.image, command=list(made.command), name=made.name, labels=made.labels,
            environment=made.environment, user=made.user, working_dir=made.workdir, host_config=host_config,
            # The grace the engine gives it when the engine itself shuts down, as the service gives a cancel.
            stop_timeout=made.stop_timeout,
        )
        api.start(created["Id"])

    def _cpus(self) -> Optional[float]:
        cpus = self.docker.cpus
        if cpus == "auto":  # the engine's CPUs, shared evenly among the slots
            if self._engine_cpus is None:
                self._engine_cpus = int(self.client.info().get("NCPU") or 1)
            cpus = self._engine_cpus / len(self.slots)
        return cpus or None

    def usage(self, handle: str) -> Optional[Usage]:
        """From the engine's stats: CPU time (cgroup v1 and v2) and the memory high-water mark (cgroup v1's
        max_usage; v2 reports none, so there it is the usage now, and the ledger keeps the largest seen)."""
        try:
            stats = self.client.api.stats(handle, stream=False, one_shot=True)
        except (NotFound, APIError):
            return None
        cpu = (stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage")
        memory = stats.get("memory_stats") or {}
        peak = memory.get("max_usage") or memory.get("usage")
        if not cpu and not peak:  # stopped, or not started yet: no cgroup to read (the engine says 0 or nothing)
            return None
        return Usage(cpu / 1e9 if cpu is not None else None, peak)

    def runs(self) -> List[RunState]:
        found = []
        for container in self.client.containers.list(all=True, filters={"label": [self._mine]},
                                                     ignore_removed=True):
            state = container.attrs.get("State", {})
            labels = container.labels
            found.append(RunState(
                job=labels.get(LABEL_JOB, ""),
                attempt=int(labels.get(LABEL_ATTEMPT, "0") or 0),
                handle=container.name,
                phase=_PHASES.get(state.get("Status"), ACTIVE),
                exit_code=state.get("ExitCode"),
                killed_because="the memory limit (out of memory)" if state.get("OOMKilled") else None,
            ))
        return found

    def resume_created(self, handle: str) -> None:
        self.client.containers.get(handle).start()

    def stop(self, handle: str, grace_seconds: int) -> None:
        try:
            self.client.containers.get(handle).stop(timeout=grace_seconds)
        except NotFound:
            pass

    def console_tail(self, handle: str, lines: int) -> str:
        try:
            return self.client.containers.get(handle).logs(tail=lines).decode("utf-8", "replace")
        except (NotFound, APIError):
            return ""

    def remove(self, handle: str) -> None:
        try:
            self.client.containers.get(handle).remove(force=True)
        except NotFound:
            pass

    def watch(self, on_change: Callable[[], None]) -> None:
        while not self._closed.is_set():
            try:
                self._events = self.client.events(
                    decode=True, filters={"type": "container", "event": ["die"], "label": [self._mine]})
                for _ in self._events:
                    on_change()
            except (DockerException, OSError, ValueError) as exc:
                if not self._closed.is_set():
                    log.warning("docker events: %s; polling until they come back", exc)
                    self._closed.wait(5)
            # The stream ended (the engine restarted): reconnect, and have a look meanwhile.
            on_change()
            time.sleep(0.1)

    def close(self) -> None:
        self._closed.set()
        if self._events is not None:
            self._events.close()
