"""A damaged archive, or a worker that dies, fails the stage at once: never a hang (issue 18, class 1).

Every exception the package defines survives pickling, found by introspection so that a new one cannot
slip by; the pool that every parallel job runs on (pipeline/workers.py) fails, instead of waiting forever,
when a worker is killed, crashes, or sends back what cannot be unpickled; and a real truncated Common Voice
archive imported with --workers 2 gets its message, is marked damaged, and the rerun says so at once.
"""
import ctypes
import importlib
import inspect
import os
import pickle
import pkgutil
import signal
import subprocess
import time
import typing
import zipfile
from pathlib import Path

import pytest

import dstrain.importers
import dstrain.languages
import dstrain.pipeline
import dstrain.service
from dstrain.pipeline.deepspeech.trainer import Outcome
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.sources import sniff
from dstrain.pipeline.sources.archive import CorruptArchive, extract
from dstrain.pipeline.workers import ordered
from tests.conftest import DSTRAIN, clean_env, sha256, write_config
from tests.fixtures.hostile import RELEASE, good_rows, hostile_cv, mp3, overlapping_zip

NAME = f"{RELEASE}-fr.tar.gz"


#: Run by the trainer's Python, with its own packages: it imports nothing of dstrain, and dstrain nothing of it.
TRAINER_SIDE = {"dstrain.pipeline.deepspeech.memmapped"}


def defined_exceptions():
    """Every exception class defined in a module of dstrain's packages."""
    found = {}
    for package in (dstrain.pipeline, dstrain.importers, dstrain.languages, dstrain.service):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name in TRAINER_SIDE:
                continue
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == module.__name__:
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


#: Values for the parameters of exception classes, by their annotation.
SAMPLES = {str: "what went wrong", Path: Path("/data/sources/x.tar.gz"), int: 3, float: 1.5,
           Outcome: Outcome(1, True, ["last line"]),
           typing.List[typing.Dict[str, typing.Any]]: [{"loc": ["body", "x"], "msg": "bad", "type": "value_error"}]}


def sample(kind):
    hints = typing.get_type_hints(kind.__init__) if kind.__init__ is not BaseException.__init__ else {}
    args = []
    for name, parameter in inspect.signature(kind.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        hint = hints.get(name, str)
        if typing.get_origin(hint) is typing.Union:  # Optional[X]
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        assert hint in SAMPLES, f"{kind.__qualname__}({name}: {hint}): add a sample value to SAMPLES"
        args.append(SAMPLES[hint])
    return kind(*args) if args else kind("what went wrong", "and more")


def test_the_search_finds_the_exceptions_that_cross_processes():
    found = defined_exceptions()
    for name in ("dstrain.pipeline.sources.archive.CorruptArchive", "dstrain.pipeline.sources.fetch.SourceError",
                 "dstrain.pipeline.deepspeech.trainer.Failed", "dstrain.pipeline.formats.audio._Refused"):
        assert name in found


@pytest.mark.parametrize("name, kind", sorted(defined_exceptions().items()))
def test_every_exception_of_the_package_survives_pickling(name, kind):
    error = sample(kind)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is kind and str(again) == str(error) and again.args == error.args
    assert vars(again) == vars(error)
    if isinstance(error, OSError):  # its errno and strerror live outside vars()
        assert (again.errno, again.strerror, again.filename) == (error.errno, error.strerror, error.filename)


# -- the pool -------------------------------------------------------------------------------------------

def _kill_self(job):
    if job == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return job


def _crash(job):
    if job == 3:
        ctypes.string_at(0)  # a segfault, as in a decoder's C code
    return job


def _unpicklable_result(job):
    return (lambda: job) if job == 3 else job


class _BadOnLoad:
    """Pickles, then fails to unpickle: as CorruptArchive did when it crossed back from a worker."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return _BadOnLoad._refuse, (self.value,)

    @staticmethod
    def _refuse(value):
        raise TypeError(f"cannot rebuild {value}")


def _result_failing_to_load(job):
    return _BadOnLoad(job) if job == 3 else job


@pytest.mark.parametrize("work", [_kill_self, _crash])
def test_a_worker_that_dies_fails_the_work_with_a_message(work):
    started = time.monotonic()
    with pytest.raises(StageError, match="a worker process ended before finishing its work"):
        list(ordered(work, range(20), workers=2, window=4))
    assert time.monotonic() - started < 30


def test_a_result_that_cannot_be_pickled_fails_the_work():
    with pytest.raises(Exception, match="pickle"):
        list(ordered(_unpicklable_result, range(20), workers=2, window=4))


def test_a_result_that_cannot_be_unpickled_fails_the_work():
    with pytest.raises(StageError, match="a worker process ended before finishing its work"):
        list(ordered(_result_failing_to_load, range(20), workers=2, window=4))


def test_an_error_reading_the_jobs_is_raised_as_it_is_and_the_workers_stop():
    def jobs():
        yield from range(5)
        raise ValueError("the archive ends here")

    before = set(_children())
    with pytest.raises(ValueError, match="the archive ends here"):
        list(ordered(abs, jobs(), workers=2, window=4))
    assert set(_children()) <= before


def test_results_come_in_order_with_bounded_work_in_flight():
    taken = []

    def jobs():
        for n in range(200):
            taken.append(n)
            yield n

    results = ordered(abs, jobs(), workers=2, window=3, chunk=2)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(taken) <= 5 + 3 * 2 + 2  # what was given back, the window, and one chunk being made
    assert list(results) == list(range(5, 200))


def _children():
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            yield int(stat.parent.name)


# -- a real truncated archive, --workers 2 ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cut_archive(tmp_path_factory) -> Path:
    """A Common Voice release with its TSVs first, as real ones, cut short among its clips."""
    out = tmp_path_factory.mktemp("cut")
    clips, rows = good_rows()
    for n in range(12):
        clips[f"more_{n}.mp3"] = mp3(f"Phrase numéro {n}.")
        rows["train"].append((f"more_{n}.mp3", f"Phrase numéro {n}."))
    archive = hostile_cv(out, clips, rows)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 9 // 10])
    return archive


def _run(config, timeout=120):
    return subprocess.run([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--to", "import", "--workers", "2"],
                          capture_output=True, text=True, env=clean_env(), timeout=timeout)


def test_a_truncated_archive_imported_by_two_workers_fails_at_once_and_is_marked_damaged(cut_archive, tmp_path):
    """Pinned by its sha256, the cut archive is not read to its end at download: the import finds the damage
    while its two workers convert the clips read so far, says so, and marks it, so the rerun says it at once."""
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    placed = sources / NAME
    placed.write_bytes(cut_archive.read_bytes())
    config = write_config(tmp_path / "c.toml", tmp_path / "data", sha256(cut_archive))
    first = _run(config)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    assert f"stage import failed: {placed} is truncated or corrupt" in first.stderr
    assert f"rm {placed}" in first.stderr
    assert "damaged" in (sources / (NAME + ".verified.json")).read_text()
    again = _run(config, timeout=60)
    assert again.returncode == 1 and "stage download failed" in again.stderr
    assert "no address to download it from" in again.stderr and f"rm {placed}" in again.stderr


def test_a_worker_killed_during_an_import_fails_the_stage(tmp_path):
    """The out-of-memory killer picks a worker: the import stops with a message, and the rerun finishes it."""
    clips, rows = good_rows()
    speech = mp3("Une phrase assez longue pour occuper un peu les deux processus de conversion.")
    for n in range(300):
        clips[f"many_{n}.mp3"] = speech
        rows["train"].append((f"many_{n}.mp3", "Une phrase assez longue pour occuper un peu les deux processus."))
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    archive = hostile_cv(sources, clips, rows)
    config = write_config(tmp_path / "c.toml", tmp_path / "data", sha256(archive))
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--to", "import", "--workers",
                             "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        victim = _worker_of(proc)
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "a worker process ended before finishing its work" in err, err
    assert _run(config).returncode == 0


def _worker_of(proc: subprocess.Popen) -> int:
    """A pool worker of ``proc``, once it has its two: forked children with its command line that stay so (a
    child about to run another program has it for an instant too)."""
    deadline = time.monotonic() + 60
    seen = set()
    while time.monotonic() < deadline and proc.poll() is None:
        command = Path(f"/proc/{proc.pid}/cmdline").read_bytes()  # once it runs dstrain
        now = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                same = (stat.parent / "cmdline").read_bytes() == command
            except OSError:
                continue
            if fields[1] == str(proc.pid) and same:
                now.add(int(stat.parent.name))
        if len(now & seen) >= 2:
            return min(now & seen)
        seen = now
        time.sleep(0.2)
    raise AssertionError(f"no worker seen: {proc.communicate()}")


# -- a zip whose members share their bytes: read in full, it would take hours ---------------------------------

def test_a_zip_of_overlapping_members_is_refused_before_any_is_read(tmp_path):
    """2,000 members sharing 10 MB of zeros: 20 GB to inflate.  Verification and extraction refuse it at once,
    as damage; an ordinary zip with a member stored twice under two names still reads."""
    bomb = overlapping_zip(tmp_path / "bomb.zip", copies=2000, size=10 << 20)
    assert bomb.stat().st_size < 300_000
    started = time.monotonic()
    verdict = sniff.check(bomb, hashing=True)
    assert verdict.damaged and "overlaps the next one" in verdict.damaged and "zip bomb" in verdict.damaged
    with pytest.raises(CorruptArchive, match="overlaps the next one"):
        extract(bomb, tmp_path / "out", "id")
    assert time.monotonic() - started < 10
    assert not (tmp_path / "out" / ".extracted.json").exists()
    fine = tmp_path / "fine.zip"
    with zipfile.ZipFile(fine, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for name in ("a/x.ogg", "b/x.ogg"):
            zip_file.writestr(name, bytes(1 << 20))
    assert sniff.check(fine).problem is None
    assert (extract(fine, tmp_path / "fine", "id") / "b" / "x.ogg").stat().st_size == 1 << 20
