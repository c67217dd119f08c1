"""`dstrain run --language fr --to alphabet` on a real-format Common Voice release."""
import csv
import hashlib
import json
import shutil
import wave
from pathlib import Path

import pytest

from dstrain.languages.fr import LANGUAGE as FR
from tests.conftest import RELEASE, clean_env, dstrain, write_config
from tests.fixtures.common_voice import FR_EXPECTED_REJECTS, FR_ROWS


def read_csv(path: Path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished_run(cv_archive, tmp_path_factory):
    """One complete run to alphabet, shared by the assertions below."""
    root = tmp_path_factory.mktemp("run")
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(cv_archive, data / "sources" / cv_archive.name)
    config = write_config(root / "dstrain.toml", data)
    proc = dstrain("run", "--language", "fr", "--config", config, "--to", "alphabet")
    return data, config, proc


def test_good_rows_survive_and_bad_rows_are_rejected_for_the_right_reason(finished_run):
    data, _, _ = finished_run
    imported = data / "imported" / "fr" / "common_voice"
    kept = {}
    for split in ("train", "dev", "test"):
        for row in read_csv(imported / (split + ".csv")):
            kept[Path(row["wav_filename"]).name] = (split, row)
    rejects = {Path(r["source"].split(" ")[-1]).name: r for r in read_csv(imported / "rejects.csv")}

    good = [r for r in FR_ROWS if r.key not in FR_EXPECTED_REJECTS]
    for row in good:
        wav = row.key + ".wav"
        assert wav in kept, f"good row {row.key} was lost: {rejects.get(row.key)}"
        split, csv_row = kept[wav]
        assert split == row.split
        assert csv_row["transcript"] == FR.normalize(row.text)
        assert int(csv_row["wav_filesize"]) == (imported / csv_row["wav_filename"]).stat().st_size
    assert len(kept) == len(good)

    by_reason = {}
    for name, reject in rejects.items():
        by_reason[name] = reject["reason"]
    # The undecodable UTF-8 line has no readable clip name; it is found by its line number.
    utf8 = [r for r in read_csv(imported / "rejects.csv") if r["reason"] == "unreadable_row"]
    assert len(utf8) == 1 and "UTF-8" in utf8[0]["detail"] and utf8[0]["source"].startswith("train.tsv:")
    expected = {k: v for k, v in FR_EXPECTED_REJECTS.items() if v != "unreadable_row"}
    assert {k: by_reason.get(k) for k in expected} == expected
    assert "3 chats" in rejects["fr_bad_digits.mp3"]["detail"]


def test_unbalanced_quote_does_not_swallow_the_rows_after_it(finished_run):
    data, _, _ = finished_run
    train = read_csv(data / "imported" / "fr" / "common_voice" / "train.csv")
    transcripts = [r["transcript"] for r in train]
    assert "il a dit bonjour sans fermer les guillemets" in transcripts
    assert "le chat dort sur le canapé" in transcripts  # the row right after it


def test_wavs_are_16khz_mono_16bit_and_csv_paths_are_relative(finished_run):
    data, _, _ = finished_run
    clean = data / "runs" / "fr" / "clean"
    for split in ("train", "dev", "test"):
        for row in read_csv(clean / (split + ".csv")):
            assert not Path(row["wav_filename"]).is_absolute()
            with wave.open(str(clean / row["wav_filename"])) as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
                assert wav.getnframes() > 16000 * 0.3


def test_manifest_counts_every_reason(finished_run):
    data, _, _ = finished_run
    manifest = json.loads((data / "imported" / "fr" / "common_voice" / "manifest.json").read_text())
    assert manifest["release"] == RELEASE and manifest["licence"] == "CC0-1.0"
    assert manifest["counts"] == {"train": 10, "dev": 3, "test": 3}
    assert manifest["rejected"] == {"empty_audio": 1, "empty_label": 1, "invalid_label": 2, "missing_audio": 1,
                                    "too_long": 1, "too_short": 1, "undecodable_audio": 1, "unreadable_row": 1}
    assert manifest["source"]["sha256"] == hashlib.sha256(
        (data / "sources" / f"{RELEASE}-fr.tar.gz").read_bytes()).hexdigest()


def test_clean_keeps_dev_sentences_out_of_train(finished_run):
    data, _, _ = finished_run
    clean = data / "runs" / "fr" / "clean"
    train = {r["transcript"] for r in read_csv(clean / "train.csv")}
    dev = {r["transcript"] for r in read_csv(clean / "dev.csv")}
    assert "la lune brille" in dev and "la lune brille" not in train
    quarantine = read_csv(clean / "quarantine.csv")
    assert [(q["reason"], Path(q["source"]).name) for q in quarantine] == [
        ("shared_transcript", "fr_shared_01.mp3.wav")]
    report = (clean / "report.md").read_text()
    assert "| train | 9 |" in report and "1 sentences were found in both" in report


def test_alphabet_is_deepspeech_format_and_matches_the_transcripts(finished_run):
    data, _, _ = finished_run
    lines = (data / "runs" / "fr" / "alphabet.txt").read_text(encoding="utf-8").split("\n")
    labels = [line for line in lines if line and not line.startswith("#")]
    assert lines[-1] == "" and labels[0] == " "
    seen = set()
    for split in ("train", "dev", "test"):
        for row in read_csv(data / "runs" / "fr" / "clean" / (split + ".csv")):
            seen.update(row["transcript"])
    assert set(labels) == seen
    assert {"é", "à", "'"} <= set(labels) and len(labels) == len(set(labels))


def test_rerun_after_completion_does_no_work(finished_run):
    data, config, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file() and "logs" not in p.parts}
    proc = dstrain("run", "--language", "fr", "--config", config, "--to", "alphabet")
    for stage in ("download", "import", "clean", "alphabet"):
        assert f"✓ {stage:<9} up to date" in proc.stderr
    changed = [p.name for p, m in before.items() if p.stat().st_mtime_ns != m]
    assert changed == ["check.json"]  # the environment checks run every time; nothing else is touched


def test_force_import_imports_again(finished_run, tmp_path):
    data, _, _ = finished_run
    copy = tmp_path / "data"
    shutil.copytree(str(data), str(copy))
    config = write_config(tmp_path / "dstrain.toml", copy)
    proc = dstrain("run", "-l", "fr", "--config", config, "--only", "import", "--force", "import")
    assert "▶ import" in proc.stderr and "already imported" not in proc.stderr
    assert "common_voice: kept 10 train, 3 dev, 3 test" in proc.stderr


def test_status_and_config_describe_the_run(finished_run):
    data, config, _ = finished_run
    status = dstrain("status", "--language", "fr", "--config", config).stdout
    for stage in ("check", "download", "import", "clean", "alphabet"):
        assert any(line.split()[:2] == [stage, "done"] for line in status.splitlines()), status
    shown = dstrain("config", "--language", "fr", "--config", config, "--json").stdout
    resolved = json.loads(shown)
    assert resolved["dataset.common_voice.release"] == {"value": RELEASE, "source": "file " + str(config)}
    assert resolved["dataset.common_voice.locale"] == {"value": "fr", "source": "language fr"}
    assert resolved["language"]["source"] == "flag --language"
    written = json.loads((data / "runs" / "fr" / "config.json").read_text())
    assert written["dataset.common_voice.max_duration"]["value"] == 5.0


def test_changed_setting_redoes_only_what_depends_on_it(finished_run, tmp_path):
    data, config, _ = finished_run
    copy = tmp_path / "data"
    shutil.copytree(str(data), str(copy))
    moved = write_config(tmp_path / "dstrain.toml", copy)
    env = clean_env(DSTRAIN_CLEAN__SHARED_TRANSCRIPTS="keep")
    states = {line.split()[0]: line.split()[1]
              for line in dstrain("status", "-l", "fr", "--config", moved, env=env).stdout.splitlines()[2:]}
    assert states == {"check": "done", "download": "done", "import": "done", "clean": "stale",
                      "alphabet": "stale", "lm": "pending", "train": "pending", "optimize": "pending",
                      "evaluate": "pending", "export": "pending", "package": "pending"}
    proc = dstrain("run", "-l", "fr", "--config", moved, "--to", "alphabet", env=env)
    assert "✓ import    up to date" in proc.stderr
    assert "▶ clean" in proc.stderr and "▶ alphabet" in proc.stderr
    train = {r["transcript"] for r in read_csv(copy / "runs" / "fr" / "clean" / "train.csv")}
    assert "la lune brille" in train
