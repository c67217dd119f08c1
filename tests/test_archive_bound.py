"""archives.max_expanded_bytes: one reading of an archive (an extraction, or a pass over a tar stream) stops once it
has decompressed more than the bound, with a cause that names the setting; the archive is not called damaged."""
import io
import json
import tarfile
import zipfile

import pytest

from dstrain.pipeline.sources import sniff
from dstrain.pipeline.sources.archive import ArchiveTooLarge, bounded, extract, tar_members
from tests.conftest import RELEASE, clean_env, dstrain, sha256, write_config

MB = 1 << 20


def bomb_tar(path, size=40 * MB):
    """A .tar.gz of a few kB that expands to ``size`` bytes of zeros."""
    with tarfile.open(str(path), "w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_an_extraction_past_the_bound_stops_and_writes_no_more(tmp_path):
    archive = bomb_tar(tmp_path / "bomb.tar.gz")
    assert archive.stat().st_size < 100_000
    with bounded(4 * MB), pytest.raises(ArchiveTooLarge) as caught:
        extract(archive, tmp_path / "out", "id")
    assert "archives.max_expanded_bytes" in str(caught.value) and "bomb.tar.gz" in str(caught.value)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= 4 * MB and not (tmp_path / "out" / ".extracted.json").exists()
    with bounded(64 * MB):
        extract(archive, tmp_path / "out", "id")  # within a larger bound it is whole
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == 40 * MB


def test_a_streamed_pass_and_a_zip_are_bounded_too(tmp_path):
    archive = bomb_tar(tmp_path / "bomb.tar.gz")
    with bounded(2 * MB), pytest.raises(ArchiveTooLarge):
        with tar_members(archive) as entries:
            for _, _, open_member in entries:
                with open_member() as member:
                    while member.read(MB):
                        pass
    packed = tmp_path / "bomb.zip"
    with zipfile.ZipFile(str(packed), "w", zipfile.ZIP_DEFLATED) as zip_file:
        for i in range(3):
            zip_file.writestr(f"part{i}.bin", bytes(2 * MB))
    with bounded(5 * MB), pytest.raises(ArchiveTooLarge):  # each member is under it, the three together are not
        extract(packed, tmp_path / "zip-out", "id")
    extract(packed, tmp_path / "zip-out", "id")  # no bound: `dstrain run`'s default


def test_a_run_names_the_bound_and_keeps_the_archive_usable(cv_archive, tmp_path):
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    name = f"{RELEASE}-fr.tar.gz"
    (data / "sources" / name).write_bytes(cv_archive.read_bytes())
    config = write_config(tmp_path / "c.toml", data, sha256(cv_archive))
    small = clean_env(DSTRAIN_ARCHIVES__MAX_EXPANDED_BYTES="20000")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "import", env=small, check=False)
    assert proc.returncode == 1
    assert "stage import failed" in proc.stderr and "archives.max_expanded_bytes" in proc.stderr, proc.stderr
    record = json.loads((data / "sources" / (name + ".verified.json")).read_text())
    assert "damaged" not in record  # too large for this run, not corrupt: no download anew
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")


# -- issue 18: a download that is not pinned is read to its end to be verified; that reading is bounded too ----

def test_verifying_an_archive_is_bounded_like_reading_it(tmp_path):
    archive = bomb_tar(tmp_path / "bomb.tar.gz")
    with bounded(4 * MB), pytest.raises(ArchiveTooLarge) as caught:
        sniff.check(archive, hashing=True)
    assert "bomb.tar.gz expands to more than" in str(caught.value)
    assert sniff.check(archive).problem is None  # no bound: read to its end, and whole


def test_an_unpinned_archive_past_the_bound_stops_the_download_and_is_kept_for_a_larger_bound(served, tmp_path):
    server, archive = served
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + "/" + archive.name)  # no sha256
    small = clean_env(DSTRAIN_ARCHIVES__MAX_EXPANDED_BYTES="20000")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", env=small, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stage download failed" in proc.stderr and "archives.max_expanded_bytes" in proc.stderr
    kept = data / "sources" / archive.name
    assert kept.read_bytes() == archive.read_bytes() and not (data / "sources" / (archive.name + ".part")).exists()
    assert not (data / "sources" / (archive.name + ".verified.json")).exists()
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")  # no bound: verified where it is
    assert len([r for r in server.requests if r["method"] == "GET"]) == 1
    record = json.loads((data / "sources" / (archive.name + ".verified.json")).read_text())
    assert record["sha256"] == sha256(archive)
