"""clips.format = "sdb": the sets as DeepSpeech 0.9.3 sample databases, read back by DeepSpeech's own reader.

The same Common Voice release is imported as WAVs and as databases, so every sample can be compared with
its WAV; duplicate rows, the other format's files and what an import extracted do not stay.  An import
killed with SIGKILL and run again writes the same bytes in either format: test_crash_resume.py.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dstrain.pipeline.formats import payload
from dstrain.pipeline.formats.sdb import SdbReader
from dstrain.pipeline.paths import SPLITS
from tests.conftest import dstrain, need_real, write_config
from tests.fixtures.common_voice import build_common_voice
from tests.fixtures.mls import build_mls
from tests.fixtures.outputs import read_csv, sha256
from tests.fixtures.speech import Row

#: Reads databases with DeepSpeech's own reader, as its trainer does: (file, sample id, duration, transcript,
#: seconds of PCM once decoded).
DEEPSPEECH_READS = """
import json, sys
from deepspeech_training.util.audio import AUDIO_TYPE_PCM
from deepspeech_training.util.sample_collections import SDB
for path in sys.argv[1:]:
    for sample in SDB(path):
        duration = sample.duration
        sample.change_audio_type(AUDIO_TYPE_PCM)
        print(json.dumps([path, sample.sample_id, duration, sample.transcript, len(sample.audio) / 32000]))
"""


def imported(cv_archive, root: Path, clips: str, audio: str = "opus", to: str = "import", complexity: str = "") -> Path:
    """The release imported (and cleaned, ``to``) under ``root`` with these clips settings; ``complexity`` is
    clips.opus_complexity, "" for the default."""
    data = root / "data"
    (data / "sources").mkdir(parents=True, exist_ok=True)
    shutil.copy(str(cv_archive), str(data / "sources" / cv_archive.name))
    config = write_config(root / "dstrain.toml", data, clips=clips)
    settings = [f'clips.format = "{clips}"', f'clips.sdb_audio = "{audio}"']
    settings += [f"clips.opus_complexity = {complexity}"] if complexity else []
    config.write_text(config.read_text().replace(f'clips.format = "{clips}"', "\n".join(settings)))
    dstrain("run", "-l", "fr", "--config", config, "--to", to)
    return data / "imported" / "fr" / "common_voice"


@pytest.fixture(scope="module")
def both(cv_archive, tmp_path_factory):
    """The release imported and cleaned as WAVs, as Opus databases (at libopus's default complexity, and at its
    fastest, 0) and as WAV databases."""
    found = {kind: imported(cv_archive, tmp_path_factory.mktemp(kind), *kind.split("-"), to="clean")
             for kind in ("wav", "sdb-opus", "sdb-wav")}
    found["sdb-opus-0"] = imported(cv_archive, tmp_path_factory.mktemp("sdb-opus-0"), "sdb", "opus", "clean", "0")
    return found


@pytest.mark.deepspeech
@pytest.mark.parametrize("kind", ["sdb-opus", "sdb-wav", "sdb-opus-0"])
def test_deepspeech_reads_every_sample_with_its_wavs_duration_and_transcript(both, kind):
    python = os.environ.get("TRAINER_PYTHON", "")
    need_real(bool(python) and Path(python).exists(), "set TRAINER_PYTHON (tests/trainer_env.sh)")
    wav_import, sdb_import = both["wav"], both[kind]
    run = sdb_import.parents[2] / "runs" / "fr" / "clean"
    databases = [sdb_import / f"{s}.sdb" for s in SPLITS] + [run / f"{s}.sdb" for s in SPLITS]
    proc = subprocess.run([python, "-c", DEEPSPEECH_READS, *map(str, databases)], capture_output=True, text=True,
                          timeout=600, check=True)
    read = [json.loads(line) for line in proc.stdout.splitlines()]
    wav_seconds = {row["transcript"]: (int(row["wav_filesize"]) - 44) / 32000
                   for split in SPLITS for row in read_csv(wav_import / f"{split}.csv")}
    for database in databases:
        samples = [r for r in read if r[0] == str(database)]
        listing = read_csv(database.with_name(database.name + ".csv"))
        assert [s[3] for s in samples] == [row["transcript"] for row in listing]
        assert [s[1] for s in samples] == [f"{database}:{n}" for n in range(len(listing))]
        durations = [s[2] for s in samples]
        assert durations == sorted(durations), "DeepSpeech reads a database in order: shortest first"
        for _, _, duration, transcript, decoded in samples:
            assert duration == pytest.approx(wav_seconds[transcript], abs=1 / 16000)
            assert decoded == pytest.approx(duration, abs=1 / 16000)
    imported_sets = {s: [r[3] for r in read if r[0] == str(sdb_import / f"{s}.sdb")] for s in SPLITS}
    assert {s: sorted(t) for s, t in imported_sets.items()} == {
        s: sorted(row["transcript"] for row in read_csv(wav_import / f"{s}.csv")) for s in SPLITS}


def test_a_database_holds_what_the_wavs_hold_and_opus_takes_a_quarter_of_the_bytes_or_less(both):
    wav_bytes = sum(p.stat().st_size for p in (both["wav"] / "clips").glob("*.wav"))
    opus_bytes = sum((both["sdb-opus"] / f"{s}.sdb").stat().st_size for s in SPLITS)
    assert opus_bytes * 4 <= wav_bytes, (opus_bytes, wav_bytes)
    for split in SPLITS:
        by_name = {Path(row["wav_filename"]).name: row for row in read_csv(both["wav"] / f"{split}.csv")}
        with SdbReader(both["sdb-wav"] / f"{split}.sdb") as database:
            for number, row in enumerate(read_csv(both["sdb-wav"] / f"{split}.sdb.csv")):
                data, transcript = database.read(number)
                wav = both["wav"] / "clips" / row["wav_filename"]
                assert (data, transcript) == (wav.read_bytes(), by_name[wav.name]["transcript"])
                assert int(row["wav_filesize"]) == wav.stat().st_size


def test_a_lower_opus_complexity_writes_other_bytes_for_the_same_samples(both):
    for split in SPLITS:
        default, fastest = both["sdb-opus"] / f"{split}.sdb", both["sdb-opus-0"] / f"{split}.sdb"
        assert read_csv(fastest.with_name(fastest.name + ".csv")) == read_csv(default.with_name(default.name + ".csv"))
        with SdbReader(default) as first, SdbReader(fastest) as second:
            assert len(first) == len(second)
            pairs = [(first.read(n), second.read(n)) for n in range(len(first))]
        assert all(a[1] == b[1] and payload.seconds(a[0], "opus") == payload.seconds(b[0], "opus") for a, b in pairs)
        assert sum(a[0] != b[0] for a, b in pairs) == len(pairs) > 0, "every sample is encoded otherwise"


def test_only_the_sets_stay_no_file_per_clip_no_spool(both):
    for kind in ("sdb-opus", "sdb-wav"):
        assert sorted(p.name for p in both[kind].iterdir()) == [
            "dev.sdb", "dev.sdb.csv", "import.done.json", "manifest.json", "rejects.csv", "test.sdb", "test.sdb.csv",
            "train.sdb", "train.sdb.csv"]
        assert read_csv(both[kind] / "rejects.csv") == read_csv(both["wav"] / "rejects.csv")


def test_clean_quarantines_a_damaged_sample_and_a_listing_that_lies(cv_archive, tmp_path):
    sdb = imported(cv_archive, tmp_path, "sdb")
    rows = read_csv(sdb / "train.sdb.csv")
    # The first sample's Opus header claims twice its length (truncated), the second is listed with another size.
    with SdbReader(sdb / "train.sdb") as database:
        at = database.offset(0) + 8  # past the entry's length and the payload's
    data = bytearray((sdb / "train.sdb").read_bytes())
    data[at:at + 4] = (2 * int.from_bytes(data[at:at + 4], "big")).to_bytes(4, "big")
    (sdb / "train.sdb").write_bytes(bytes(data))
    rows[1]["wav_filesize"] = str(int(rows[1]["wav_filesize"]) + 2)
    lines = ["wav_filename,wav_filesize,transcript"] + [",".join(r.values()) for r in rows]
    (sdb / "train.sdb.csv").write_text("\n".join(lines) + "\n")
    dstrain("run", "-l", "fr", "--config", tmp_path / "dstrain.toml", "--only", "clean")
    quarantine = {q["source"]: q for q in read_csv(tmp_path / "data/runs/fr/clean/quarantine.csv")}
    first, second = (quarantine["common_voice/" + rows[n]["wav_filename"]] for n in (0, 1))
    assert first["reason"] == second["reason"] == "bad_audio"
    assert "truncated" in first["detail"] and "its listing says" in second["detail"]


def test_duplicate_rows_of_one_clip_are_rejected_at_import(tmp_path):
    """A clip listed again with the same sentence and split is kept once; one listed in another split is kept
    nowhere (which split its speaker belongs to cannot be told)."""
    rows = [Row("train", "once.mp3", "Le chat dort."), Row("train", "twice.mp3", "Il pleut."),
            Row("train", "twice.mp3", "Il pleut."), Row("train", "split.mp3", "Il neige."),
            Row("test", "split.mp3", "Il neige."), Row("dev", "dev.mp3", "La mer est calme.")]
    archive = build_common_voice(tmp_path, rows=rows)
    sdb = imported(archive, tmp_path / "root", "sdb")
    assert sorted(r["transcript"] for r in read_csv(sdb / "train.sdb.csv")) == ["il pleut", "le chat dort"]
    assert read_csv(sdb / "test.sdb.csv") == []
    duplicates = [(r["split"], r["source"], r["detail"]) for r in read_csv(sdb / "rejects.csv")
                  if r["reason"] == "duplicate"]
    elsewhere = "this clip is listed elsewhere with another sentence or split: "
    assert duplicates == [("train", "train.tsv:4 twice.mp3", "listed again: train.tsv:3 twice.mp3"),
                          ("train", "train.tsv:5 split.mp3", elsewhere + "test.tsv:2 split.mp3"),
                          ("test", "test.tsv:2 split.mp3", elsewhere + "train.tsv:5 split.mp3")]


def test_switching_the_format_imports_again_and_leaves_nothing_of_the_other(cv_archive, tmp_path):
    imported(cv_archive, tmp_path, "wav")
    sdb = imported(cv_archive, tmp_path, "sdb")
    assert not (sdb / "clips").exists() and not any((sdb / f"{s}.csv").exists() for s in SPLITS)
    default = sha256(sdb / "train.sdb")
    assert sha256(imported(cv_archive, tmp_path, "sdb", complexity="0") / "train.sdb") != default
    wav = imported(cv_archive, tmp_path, "wav")
    assert not list(wav.glob("*.sdb*")) and (wav / "clips").is_dir() and (wav / "train.csv").exists()


@pytest.mark.parametrize("keep", [False, True])
def test_what_an_import_extracted_goes_once_it_is_recorded_unless_kept(tmp_path, keep):
    archive = build_mls(tmp_path)
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(str(archive), str(data / "sources" / archive.name))
    config = tmp_path / "dstrain.toml"
    config.write_text(f'data_root = "{data}"\nworkers = 2\ndatasets = ["mls"]\nclips.format = "sdb"\n'
                      f"clips.keep_extracted = {str(keep).lower()}\n"
                      f'[dataset.mls]\nsha256 = "{sha256(archive)}"\nmax_duration = 8.0\n')
    proc = dstrain("run", "-l", "de", "--config", config, "--to", "import")
    out = data / "imported" / "de" / "mls"
    assert (out / "extracted").exists() == keep
    assert ("removing" in proc.stderr) != keep
    assert (out / "train.sdb").exists() and not (out / "spool").exists()
    with SdbReader(out / "train.sdb") as database:
        assert database.audio == "opus" and len(database) == len(read_csv(out / "train.sdb.csv")) > 0
        assert payload.seconds(database.read(0)[0], "opus") > 0
