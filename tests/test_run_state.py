"""The one reader of a run's records (pipeline/run_state.py): what a run did, never read from a log line."""
import json
import signal
import subprocess
import threading
from pathlib import Path

from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.run_state import RunRecords, local
from dstrain.pipeline.stages import STAGE_NAMES
from tests.conftest import DSTRAIN, clean_env, dstrain, sha256, write_config

SECRET = "s3cr3t-t0ken-value"


def snapshot(run: Path) -> dict:
    """Every file of the run, by its path relative to the run directory, as bytes."""
    return {path.relative_to(run).as_posix(): path.read_bytes() for path in run.rglob("*") if path.is_file()}


def test_a_failed_stage_leaves_why_in_a_record_that_status_and_any_reader_read(served, tmp_path):
    server, archive = served
    data = tmp_path / "data"
    gone = f"{server.url}/gone/{archive.name}?token={SECRET}"
    config = write_config(tmp_path / "c.toml", data, sha256(archive), gone)
    failed = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert failed.returncode == 1 and "stage download failed" in failed.stderr

    run = data / "runs" / "fr"
    record = json.loads((run / "state" / "download.failed.json").read_text())
    assert record["stage"] == "download" and "answered HTTP 404" in record["cause"]
    assert record["resume"] == f"dstrain run -l fr --config {config} --to download"
    assert SECRET not in (run / "state" / "download.failed.json").read_text() and "<redacted>" in record["cause"]

    status = dstrain("status", "-l", "fr", "--config", config).stdout
    assert f"last error, {record['failed']}: stage download failed: " in status
    assert f"resume with:\n    dstrain run -l fr --config {config} --to download" in status

    # The service's way: the same answers from a reader it gives, which here serves a copy held in memory.
    files, asked = snapshot(run), []

    def read(relative: str):
        asked.append(relative)
        return files.get(relative)

    paths = DataRoot(data, "fr", "fr")
    remote = RunRecords(paths, read).last_error(STAGE_NAMES)
    assert remote == RunRecords(paths).last_error(STAGE_NAMES) and remote.cause == record["cause"]
    assert RunRecords(paths, read).done(STAGE_NAMES) == ["check"]
    assert asked and all(not Path(p).is_absolute() and ".." not in Path(p).parts for p in asked)

    # Once the stage finishes, its failure is history: no record, nothing in status.
    write_config(config, data, sha256(archive), f"{server.url}/{archive.name}")
    dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert not (run / "state" / "download.failed.json").exists()
    assert RunRecords(paths).last_error(STAGE_NAMES) is None
    assert "last error" not in dstrain("status", "-l", "fr", "--config", config).stdout


def test_an_interrupted_stage_is_recorded_as_interrupted(served, tmp_path):
    """SIGTERM (docker stop, a cancelled job) during a stage: the record says so, and names the command that
    resumes."""
    server, archive = served
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, sha256(archive), f"{server.url}/{archive.name}")
    # The server holds the download in flight, so the run is inside the download stage when it is stopped.
    path = "/" + archive.name
    server.held[path], server.arrived[path] = threading.Event(), threading.Event()
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--to", "download"],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.arrived[path].wait(120), proc.stderr
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        server.held[path].set()
    assert proc.returncode == 143 and "stage download failed: interrupted" in err  # 128 + SIGTERM
    failure = RunRecords(DataRoot(data, "fr", "fr")).last_error(STAGE_NAMES)
    assert failure.stage == "download" and failure.interrupted
    assert failure.resume == f"dstrain run -l fr --config {config} --to download"


def test_records_that_are_not_what_they_should_be_count_as_absent(tmp_path):
    """A job writes its own records, so the service reads what an attacker may have written: nothing breaks."""
    paths = DataRoot(tmp_path, "r", "fr")
    hostile = {
        "state/check.json": b"\xff\xfe not utf-8",
        "state/download.json": b"[1, 2, 3]",
        "state/import.failed.json": json.dumps({"cause": ["not", "text"]}).encode(),
        "state/clean.failed.json": json.dumps({"cause": "disk full", "time": "soon"}).encode(),
        "checkpoints/dstrain-progress.json": json.dumps({
            "epochs_done": "lots", "epochs": {"no": "list"}, "best": 5, "stopped_early": "yes",
            "invocations": [{"outcome": "running", "pid": -1, "host": "elsewhere"}]}).encode(),
        "config.json": json.dumps({"train.epochs": 7}).encode(),
        "reports/metrics.json": json.dumps({"test": "passed"}).encode(),
    }
    records = RunRecords(paths, hostile.get)
    assert records.done(STAGE_NAMES) == []
    failure = records.last_error(STAGE_NAMES)
    assert (failure.stage, failure.cause, failure.time) == ("clean", "disk full", 0.0)
    training = records.training()
    assert (training.epochs_done, training.best, training.last_epoch, training.stopped_early) == (0, None, {}, False)
    assert training.invocations == 1 and training.state("pending", 10) == "interrupted"
    assert records.setting("train.epochs") is None and records.test() == {}


def test_the_local_reader_reads_only_regular_files_of_the_run(tmp_path):
    run = tmp_path / "runs" / "r"
    (run / "state").mkdir(parents=True)
    (run / "state" / "check.json").write_text('{"stage": "check"}')
    read = local(run)
    assert read("state/check.json") == b'{"stage": "check"}'
    assert read("state") is None and read("state/missing.json") is None
    assert RunRecords(DataRoot(tmp_path, "r", "fr")).record("check") == {"stage": "check"}
