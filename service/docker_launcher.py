"""The Docker engine as a launcher: one container per run of a job, through the `docker` SDK.

A container gets its tenant's directory at /data and nothing else of the host; its slot's GPUs through a
device request; its tenant's own uid (never root); memory, CPU and process limits; no capabilities; a
read-only root file system with a bounded /tmp in memory, where HOME and the caches of Python's libraries
point; an init that passes the stop signal on to dstrain, and the stop grace for the engine's own shutdown
too.  Its labels carry the job, the attempt, the tenant's opaque id and this service's instance name: on
restart the service finds its containers by them and by nothing else.
"""
import logging
import threading
import time
from typing import Callable, List, Optional

from docker.errors import APIError, DockerException, NotFound
from docker.types import DeviceRequest

import docker
from dstrain.service.launcher import ACTIVE, CREATED, EXITED, JobSpec, Launcher, RunState, Usage
from dstrain.service.options import (
    CONTAINER_DATA,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_SERVICE,
    LABEL_TENANT,
    Options,
    parse_size,
)

log = logging.getLogger("dstrain.service")

#: Everything a job writes outside /data goes to its /tmp: the root file system is read-only.
_WRITABLE_ELSEWHERE = {"HOME": "/tmp", "TMPDIR": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache",
                       "MPLCONFIGDIR": "/tmp/.cache/matplotlib", "NUMBA_CACHE_DIR": "/tmp/.cache/numba",
                       "PYTHONDONTWRITEBYTECODE": "1"}

_PHASES = {"created": CREATED, "running": ACTIVE, "paused": ACTIVE, "restarting": ACTIVE, "removing": EXITED,
           "exited": EXITED, "dead": EXITED}


class DockerLauncher(Launcher):
    def __init__(self, options: Options, client=None):
        self.options = options
        self.client = client or docker.from_env(timeout=60)
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

    def start(self, spec: JobSpec) -> str:
        options = self.options
        api = self.client.api  # the low-level call: the high-level one has no stop timeout
        host_config = api.create_host_config(
            binds={str(spec.data_dir): {"bind": CONTAINER_DATA, "mode": "rw"}},
            device_requests=[DeviceRequest(device_ids=list(spec.devices), capabilities=[["gpu"]])]
            if spec.devices else None,
            mem_limit=options.memory,
            nano_cpus=self._nano_cpus(),
            pids_limit=options.pids,
            shm_size=parse_size(options.shm_size),
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={parse_size(options.tmp_size)}"},
            network_mode=options.network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # docker-init passes SIGTERM on to dstrain, which stops DeepSpeech and records the stage's end.
            init=True,
        )
        created = api.create_container(
            options.image,
            command=list(spec.argv),
            name=f"dstrain-{options.instance}-{spec.job}-{spec.attempt}",
            labels={**options.labels, LABEL_JOB: spec.job, LABEL_TENANT: spec.tenant,
                    LABEL_SERVICE: options.instance, LABEL_ATTEMPT: str(spec.attempt)},
            environment={**_WRITABLE_ELSEWHERE, **spec.settings, **spec.environment},
            user=spec.user,
            host_config=host_config,
            # The grace the engine gives it when the engine itself shuts down, as the service gives a cancel.
            stop_timeout=options.stop_grace,
        )
        api.start(created["Id"])
        return created["Id"]

    def _nano_cpus(self) -> Optional[int]:
        cpus = self.options.cpus
        if cpus == "auto":  # the engine's CPUs, shared evenly among the slots
            if self._engine_cpus is None:
                self._engine_cpus = int(self.client.info().get("NCPU") or 1)
            cpus = self._engine_cpus / len(self.options.slots)
        return int(cpus * 1e9) if cpus else None

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
        if cpu is None and peak is None:  # stopped, or not started yet: the engine has no cgroup to read
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
                handle=container.id,
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
