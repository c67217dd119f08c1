"""Downloads that cannot be fooled, from a real local HTTP server misbehaving on purpose."""
import json
import shutil

from tests.conftest import RELEASE, dstrain, sha256, write_config

NAME = f"{RELEASE}-fr.tar.gz"
PATH = "/" + NAME
LOGIN_PAGE = b"<!DOCTYPE html>\n<html><body><form action='/login'>Please sign in</form></body></html>\n"



def gets(server):
    return [r for r in server.requests if r["method"] == "GET" and r["path"] == PATH]


def test_a_206_from_the_first_byte_is_never_spliced_onto_a_partial_file(served, tmp_path):
    server, archive = served
    server.range_from_zero.add(PATH)
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    (sources / (NAME + ".part")).write_bytes(archive.read_bytes()[:5000])
    config = write_config(tmp_path / "c.toml", tmp_path / "data", sha256(archive), server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert "the server sent bytes from 0 where 5000 were asked for; starting over" in proc.stderr
    assert [r.get("Range") for r in gets(server)] == ["bytes=5000-", None]
    assert (sources / NAME).read_bytes() == archive.read_bytes()


def test_a_partial_file_longer_than_the_file_served_starts_over(served, tmp_path):
    server, archive = served
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    (sources / (NAME + ".part")).write_bytes(archive.read_bytes() + b"spliced tail of another download")
    config = write_config(tmp_path / "c.toml", tmp_path / "data", sha256(archive), server.url + PATH)
    dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert (sources / NAME).read_bytes() == archive.read_bytes()


def test_a_login_page_sent_with_200_is_not_called_verified(served, tmp_path):
    server, archive = served
    server.instead[PATH] = LOGIN_PAGE
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)  # no sha256 pinned
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "it is an HTML page, not the file (the server may want a login" in proc.stderr
    assert not (data / "sources" / NAME).exists() and not (data / "sources" / (NAME + ".verified.json")).exists()
    assert (data / "sources" / (NAME + ".not-used")).read_bytes() == LOGIN_PAGE
    del server.instead[PATH]  # the address is fixed: the next run downloads the real archive
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    assert sha256(data / "sources" / NAME) == sha256(archive)


def test_a_page_placed_by_hand_is_refused_with_the_file_to_delete(tmp_path):
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    (sources / NAME).write_bytes(LOGIN_PAGE)
    config = write_config(tmp_path / "c.toml", tmp_path / "data")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode == 1
    assert "it is an HTML page, not the file" in proc.stderr and f"rm {sources / NAME}" in proc.stderr


def test_a_truncated_archive_gets_one_clear_message_and_the_rerun_fetches_it_again(served, tmp_path):
    server, archive = served
    good = archive.read_bytes()
    archive.write_bytes(good[: len(good) * 2 // 3])  # a server that stops early, with a Content-Length to match
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{data / 'sources' / NAME} is truncated or corrupt" in proc.stderr
    assert "run the same command again and it is downloaded anew" in proc.stderr
    assert f"rm {data / 'sources' / NAME}" in proc.stderr
    archive.write_bytes(good)  # the server has the whole file again
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    assert len(gets(server)) == 2 and sha256(data / "sources" / NAME) == sha256(archive)
    assert (data / "imported" / "fr" / "common_voice" / "train.csv").exists()


def test_a_damaged_archive_placed_by_hand_says_what_to_delete_on_every_run(cv_archive, tmp_path):
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    good = cv_archive.read_bytes()
    (sources / NAME).write_bytes(good[: len(good) // 2])
    config = write_config(tmp_path / "c.toml", tmp_path / "data")
    first = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert first.returncode == 1 and "is truncated or corrupt" in first.stderr
    again = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert again.returncode == 1 and "stage download failed" in again.stderr  # not hashed and accepted again
    assert "no address to download it from" in again.stderr and f"rm {sources / NAME}" in again.stderr
    shutil.copy(cv_archive, sources / NAME)  # the fix it names
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")


def test_5xx_answers_are_retried_and_force_download_fetches_again(served, tmp_path):
    server, archive = served
    server.failures[PATH] = [503, 502]
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, sha256(archive), server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert proc.stderr.count("interrupted") == 2 and len(gets(server)) == 3
    dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    assert len(gets(server)) == 3  # verified: not fetched again
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", "--force", "download")
    assert "downloading it anew (--force download)" in proc.stderr
    assert len(gets(server)) == 4 and sha256(data / "sources" / NAME) == sha256(archive)


def test_offline_every_dataset_fails_at_once_in_one_line_with_absolute_paths(tmp_path):
    """Names that do not resolve are not retried; the live line names where a copy goes, absolutely."""
    config = tmp_path / "c.toml"
    config.write_text('datasets = ["common_voice", "m_ailabs"]\n[dataset.common_voice]\n'
                      f'release = "{RELEASE}"\nurl = "http://dstrain-test.invalid/{NAME}"\n'
                      '[dataset.m_ailabs]\nurl = "http://dstrain-test.invalid/fr_FR.tgz"\n')
    proc = dstrain("run", "-l", "fr", "--config", config, "--data-root", "data", "--to", "download",
                   cwd=tmp_path, check=False)  # a data root relative to where the user is
    assert proc.returncode == 1 and "interrupted" not in proc.stderr and "Traceback" not in proc.stderr
    live = [line for line in proc.stderr.splitlines() if line.startswith(("common_voice: ", "m_ailabs: "))]
    assert len(live) == 2
    assert live[0] == (f"common_voice: could not download http://dstrain-test.invalid/{NAME}: cannot resolve "
                       "dstrain-test.invalid: no network, or no DNS, from here -> place it at "
                       f"{tmp_path / 'data' / 'sources' / NAME}")
    assert "None of them could be obtained" in proc.stderr and "--datasets common_voice" in proc.stderr


def test_the_download_record_holds_the_bytes_it_says(served, tmp_path):
    server, archive = served
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    record = json.loads((data / "sources" / (NAME + ".verified.json")).read_text())
    assert record["sha256"] == sha256(data / "sources" / NAME)
    assert record["size"] == (data / "sources" / NAME).stat().st_size
