"""Downloads that cannot be fooled, from a real local HTTP server misbehaving on purpose."""
import gzip
import hashlib
import io
import json
import lzma
import shutil
import tarfile
import time

import pytest

from dstrain.pipeline.paths import partial
from dstrain.pipeline.sources import ranges
from dstrain.pipeline.sources.fetch import ATTEMPTS, SourceError, fetch
from dstrain.pipeline.sources.ranges import OVERLAP
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
    (sources / (NAME + ".part")).write_bytes(archive.read_bytes()[:100_000])
    config = write_config(tmp_path / "c.toml", tmp_path / "data", sha256(archive), server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download")
    # Asked again from 64 KiB before the partial file's end, to compare that overlap.
    assert f"the server sent bytes from 0 where {100_000 - OVERLAP} were asked for; starting over" in proc.stderr
    assert [r.get("Range") for r in gets(server)] == [f"bytes={100_000 - OVERLAP}-", None]
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


def test_a_truncated_archive_is_caught_at_download_and_the_rerun_fetches_it_again(served, tmp_path):
    """Without a pinned sha256, a download is read to its end before it is called verified: a server that stops
    early, with a Content-Length to match, is caught there, before any import."""
    server, archive = served
    good = archive.read_bytes()
    archive.write_bytes(good[: len(good) * 2 // 3])
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "stage download failed" in proc.stderr
    assert f"what {server.url + PATH} sent was not used: it is a truncated or corrupt gzip-compressed tar file: " \
           "damaged compressed data: Compressed file ended before the end-of-stream marker" in proc.stderr
    assert "Run the same command again to download it anew" in proc.stderr
    assert not (data / "sources" / NAME).exists()
    archive.write_bytes(good)  # the server has the whole file again
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    assert len(gets(server)) == 2 and sha256(data / "sources" / NAME) == sha256(archive)
    assert (data / "imported" / "fr" / "common_voice" / "train.csv").exists()


def test_a_tar_cut_between_two_members_is_not_whole(served, tmp_path):
    """A cut that falls just after a member reads as a shorter archive: only its end (two zero blocks) says it
    was cut."""
    server, archive = served
    raw = gzip.decompress(archive.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        cut = tar.getmembers()[-2].offset  # the header of the last member
    archive.write_bytes(gzip.compress(raw[:cut]))
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode == 1
    assert "0 bytes after its last member, where a tar ends with 1024 zero bytes" in proc.stderr


def test_a_damaged_archive_placed_by_hand_says_what_to_delete_on_every_run(cv_archive, tmp_path):
    sources = tmp_path / "data" / "sources"
    sources.mkdir(parents=True)
    good = cv_archive.read_bytes()
    (sources / NAME).write_bytes(good[: len(good) // 2])
    config = write_config(tmp_path / "c.toml", tmp_path / "data")
    first = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert first.returncode == 1 and "is truncated or corrupt" in first.stderr
    assert "stage download failed" in first.stderr and f"rm {sources / NAME}" in first.stderr
    again = dstrain("run", "-l", "fr", "--config", config, "--to", "import", check=False)
    assert again.returncode == 1 and "stage download failed" in again.stderr  # not hashed and accepted again
    assert "no address to download it from" in again.stderr and f"rm {sources / NAME}" in again.stderr
    assert "verifying" not in again.stderr  # remembered as damaged: not read to its end again
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


@pytest.mark.parametrize("lie", ["first bytes", "new version", "new version, same ETag"])
def test_a_lying_206_is_never_spliced_onto_a_partial_file(served, tmp_path, lie):
    """No sha256 pinned.  The first answer is cut short (150 kB of about 210); the resume is answered with a 206
    whose Content-Range names the bytes asked for but whose body starts at byte 0, or with a 206 of a new version
    of the file, If-Range ignored (its ETag changed, or not).  Either way nothing is spliced: the download
    starts over from the first byte, and the file kept is the one served, whole."""
    server, archive = served
    server.cut_after[PATH] = 150_000
    if lie == "first bytes":
        server.lying_range.add(PATH)
        expected, now = "asked for again, are not those downloaded before", archive.read_bytes()
    else:
        server.ignore_if_range.add(PATH)
        # The same release packed again: other bytes from the first block of the gzip stream on.
        now = gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1, mtime=1)
        server.replace_after_cut[PATH] = now
        expected = "the file on the server changed since the partial file was downloaded"
        if lie == "new version, same ETag":
            server.fixed_etag[PATH] = '"v1"'
            expected = "asked for again, are not those downloaded before"
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    assert f"{expected}" in proc.stderr and "starting over from the first byte" in proc.stderr
    assert [r.get("Range") for r in gets(server)] == [None, f"bytes={150_000 - OVERLAP}-", None]
    assert (data / "sources" / NAME).read_bytes() == now
    record = json.loads((data / "sources" / (NAME + ".verified.json")).read_text())
    assert record["sha256"] == hashlib.sha256(now).hexdigest()
    assert (data / "imported" / "fr" / "common_voice" / "train.csv").exists()


def test_a_tar_gz_sent_with_content_encoding_gzip_is_stored_as_it_is(served, tmp_path):
    """Web servers configured to say `Content-Encoding: gzip` of a .tar.gz: undone on the way, the file would be
    the .tar inside, never the size announced, and fail on every run."""
    server, archive = served
    server.gzip_encoded.add(PATH)
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    assert (data / "sources" / NAME).read_bytes() == archive.read_bytes()
    assert gets(server)[0]["Accept-Encoding"] == "identity"
    assert (data / "imported" / "fr" / "common_voice" / "train.csv").exists()


TEXTS = ("commonvoice-fr-lm-0.1-wiki.txt.xz", "commonvoice-fr-lm-0.1-debats-assemblee-nationale.txt.xz")


def test_offline_the_language_model_texts_fail_the_run_before_the_import(cv_archive, tmp_path):
    """A run that goes as far as lm gets its texts in the download stage: offline, it stops there, naming where
    to put each text, instead of after an import of hours.  A run up to the import does not ask for them."""
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(cv_archive, data / "sources" / NAME)
    tools = tmp_path / "kenlm"
    tools.mkdir()
    for name in ("lmplz", "filter", "build_binary", "generate_scorer_package"):  # say where TMPDIR is, and fail
        (tools / name).write_text(f'#!/bin/sh\necho "$TMPDIR" > {tools / "tmpdir"}\nexit 1\n')
        (tools / name).chmod(0o755)
    config = write_config(tmp_path / "c.toml", data)
    with config.open("a") as out:
        out.write(f'[lm]\nkenlm_bin = "{tools}"\nscorer_tool = "{tools / "generate_scorer_package"}"\n'
                  '[lm.source.wikipedia]\nurl = "http://dstrain-test.invalid/wiki.txt.xz"\n'
                  '[lm.source.assemblee_nationale]\nurl = "http://dstrain-test.invalid/an.txt.xz"\n')
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "lm", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stage download failed: 2 of 2 language-model texts could not be obtained" in proc.stderr
    for name in TEXTS:
        assert f"A copy you get yourself goes at exactly this path:\n    {data / 'sources' / name}" in proc.stderr
    assert "▶ import" not in proc.stderr and not (data / "imported").exists()
    dstrain("run", "-l", "fr", "--config", config, "--to", "import")  # no text needed up to here
    for name in TEXTS:  # placed by hand
        (data / "sources" / name).write_bytes(lzma.compress(b"Le chat dort.\n"))
    again = dstrain("run", "-l", "fr", "--config", config, "--to", "lm", check=False)
    assert "✓ download  done" in again.stderr and "✓ import    up to date" in again.stderr
    assert "stage lm failed" in again.stderr  # the fake lmplz: the texts were found, the import kept
    # Its temporary files go under the data root, not to a /tmp that may be small.
    assert (tools / "tmpdir").read_text().strip() == str(data / "runs" / "fr" / "tmp")


# -- more of class 1: servers that would keep a download going for ever ------------------------------------

def test_a_server_that_trickles_is_a_stalled_download_resumed_then_given_up(served, tmp_path, monkeypatch):
    """Each piece arrives well within the read timeout, but at 10 kB/s: below the floor (here 50 kB a second, in
    place of 64 kB a minute) the connection counts as dropped, is resumed, and after its attempts the download
    fails naming why, its partial file kept.  A server at full speed is unaffected by the same floor."""
    server, archive = served
    monkeypatch.setattr(ranges, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(ranges, "STALL_BYTES", 50_000)
    server.trickle[PATH] = 0.1
    target = tmp_path / "sources" / NAME
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch(server.url + PATH, target, sha256(archive), retry_wait=0.01)
    assert time.monotonic() - started < 60
    assert f"after {ATTEMPTS} attempts" in str(caught.value) and "it stalls" in str(caught.value)
    assert "the next run resumes it" in str(caught.value) and partial(target).stat().st_size > 0
    assert len(gets(server)) == ATTEMPTS and gets(server)[1].get("Range")  # each attempt a resume
    del server.trickle[PATH]
    assert fetch(server.url + PATH, target, sha256(archive), retry_wait=0.01) == sha256(archive)
    assert target.read_bytes() == archive.read_bytes()


def test_a_server_that_lies_on_every_resume_is_downloaded_again_once_not_for_ever(served, tmp_path):
    """Every full answer drops at 150 kB, and every resume is a 206 of a new version (same ETag, If-Range
    ignored) that matches the overlap but ends with another CRC: spliced, it never verifies.  Downloaded again
    from the first byte once, it fails the same way, and the run stops there with what to do."""
    server, archive = served
    original = archive.read_bytes()
    server.cut_every[PATH] = 150_000
    server.ignore_if_range.add(PATH)
    server.fixed_etag[PATH] = '"v1"'
    server.replace_after_cut[PATH] = original[:-8] + bytes(8)  # the gzip trailer: CRC and length
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=server.url + PATH)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "the resumed download does not verify" in proc.stderr
    assert "is a truncated or corrupt gzip-compressed tar file" in proc.stderr and "was not used" in proc.stderr
    assert [r.get("Range") is not None for r in gets(server)] == [False, True, False, True]
    assert not (data / "sources" / NAME).exists()
