"""A run started from the library, as a service will start one: no CLI, and two at once in one process."""
import threading

from dstrain.pipeline.config import resolve
from dstrain.pipeline.runner import start_run
from dstrain.pipeline.stages import check


def test_two_runs_in_one_process_keep_their_logs_apart(tmp_path, monkeypatch):
    both_inside = threading.Barrier(2, timeout=60)

    def decoder_report():
        both_inside.wait()  # both runs are now inside their check stage, both log files open
        return True, "a decoder (test)"

    monkeypatch.setattr(check, "decoder_report", decoder_report)
    roots = {name: tmp_path / name for name in ("one", "two")}
    configs = {name: resolve(environ={}, flags={"language": "fr", "data_root": str(root), "run": name})
               for name, root in roots.items()}
    failures = []

    def run(name):
        try:
            start_run(configs[name], only="check")
        except Exception as exc:  # shown by the assertion below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for name, root in roots.items():
        other = roots["two" if name == "one" else "one"]
        run_dir = root / "runs" / name
        text = (run_dir / "logs" / "check.log").read_text(encoding="utf-8")
        assert text.count("▶ check") == 1 and f"data root {root}: writable" in text
        assert "audio decoding: a decoder (test)" in text
        assert str(other) not in text
        assert (run_dir / "state" / "check.json").is_file() and (run_dir / "config.json").is_file()


def test_a_stage_log_that_cannot_be_written_loses_its_lines_without_a_traceback(tmp_path, capfd):
    """A full disk under the stage log (here /dev/full, where every write fails with ENOSPC, as on a full disk):
    logging's own traceback for each line would bury what the run says."""
    root = tmp_path / "data"
    logs = root / "runs" / "fr" / "logs"
    logs.mkdir(parents=True)
    (logs / "check.log").symlink_to("/dev/full")
    start_run(resolve(environ={}, flags={"language": "fr", "data_root": str(root)}), only="check")
    err = capfd.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, err
    assert (root / "runs" / "fr" / "state" / "check.json").exists()
