"""The service's parts without an engine: what a job may ask, paths, the store's transitions, tokens, and the
scheduler's order (with an in-memory launcher behind the launcher interface; test_service.py runs the real
one)."""
import os
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from dstrain.pipeline.config import read_config_file
from dstrain.pipeline.settings import Settings
from dstrain.service import jobspec
from dstrain.service.launcher import ACTIVE, EXITED, Launcher, RunState
from dstrain.service.layout import Layout, PathRefused, relative_parts
from dstrain.service.options import Options, cpu_slots, gpu_slots, parse_size
from dstrain.service.scheduler import Scheduler
from dstrain.service.store import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, IdempotencyConflict, Store
from dstrain.service.tenants import add_tenant, authenticate, rotate_token


def _path_settings(model, prefix=""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        if annotation is Path or Path in args:
            yield prefix + name
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _path_settings(annotation, prefix + name + ".")


def test_every_setting_that_names_a_place_is_refused_in_a_job():
    places = set(_path_settings(Settings))
    assert places  # the walk found the schema's Path settings
    assert places <= set(jobspec.REFUSED), places - set(jobspec.REFUSED)
    # ... and the tool commands, which are strings.
    assert {"train.trainer_python", "export.convert_graphdef_memmapped_format"} <= set(jobspec.REFUSED)


def test_overrides_reach_the_container_as_validated():
    request = jobspec.JobRequest(language="fr", datasets=["common_voice"], overrides={
        "train": {"epochs": 4, "augment": ["volume[p=0.1,dbfs=-10:-40]"]},
        "dataset.common_voice.release": "cv-corpus-1-x", "lm.sources": [], "clean.shared_transcripts": None})
    flat = jobspec.validate(request)
    assert flat == {"train.epochs": 4, "train.augment": ["volume[p=0.1,dbfs=-10:-40]"],
                    "dataset.common_voice.release": "cv-corpus-1-x", "lm.sources": []}
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"dstrain-{os.getpid()}.toml"
    try:
        path.write_text(jobspec.settings_toml(flat))
        assert read_config_file(path) == flat  # what `dstrain run --config` reads is what was checked
    finally:
        path.unlink()


@pytest.mark.parametrize("overrides,field", [
    ({"train.epochs": "many"}, "train.epochs"),
    ({"optimize.script": "/x"}, "optimize.script"),
    ({"dataset.common_voice.archive": "../../x"}, "dataset.common_voice.archive"),
    ({"lm.source.wiki.url": "ftp://x/y.txt"}, "lm.source.wiki.url"),
    ({"train": 3, "train.epochs": 2}, "overrides.train.epochs"),
])
def test_bad_overrides_name_their_field(overrides, field):
    with pytest.raises(jobspec.Invalid) as caught:
        jobspec.validate(jobspec.JobRequest(language="fr", overrides=overrides))
    assert any(field in ".".join(map(str, e["loc"])) for e in caught.value.errors), caught.value.errors


def test_paths_from_requests():
    for bad in ("", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b", "a\x00"):
        with pytest.raises(PathRefused):
            relative_parts(bad)


def test_sizes_and_slots():
    assert parse_size("1M") == 1 << 20 and parse_size("50G") == 50 << 30 and parse_size("512") == 512
    assert [s.devices for s in gpu_slots("0,1")] == [("0",), ("1",)]
    assert [s.devices for s in gpu_slots("0+1,2+3")] == [("0", "1"), ("2", "3")]
    assert [s.name for s in cpu_slots(2)] == ["cpu0", "cpu1"]
    with pytest.raises(ValueError):
        gpu_slots("0,0")
    with pytest.raises(ValueError, match="never 0" if os.geteuid() == 0 else "needs a service that runs as root"):
        Options(root=Path("r"), image="i", slots=cpu_slots(1), tenant_uids=(0, 10))


def test_transitions_are_conditional_and_recorded(tmp_path):
    store = Store(tmp_path / "service.db")
    store.add_tenant("t-1", "one", "h")
    job, created = store.submit("t-1", "fr", None, {}, None, "key", "hash", lambda job_id: None)
    again, created_again = store.submit("t-1", "fr", None, {}, None, "key", "hash", lambda job_id: None)
    assert created and not created_again and again.id == job.id
    with pytest.raises(IdempotencyConflict):
        store.submit("t-1", "fr", None, {}, None, "key", "another", lambda job_id: None)
    assert store.move(job.id, [QUEUED], RUNNING, "started", slot="cpu0")
    assert not store.move(job.id, [QUEUED], CANCELLED, "too late")  # it is running: nothing changes
    assert store.move(job.id, [RUNNING], FAILED, "boom", cause="boom")
    assert store.move(job.id, [FAILED, CANCELLED], QUEUED, "resumed")
    assert [t["to_state"] for t in store.transitions(job.id)] == [QUEUED, RUNNING, FAILED, QUEUED]
    assert store.job(job.id, "t-other") is None and store.job(job.id, "t-1").queue_seq > job.queue_seq


def test_tokens(tmp_path):
    store, layout = Store(tmp_path / "service.db"), Layout(tmp_path)
    tenant, token = add_tenant(store, layout, Options(root=tmp_path, image="i", slots=cpu_slots(1)), "acme")
    assert token not in (tmp_path / "service.db").read_bytes().decode("latin-1")
    assert authenticate(store, token).id == tenant.id
    for bad in (None, "", token + "x", "t-nobody." + token.split(".")[1], token.split(".")[1]):
        assert authenticate(store, bad) is None
    new = rotate_token(store, "acme")
    assert authenticate(store, token) is None and authenticate(store, new).id == tenant.id
    assert "acme" not in str(layout.tenant(tenant.id))


class _MemoryLauncher(Launcher):
    """Runs that start active and end when the test says."""

    def __init__(self):
        self.started, self.ended = [], {}

    def available(self):
        return True

    def start(self, spec):
        self.started.append(spec)
        return f"h-{spec.job}-{spec.attempt}"

    def runs(self):
        return [RunState(s.job, s.attempt, f"h-{s.job}-{s.attempt}", EXITED if s.job in self.ended else ACTIVE,
                         self.ended.get(s.job)) for s in self.started]

    def resume_created(self, handle):
        raise AssertionError("nothing is left created here")

    def stop(self, handle, grace_seconds):
        pass

    def console_tail(self, handle, lines):
        return "error: it broke\n"

    def remove(self, handle):
        self.started = [s for s in self.started if f"h-{s.job}-{s.attempt}" != handle]

    def watch(self, on_change):
        pass

    def close(self):
        pass


def test_fifo_over_slots_with_a_limit_per_tenant(tmp_path):
    store, layout = Store(tmp_path / "service.db"), Layout(tmp_path)
    for tenant in ("t-a", "t-b"):
        store.add_tenant(tenant, tenant, "h")
        store.give_uid(tenant, 200000, 200009)
    launcher = _MemoryLauncher()
    scheduler = Scheduler(store, launcher, layout, Options(root=tmp_path, image="i", slots=cpu_slots(2),
                                                           tenant_limit=1))
    submitted = [store.submit(t, "fr", None, {}, None, None, "", lambda j: None)[0].id
                 for t in ("t-a", "t-a", "t-b", "t-a")]
    scheduler.step()
    # Two slots: a's first and b's first; a's second waits for a's limit, not for the slots.
    assert [s.job for s in launcher.started] == [submitted[0], submitted[2]]
    assert [s.user for s in launcher.started] == ["200000:200000", "200001:200001"]  # each tenant its own uid
    launcher.ended[submitted[0]] = 0
    launcher.ended[submitted[2]] = 3
    scheduler.step()
    assert store.job(submitted[0]).state == SUCCEEDED and store.job(submitted[2]).state == FAILED
    assert store.job(submitted[2]).cause == "it broke"  # no stage log: the error dstrain printed
    assert [s.job for s in launcher.started] == [submitted[1]] and store.job(submitted[3]).state == QUEUED
