"""The Docker engine as a launcher: one container per run of a job, through the `docker` SDK.

A container gets its tenant's directory at /data and nothing else of the host; its slot's GPUs through a
device request; its tenant's own uid (never root); memory, CPU and process limits; no capabilities; an init that passes
the stop signal on to dstrain.  Its labels carry the job, the attempt, the tenant's opaque id and this
service's instance name: on restart the service finds its containers by them and by nothing else.
"""
import logging
import threading
import time
from typing import Callable, List

from docker.errors import APIError, DockerException, NotFound
from docker.types import DeviceRequest

import docker
from dstrain.service.launcher import ACTIVE, CREATED, EXITED, JobSpec, Launcher, RunState
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

_PHASES = {"created": CREATED, "running": ACTIVE, "paused": ACTIVE, "restarting": ACTIVE, "removing": EXITED,
           "exited": EXITED, "dead": EXITED}


class DockerLauncher(Launcher):
    def __init__(self, options: Options, client=None):
        self.options = options
        self.client = client or docker.from_env(timeout=60)
        self._events = None
        self._closed = threading.Event()

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
        container = self.client.containers.create(
            options.image,
            command=list(spec.argv),
            name=f"dstrain-{options.instance}-{spec.job}-{spec.attempt}",
            labels={**options.labels, LABEL_JOB: spec.job, LABEL_TENANT: spec.tenant,
                    LABEL_SERVICE: options.instance, LABEL_ATTEMPT: str(spec.attempt)},
            volumes={str(spec.data_dir): {"bind": CONTAINER_DATA, "mode": "rw"}},
            device_requests=[DeviceRequest(device_ids=list(spec.devices), capabilities=[["gpu"]])]
            if spec.devices else None,
            environment=dict(spec.environment),
            user=spec.user,
            mem_limit=options.memory,
            nano_cpus=int(options.cpus * 1e9) if options.cpus else None,
            pids_limit=options.pids,
            shm_size=parse_size(options.shm_size),
            network_mode=options.network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # docker-init passes SIGTERM on to dstrain, which stops DeepSpeech and records the stage's end.
            init=True,
        )
        container.start()
        return container.id

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
