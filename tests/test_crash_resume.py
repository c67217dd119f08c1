"""A run killed with SIGKILL in the middle of import ends, once rerun, exactly like an uninterrupted one: with
WAV files and CSVs, and with sample databases (clips.format)."""
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DSTRAIN, clean_env, dstrain, write_config
from tests.fixtures.common_voice import build_common_voice

IMPORTED = "imported/fr/common_voice"
#: What the import, clean and alphabet write, by clips.format: each must come out byte for byte the same.
OUTPUTS = {
    clips: tuple(f"{place}/{split}{suffix}" for place in (IMPORTED, "runs/fr/clean")
                 for split in ("train", "dev", "test") for suffix in suffixes)
    + (f"{IMPORTED}/rejects.csv", f"{IMPORTED}/manifest.json", "runs/fr/clean/quarantine.csv",
       "runs/fr/clean/report.md", "runs/fr/alphabet.txt")
    for clips, suffixes in (("wav", (".csv",)), ("sdb", (".sdb", ".sdb.csv")))
}


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    return build_common_voice(tmp_path_factory.mktemp("cv-big"), extra_clips=150)


def prepared(root: Path, archive: Path, clips: str = "wav"):
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(archive, data / "sources" / archive.name)
    return data, write_config(root / "dstrain.toml", data, clips=clips)


def snapshot(data: Path, clips: str):
    files = {name: (data / name).read_bytes() for name in OUTPUTS[clips]}
    if clips == "wav":
        wavs = data / IMPORTED / "clips"
        files.update({"clips/" + p.name: p.read_bytes() for p in sorted(wavs.iterdir())})
    return files


def converted(data: Path, clips: str) -> int:
    """How many clips the import under way has converted and kept: WAV files, or clips in the sample databases'
    spool that its index has committed."""
    if clips == "wav":
        wavs = data / IMPORTED / "clips"
        return sum(name.endswith(".wav") for name in os.listdir(str(wavs))) if wavs.is_dir() else 0
    try:
        with sqlite3.connect(f"file:{data / IMPORTED / 'spool' / 'index.sqlite'}?mode=ro", uri=True,
                             timeout=0.1) as index:
            return index.execute("SELECT count(*) FROM clips").fetchone()[0]
    except sqlite3.Error:  # not there yet
        return 0


def wait_for_clips(proc: subprocess.Popen, data: Path, count: int, clips: str = "wav") -> None:
    """Until the import under way has converted ``count`` clips (or ended)."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and converted(data, clips) < count:
        time.sleep(0.002)


@pytest.mark.parametrize("clips", ["wav", "sdb"])
def test_sigkill_during_import_then_rerun_matches_an_uninterrupted_run(big_archive, tmp_path, clips):
    reference, ref_config = prepared(tmp_path / "reference", big_archive, clips)
    dstrain("run", "-l", "fr", "--config", ref_config, "--workers", "1", "--to", "alphabet")

    data, config = prepared(tmp_path / "crashed", big_archive, clips)
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--workers", "1",
                             "--to", "alphabet"], env=clean_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_clips(proc, data, 20, clips)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    kept = converted(data, clips)
    assert 20 <= kept < 150, "the kill did not land in the middle of the conversion"
    assert not (data / "runs/fr/state/import.json").exists()
    assert not (data / IMPORTED / "import.done.json").exists()
    assert not (data / IMPORTED / "train.csv").exists() and not (data / IMPORTED / "train.sdb").exists()

    rerun = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    assert "✓ download  up to date" in rerun.stderr
    if clips == "sdb":
        assert f"{kept} clips converted before the stop are kept" in rerun.stderr
    assert snapshot(data, clips) == snapshot(reference, clips)
    assert not list((data / IMPORTED).rglob("*.part")) and not (data / IMPORTED / "spool").exists()

    again = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    assert "▶ import" not in again.stderr and "▶ clean" not in again.stderr
    assert snapshot(data, clips) == snapshot(reference, clips)


def test_sigterm_during_import_stops_the_workers_and_says_how_to_resume(big_archive, tmp_path):
    """As `docker compose stop` does: SIGTERM to dstrain alone (the init passes it on), with the import's pool busy."""
    data, config = prepared(tmp_path, big_archive)
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--workers", "2",
                             "--to", "alphabet"], env=clean_env(), start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_clips(proc, data, 20)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)  # a worker that ignored its pool's SIGTERM would hang here
    assert proc.returncode == 128 + signal.SIGTERM  # stopped from outside, as a killed process says it
    assert "stage import failed: interrupted" in stderr and "resume with:" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], "workers outlived the run"

    rerun = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    assert "✓ download  up to date" in rerun.stderr and (data / "runs/fr/alphabet.txt").exists()

