"""clean validates every row it merges; extraction never writes outside its directory."""
import csv
import gc
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.sources.archive import extract, tar_members
from tests.conftest import dstrain, write_config


def rows(path: Path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_clean_quarantines_bad_wavs_duplicates_and_foreign_characters(cv_archive, tmp_path):
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(cv_archive, data / "sources" / cv_archive.name)
    config = write_config(tmp_path / "c.toml", data)
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")

    imported = data / "imported/fr/common_voice"
    train = rows(imported / "train.csv")
    clips = imported / "clips"
    # A WAV cut short, one at the wrong rate, one deleted, a listed twice, and an impossible character.
    truncated, wrong_rate, deleted, twice, odd = train[0], train[1], train[2], train[3], train[4]
    wav = clips / Path(truncated["wav_filename"]).name
    wav.write_bytes(wav.read_bytes()[: wav.stat().st_size // 2])
    truncated["wav_filesize"] = str(wav.stat().st_size)
    rate = clips / Path(wrong_rate["wav_filename"]).name
    subprocess.run(["sox", str(rate), "-r", "8000", str(tmp_path / "8k.wav")], check=True)
    shutil.move(str(tmp_path / "8k.wav"), str(rate))
    (clips / Path(deleted["wav_filename"]).name).unlink()
    odd["transcript"] = "un ñ étrange"
    with (imported / "train.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["wav_filename", "wav_filesize", "transcript"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(train + [dict(twice)])

    dstrain("run", "-l", "fr", "--config", config, "--only", "clean", "--force", "clean")
    quarantine = {(Path(q["source"]).name, q["reason"]): q["detail"]
                  for q in rows(data / "runs/fr/clean/quarantine.csv")}
    name = lambda row: Path(row["wav_filename"]).name  # noqa: E731
    assert "truncated" in quarantine[(name(truncated), "bad_audio")]
    assert "8000 Hz" in quarantine[(name(wrong_rate), "bad_audio")]
    assert quarantine[(name(deleted), "bad_audio")] == "missing file"
    assert quarantine[(name(twice), "duplicate")] == "already in train"
    assert "ñ" in quarantine[(name(odd), "outside_alphabet")]
    kept = {Path(r["wav_filename"]).name for r in rows(data / "runs/fr/clean/train.csv")}
    assert name(twice) in kept and not {name(truncated), name(wrong_rate), name(deleted), name(odd)} & kept


def tar_with(path: Path, member: str) -> Path:
    with tarfile.open(str(path), "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"owned"))
    return path


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/absolute.txt", "ok/../../escape.txt"])
def test_extraction_refuses_paths_that_leave_the_target(tmp_path, member):
    archive = tar_with(tmp_path / "evil.tar.gz", member)
    target = tmp_path / "out" / "extracted"
    with pytest.raises(DstrainError, match="leaves the extraction directory"):
        extract(archive, target, "sha")
    assert not (tmp_path / "out" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not (target / ".extracted.json").exists()


def test_extraction_skips_links(tmp_path):
    archive = tmp_path / "links.tar"
    with tarfile.open(str(archive), "w") as tar:
        link = tarfile.TarInfo("corpus/passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    target = extract(archive, tmp_path / "out", "sha")
    assert not (target / "corpus" / "passwd").exists() and (target / ".extracted.json").exists()


def test_reading_a_tar_keeps_no_member_behind(tmp_path):
    """A Common Voice release has a million members: tarfile alone would keep every TarInfo it read."""
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(str(archive), "w:gz") as tar:
        for i in range(3000):
            info = tarfile.TarInfo(f"cv-corpus/fr/clips/clip_{i:05d}.mp3")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"mp3"))
    del tar, info  # the writer keeps its own members
    alive = None
    with tar_members(archive) as entries:
        for i, (name, kind, open_member) in enumerate(entries):
            with open_member() as member:
                assert (name, kind, member.read()) == (f"cv-corpus/fr/clips/clip_{i:05d}.mp3", "file", b"mp3")
            if i == 2500:
                gc.collect()
                alive = sum(isinstance(o, tarfile.TarInfo) for o in gc.get_objects())
    assert i == 2999 and alive is not None and alive < 10
