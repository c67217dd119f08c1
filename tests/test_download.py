"""Downloads over a real local HTTP server: resume, verification, placement by hand, the Data Collective."""
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from dstrain.pipeline.sources import fetch
from dstrain.pipeline.sources.ranges import OVERLAP
from tests.conftest import RELEASE, clean_env, dstrain, sha256, write_config

NAME = f"{RELEASE}-fr.tar.gz"



def gets(server):
    return [r for r in server.requests if r["method"] == "GET" and r["path"] == "/" + NAME]


def test_a_dropped_connection_is_resumed_with_range(served, tmp_path):
    server, archive = served
    size = archive.stat().st_size
    server.cut_after["/" + NAME] = size // 3
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, sha256(archive), server.url + "/" + NAME)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert "interrupted" in proc.stderr and "resuming" in proc.stderr
    requests = gets(server)
    assert len(requests) == 2 and "Range" not in requests[0]
    resumed_at = int(requests[1]["Range"][len("bytes="):-1])
    assert 0 < resumed_at <= size // 3  # from the last whole block received
    assert (data / "sources" / NAME).read_bytes() == archive.read_bytes()
    assert not (data / "sources" / (NAME + ".part")).exists()


def test_a_partial_file_from_an_earlier_run_is_resumed(served, tmp_path):
    server, archive = served
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    (data / "sources" / (NAME + ".part")).write_bytes(archive.read_bytes()[:100_000])
    config = write_config(tmp_path / "c.toml", data, sha256(archive), server.url + "/" + NAME)
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    # From 64 KiB before its end: those bytes must be the same again before anything is appended.
    assert [r.get("Range") for r in gets(server)] == [f"bytes={100_000 - OVERLAP}-"]
    assert sha256(data / "sources" / NAME) == sha256(archive)
    assert (data / "imported" / "fr" / "common_voice" / "train.csv").exists()


def test_a_partial_file_of_a_changed_source_is_not_spliced(served, tmp_path):
    server, archive = served
    size = archive.stat().st_size
    data = tmp_path / "data"
    sources = data / "sources"
    sources.mkdir(parents=True)
    url = server.url + "/" + NAME
    # A piece of an older version of the file, remembered with that version's ETag; no sha256 pinned.
    (sources / (NAME + ".part")).write_bytes(b"x" * (size // 2))
    (sources / (NAME + ".part.json")).write_text(json.dumps({url: '"etag-of-the-older-file"'}))
    config = write_config(tmp_path / "c.toml", data, url=url)
    dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    request = gets(server)[-1]
    assert request["If-Range"] == '"etag-of-the-older-file"' and request["Range"] == f"bytes={size // 2 - OVERLAP}-"
    assert sha256(sources / NAME) == sha256(archive)  # the server sent it whole; nothing was spliced
    assert not (sources / (NAME + ".part.json")).exists()


def test_a_partial_file_that_cannot_be_proven_is_started_over(served, tmp_path):
    server, archive = served
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    (sources / (NAME + ".part")).write_bytes(b"x" * 1000)  # no validator, no sha256: cannot resume safely
    config = write_config(tmp_path / "c.toml", tmp_path / "data", url=server.url + "/" + NAME)
    dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert "Range" not in gets(server)[-1]
    assert sha256(sources / NAME) == sha256(archive)


def test_wrong_sha256_is_refused_and_never_used(served, tmp_path):
    server, archive = served
    data = tmp_path / "data"
    wrong = "0" * 64
    config = write_config(tmp_path / "c.toml", data, wrong, server.url + "/" + NAME)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "alphabet", check=False)
    assert proc.returncode == 1
    assert "stage download failed" in proc.stderr
    assert f"has sha256 {sha256(archive)} but {wrong} was expected" in proc.stderr
    assert "resume with:\n    dstrain run -l fr --config" in proc.stderr
    assert not (data / "sources" / NAME).exists()
    assert (data / "sources" / (NAME + ".sha256-mismatch")).exists()
    assert not (data / "imported").exists()
    assert not (data / "runs" / "fr" / "state" / "download.json").exists()


def test_a_missing_archive_names_the_exact_path(tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode == 1
    assert "Place it at exactly this path:\n    {}".format(data / "sources" / NAME) in proc.stderr
    assert (data / "sources").is_dir()  # a plain `cp archive data/sources/` then does what it says


def test_a_failed_download_says_where_a_copy_fetched_by_hand_goes(served, tmp_path):
    server, _ = served
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, None, server.url + "/moved.tar.gz")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode == 1
    assert "answered HTTP 404" in proc.stderr
    assert "A copy you get yourself goes at exactly this path:\n    {}".format(data / "sources" / NAME) in proc.stderr
    assert proc.stderr.count("answered HTTP 404") == 2  # a line while it goes on, the whole story at the end


def test_a_hand_placed_archive_with_a_different_sha256_is_refused(cv_archive, tmp_path):
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(cv_archive, data / "sources" / NAME)
    config = write_config(tmp_path / "c.toml", data, "f" * 64)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode == 1 and "was expected" in proc.stderr
    assert not (data / "sources" / NAME).exists()


def test_a_verified_archive_is_not_hashed_again(cv_archive, tmp_path, monkeypatch):
    archive = tmp_path / NAME
    shutil.copy(cv_archive, archive)
    digest = fetch.adopt(archive, sha256(cv_archive), "test")

    def no_hashing(*args, **kwargs):
        raise AssertionError("re-hashed a verified archive")

    monkeypatch.setattr(fetch, "hash_file", no_hashing)
    assert fetch.adopt(archive, sha256(cv_archive), "test") == digest
    archive.touch()  # a changed file is verified again
    with pytest.raises(AssertionError, match="re-hashed"):
        fetch.adopt(archive, sha256(cv_archive), "test")


@pytest.mark.skipif(importlib.util.find_spec("datacollective") is None, reason="needs dstrain[mdc]")
def test_mozilla_data_collective_download_keeps_the_key_secret(served, tmp_path):
    server, archive = served
    key = "mdc-secret-key-123456"
    details = {"id": "cv-fr", "filename": NAME, "checksum": sha256(archive), "sizeBytes": archive.stat().st_size}
    server.reply_json("GET", "/api/datasets/cv-fr", details)
    server.reply_json("POST", "/api/datasets/cv-fr/download",
                      {"downloadUrl": server.url + "/" + NAME, "sizeBytes": details["sizeBytes"],
                       "checksum": details["checksum"]}, token=key)
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, sha256(archive))
    env = clean_env(MDC_API_KEY=key, MDC_API_URL=server.url + "/api", HOME=str(tmp_path),
                    DSTRAIN_DATASET__COMMON_VOICE__MDC_DATASET_ID="cv-fr")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", env=env)
    assert sha256(data / "sources" / NAME) == sha256(archive)
    logged = proc.stdout + proc.stderr + "".join(p.read_text() for p in data.rglob("*.log"))
    assert key not in logged and key not in (data / "runs" / "fr" / "config.json").read_text()
    assert key not in dstrain("config", "-l", "fr", "--config", config, env=env).stdout
    assert json.loads((data / "sources" / (NAME + ".verified.json")).read_text())["origin"] == "mdc:cv-fr"

    no_key = clean_env(DSTRAIN_DATASET__COMMON_VOICE__MDC_DATASET_ID="cv-fr")
    (data / "sources" / NAME).unlink()
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", env=no_key, check=False)
    assert proc.returncode == 1 and "set MDC_API_KEY" in proc.stderr


def test_in_a_container_a_missing_source_is_also_named_by_its_place_on_the_host(monkeypatch):
    from dstrain.pipeline import paths

    monkeypatch.setenv(paths.OUTSIDE, "/srv/speech")  # docker-compose.yml's DATA_DIR
    assert paths.for_the_user(Path("/data/sources/cv.tar.gz")) == (
        "/data/sources/cv.tar.gz (on the host: /srv/speech/sources/cv.tar.gz)")
    assert paths.on_host(Path("/data")) == "/srv/speech" and paths.on_host(Path("/elsewhere/x")) is None
    monkeypatch.delenv(paths.OUTSIDE)  # not mounted by compose: nothing to translate
    assert paths.for_the_user(Path("/data/sources/cv.tar.gz")) == "/data/sources/cv.tar.gz"


def test_an_unreachable_server_is_named_in_one_plain_line_at_once(tmp_path, caplog):
    """A refused connection is not retried: without a server, waiting only delays the message."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(fetch.SourceError) as err:
        fetch.fetch(f"http://127.0.0.1:{port}/cv.tar.gz", tmp_path / "cv.tar.gz", None, retry_wait=0.01)
    assert str(err.value) == f"could not download http://127.0.0.1:{port}/cv.tar.gz: cannot connect: Connection refused"
    assert "resuming" not in caplog.text
