"""One run at a time per run directory, one writer at a time per shared output: real processes, real locks.

The first run is kept inside its download by the local HTTP server (which holds the response back), so the
second one really starts while the first holds its locks; no test waits for a time to pass.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading

import pytest

from dstrain.pipeline import locks
from tests.conftest import DSTRAIN, RELEASE, clean_env, dstrain, write_config

NAME = f"{RELEASE}-fr.tar.gz"
PATH = "/" + NAME


@pytest.fixture()
def held(served):
    """A server whose answer for the archive waits until the test releases it."""
    server, _ = served
    server.held[PATH] = threading.Event()
    server.arrived[PATH] = threading.Event()
    return server


def start(*args):
    return subprocess.Popen([DSTRAIN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())


def stderr_until(proc, text):
    """Read ``proc``'s stderr until a line holds ``text``; return what was read (all of it if it never came)."""
    lines, seen = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if text in line:
                seen.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen.wait(120)  # a guard against a hang, not a measure: the line comes as soon as the lock is tried
    return "".join(lines)


def finish(proc):
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def gets(server):
    return [r for r in server.requests if r["method"] == "GET" and r["path"] == PATH]


def test_two_runs_on_one_data_root_one_waits_then_finds_the_work_done(held, cv_archive, tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=held.url + PATH)
    first = start("run", "-l", "fr", "--config", config, "--to", "import")
    assert held.arrived[PATH].wait(120), first.communicate()
    second = start("run", "-l", "fr", "--config", config, "--to", "import")
    waiting = stderr_until(second, "waiting for run fr")
    assert f"it is in use by PID {first.pid} (" in waiting and "dstrain run -l fr --config" in waiting
    held.held[PATH].set()
    code, _, err = finish(first)
    assert code == 0, err
    code, _, err = finish(second)
    assert code == 0, waiting + err
    assert "up to date" in err  # the second found the first one's download and import done
    assert len(gets(held)) == 1  # one download, not two spliced into one file
    archive = data / "sources" / NAME
    assert archive.read_bytes() == cv_archive.read_bytes()
    record = json.loads((data / "sources" / (NAME + ".verified.json")).read_text())
    assert record["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    train = (data / "imported" / "fr" / "common_voice" / "train.csv").read_text()
    assert train.count("\n") > 1 and not list(data.rglob("*.part"))


def test_with_no_wait_the_second_run_refuses_and_names_the_holder(held, tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=held.url + PATH)
    first = start("run", "-l", "fr", "--config", config, "--to", "download")
    assert held.arrived[PATH].wait(120)
    refused = dstrain("run", "-l", "fr", "--config", config, "--to", "download", "--no-wait", check=False)
    assert refused.returncode == 1
    assert f"run fr ({data / 'runs' / 'fr'}) is in use by PID {first.pid} (" in refused.stderr
    assert "Traceback" not in refused.stderr
    held.held[PATH].set()
    assert finish(first)[0] == 0
    assert not (data / "runs" / "fr" / "logs").joinpath("import.log").exists()


def test_runs_sharing_sources_and_imports_wait_only_for_what_they_both_need(held, cv_archive, tmp_path):
    """Two runs (their own run directories) need the same archive and the same import: one writes each."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=held.url + PATH)
    first = start("run", "-l", "fr", "--run", "one", "--config", config, "--to", "import")
    assert held.arrived[PATH].wait(120)
    second = start("run", "-l", "fr", "--run", "two", "--config", config, "--to", "import")
    waiting = stderr_until(second, "waiting for source")
    assert str(data / "sources" / NAME) in waiting and f"PID {first.pid}" in waiting
    held.held[PATH].set()
    assert finish(first)[0] == 0
    code, _, err = finish(second)
    assert code == 0, err
    assert len(gets(held)) == 1
    assert (data / "sources" / NAME).read_bytes() == cv_archive.read_bytes()
    imported = data / "imported" / "fr" / "common_voice"
    assert json.loads((imported / "import.done.json").read_text())["counts"] == \
        json.loads((data / "runs" / "two" / "state" / "import.json").read_text())["counts"]["common_voice"]


def test_a_run_of_another_language_is_not_held_up_by_the_shared_sources(held, cv_archive, tmp_path):
    data = tmp_path / "data"
    first = start("run", "-l", "fr", "--config", write_config(tmp_path / "c.toml", data, url=held.url + PATH),
                  "--to", "download")
    assert held.arrived[PATH].wait(120)
    release = "cv-corpus-99.0-2099-01-01"  # the fixture archive's own top folder: download checks it
    other = f"{release}-eo.tar.gz"  # the test plugin language's archive
    shutil.copy(cv_archive, held.root / other)
    config = tmp_path / "eo.toml"
    config.write_text(f'data_root = "{data}"\n[dataset.common_voice]\nrelease = "{release}"\n'
                      f'url = "{held.url}/{other}"\n')
    dstrain("run", "-l", "eo", "--config", config, "--to", "download", "--no-wait")  # fr holds its own archive only
    assert (data / "sources" / other).read_bytes() == cv_archive.read_bytes()
    held.held[PATH].set()
    assert finish(first)[0] == 0


def test_a_run_killed_with_sigkill_leaves_no_lock_and_its_leftovers_are_removed(held, cv_archive, tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=held.url + PATH)
    first = start("run", "-l", "fr", "--config", config, "--to", "download")
    assert held.arrived[PATH].wait(120)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # What a writer killed in the middle of its work leaves behind (temporary_path's names).
    leftovers = [data / "runs" / "fr" / "state" / f".download.json.tmp-{first.pid}",
                 data / "runs" / "fr" / "clean" / f".train.csv.tmp-{first.pid}",
                 data / "sources" / f".{NAME}.verified.json.tmp-{first.pid}",
                 data / "imported" / "fr" / "common_voice" / f".manifest.json.tmp-{first.pid}"]
    for leftover in leftovers:
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_text("half")
    held.held[PATH].set()
    dstrain("run", "-l", "fr", "--config", config, "--to", "import", "--no-wait")  # the kernel freed the lock
    assert [p for p in leftovers if p.exists()] == []
    assert (data / "sources" / NAME).read_bytes() == cv_archive.read_bytes()


def test_a_lock_is_shared_by_readers_and_exclusive_for_a_writer(tmp_path):
    target = tmp_path / "cv.tar.gz"
    with locks.hold(target, "source cv", shared=True), locks.hold(target, "source cv", shared=True):
        with locks.waiting(False), pytest.raises(locks.Busy, match=f"source cv is in use by PID {os.getpid()} "):
            with locks.hold(target, "source cv"):
                pass
    with locks.hold(target, "source cv"):  # released with the block
        pass
