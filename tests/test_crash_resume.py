"""A run killed with SIGKILL in the middle of import ends, once rerun, exactly like an uninterrupted one."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DSTRAIN, clean_env, dstrain, write_config
from tests.fixtures.common_voice import build_common_voice

OUTPUTS = ("imported/fr/common_voice/train.csv", "imported/fr/common_voice/dev.csv",
           "imported/fr/common_voice/test.csv", "imported/fr/common_voice/rejects.csv",
           "imported/fr/common_voice/manifest.json", "runs/fr/clean/train.csv", "runs/fr/clean/dev.csv",
           "runs/fr/clean/test.csv", "runs/fr/clean/quarantine.csv", "runs/fr/clean/report.md",
           "runs/fr/alphabet.txt")


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    return build_common_voice(tmp_path_factory.mktemp("cv-big"), extra_clips=150)


def prepared(root: Path, archive: Path):
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(archive, data / "sources" / archive.name)
    return data, write_config(root / "dstrain.toml", data)


def snapshot(data: Path):
    files = {name: (data / name).read_bytes() for name in OUTPUTS}
    clips = data / "imported/fr/common_voice/clips"
    files.update({"clips/" + p.name: p.read_bytes() for p in sorted(clips.iterdir())})
    return files


def wait_for_clips(proc: subprocess.Popen, clips: Path, count: int) -> None:
    """Until the import under way has converted ``count`` clips (or ended)."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if clips.is_dir() and sum(name.endswith(".wav") for name in os.listdir(str(clips))) >= count:
            return
        time.sleep(0.002)


def test_sigkill_during_import_then_rerun_matches_an_uninterrupted_run(big_archive, tmp_path):
    reference, ref_config = prepared(tmp_path / "reference", big_archive)
    dstrain("run", "-l", "fr", "--config", ref_config, "--workers", "1", "--to", "alphabet")

    data, config = prepared(tmp_path / "crashed", big_archive)
    clips = data / "imported/fr/common_voice/clips"
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--workers", "1",
                             "--to", "alphabet"], env=clean_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_clips(proc, clips, 20)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    converted = len(list(clips.glob("*.wav")))
    assert 20 <= converted < 150, "the kill did not land in the middle of the conversion"
    assert not (data / "runs/fr/state/import.json").exists()
    assert not (data / "imported/fr/common_voice/import.done.json").exists()
    assert not (data / "imported/fr/common_voice/train.csv").exists()

    rerun = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    assert "✓ download  up to date" in rerun.stderr
    assert snapshot(data) == snapshot(reference)
    assert not list(clips.glob("*.part"))

    again = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    assert "▶ import" not in again.stderr and "▶ clean" not in again.stderr
    assert snapshot(data) == snapshot(reference)


def test_sigterm_during_import_stops_the_workers_and_says_how_to_resume(big_archive, tmp_path):
    """As `docker compose stop` does: SIGTERM to dstrain alone (the init passes it on), with the import's pool busy."""
    data, config = prepared(tmp_path, big_archive)
    clips = data / "imported/fr/common_voice/clips"
    proc = subprocess.Popen([DSTRAIN, "run", "-l", "fr", "--config", str(config), "--workers", "2",
                             "--to", "alphabet"], env=clean_env(), start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_clips(proc, clips, 20)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)  # a worker that ignored its pool's SIGTERM would hang here
    assert proc.returncode == 128 + signal.SIGTERM  # stopped from outside, as a killed process says it
    assert "stage import failed: interrupted" in stderr and "resume with:" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], "workers outlived the run"

    rerun = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet")
    assert "✓ download  up to date" in rerun.stderr and (data / "runs/fr/alphabet.txt").exists()

