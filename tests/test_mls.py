"""Multilingual LibriSpeech on small archives in its two published formats, and German end to end on it."""
import json
import wave
from pathlib import Path

import pytest
from pydantic import ValidationError

from dstrain.importers import mls
from dstrain.languages.de import LANGUAGE as DE
from dstrain.pipeline.config import resolve
from dstrain.pipeline.errors import ConfigError, DstrainError
from dstrain.pipeline.paths import SPLITS
from tests.conftest import dstrain
from tests.fixtures.mls import MLS_FRENCH, MLS_GERMAN, build_mls
from tests.fixtures.outputs import kept_rows, listing, read_csv, sha256
from tests.fixtures.speech import KEPT, Row
from tests.http_server import FileServer

MLS_FLAC = [
    Row("train", "5000_9_000001", "guten morgen", KEPT),
    Row("dev", "6000_8_000001", "gute nacht", KEPT),
    Row("test", "7000_7_000001", "bis bald", KEPT),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    (www / "flac").mkdir()
    (www / "fr").mkdir()
    archives = {"mls": build_mls(www), "mls_flac": build_mls(www / "flac", fmt="flac", rows=MLS_FLAC),
                "mls_fr": build_mls(www / "fr", language="french", rows=MLS_FRENCH, voice="fr")}
    with FileServer(www) as server:
        yield server, archives


#: Short enough for the slow utterance to be too long.
MLS_MAX = 8.0


def import_mls(served, root: Path, name="mls", **changes):
    server, archives = served
    archive = archives[name]
    where = archive.relative_to(archive.parents[1] if name == "mls_flac" else archive.parent).as_posix()
    values = dict(DE.dataset("mls").params, url=f"{server.url}/{where}", sha256=sha256(archive), max_duration=MLS_MAX)
    values.update(changes)
    params = mls.Params(**values)
    digest = mls.CORPUS.download(params, root / "sources")
    archive = mls.CORPUS.archive_path(params, root / "sources")
    manifest = mls.CORPUS.prepare(archive, digest, root / name, DE.normalize, params, 2)
    return manifest, root / name


@pytest.fixture(scope="module")
def mls_imported(served, tmp_path_factory):
    return import_mls(served, tmp_path_factory.mktemp("mls"))


def test_mls_keeps_exactly_the_good_rows_in_the_official_split(mls_imported):
    _, directory = mls_imported
    kept = kept_rows(directory)
    assert {label: split for label, (split, _) in kept.items()} == {
        u.text: u.split for u in MLS_GERMAN if u.outcome == KEPT}
    for split, row in kept.values():
        assert Path(row["wav_filename"]).name.split("_")[0] in {
            u.key.split("_")[0] for u in MLS_GERMAN if u.split == split}
        with wave.open(str(directory / row["wav_filename"])) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)


def test_mls_rejects_every_other_row_for_its_reason(mls_imported):
    _, directory = mls_imported
    got = sorted((r["split"], r["source"].split(" ")[-1], r["reason"]) for r in read_csv(directory / "rejects.csv"))
    assert got == sorted((u.split, u.key, u.outcome) for u in MLS_GERMAN if u.outcome != KEPT)


def test_mls_speakers_stay_in_their_split(mls_imported):
    _, directory = mls_imported
    splits_of = {}
    for split, row in kept_rows(directory).values():
        splits_of.setdefault(Path(row["wav_filename"]).name.split("_")[0], set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of.values()), splits_of


def test_mls_manifest_and_reproducible_import(served, mls_imported, tmp_path):
    manifest, directory = mls_imported
    archive = served[1]["mls"]
    assert manifest["importer"] == "mls" and manifest["licence"] == "CC-BY-4.0" and manifest["format"] == "opus"
    assert manifest["source"] == {"archive": "mls_german_opus.tar.gz", "sha256": sha256(archive),
                                  "url": manifest["source"]["url"]}
    assert manifest["counts"] == {"train": 3, "dev": 2, "test": 2}
    _, again = import_mls(served, tmp_path)
    for output in ("train.csv", "dev.csv", "test.csv", "rejects.csv"):
        assert (again / output).read_bytes() == (directory / output).read_bytes()


def test_mls_flac_archive(served, tmp_path):
    manifest, directory = import_mls(served, tmp_path, name="mls_flac", format="flac")
    assert manifest["source"]["archive"] == "mls_german.tar.gz"
    assert {label: split for label, (split, _) in kept_rows(directory).items()} == {
        u.text: u.split for u in MLS_FLAC}


def test_mls_urls_follow_the_published_names():
    assert mls.CORPUS.source_url(mls.Params(language="german")) == "https://dl.fbaipublicfiles.com/mls/mls_german_opus.tar.gz"
    assert mls.CORPUS.source_url(mls.Params(language="french", format="flac")) == (
        "https://dl.fbaipublicfiles.com/mls/mls_french.tar.gz")
    with pytest.raises(ValidationError):
        mls.Params(language="german", format="mp3")


def test_mls_opus_without_a_decoder_fails_before_any_work(monkeypatch, tmp_path):
    import soundfile

    monkeypatch.setattr(soundfile, "available_subtypes", lambda kind: {"VORBIS": "Vorbis"})
    monkeypatch.setattr(mls, "external_decoder", lambda: None)
    params = mls.Params(language="german")
    with pytest.raises(DstrainError, match="cannot read Opus"):
        mls.CORPUS.prepare(tmp_path / "absent.tar.gz", "0" * 64, tmp_path / "mls", DE.normalize, params, 1)
    assert not (tmp_path / "mls").exists()


# German end to end ---------------------------------------------------------------------------------------------------

def test_german_passes_its_own_cases():
    assert len(DE.cases) >= 30 and DE.failing_cases() == []
    assert {spec.key for spec in DE.datasets} == {"common_voice", "m_ailabs", "mls"}


def write_config(path: Path, data: Path, served) -> Path:
    """A config for the test server's MLS archive."""
    server, archives = served
    lines = [f'data_root = "{data}"', "workers = 2", "[dataset.mls]",
             f'url = "{server.url}/{archives["mls"].name}"', f'sha256 = "{sha256(archives["mls"])}"',
             f"max_duration = {MLS_MAX}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dstrain_run_german_on_mls_to_alphabet(served, tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "dstrain.toml", data, served)
    dstrain("run", "-l", "de", "--datasets", "mls", "--config", config, "--to", "alphabet")
    lines = (data / "runs" / "de" / "alphabet.txt").read_text(encoding="utf-8").split("\n")
    labels = [line for line in lines if line and not line.startswith("#")]
    seen = set()
    for split in SPLITS:
        for row in read_csv(listing(data / "runs" / "de" / "clean", split)):
            seen.update(row["transcript"])
    assert set(labels) == seen and {"ä", "ö", "ü", "ß", " "} <= set(labels)
    assert set(labels) <= set(DE.letters + " ")
    imported = json.loads((data / "imported" / "de" / "mls" / "manifest.json").read_text())
    assert imported["counts"] == {"train": 3, "dev": 2, "test": 2}


# French, opt-in -------------------------------------------------------------------------------------------------------

def test_french_offers_mls_but_downloads_it_only_when_asked(tmp_path):
    # Those placed by hand and not there yet (Common Voice, CCPMF) wait, and are among the default six all the same.
    config = resolve(environ={"DSTRAIN_LANGUAGE": "fr", "DSTRAIN_DATA_ROOT": str(tmp_path)})
    default = [d.key for d in config.datasets]
    assert {d.key for d in config.waiting} == {"common_voice", "ccpmf"}
    assert "mls" not in default and len(default + [d.key for d in config.waiting]) == 6
    added = resolve(environ={"DSTRAIN_LANGUAGE": "fr", "DSTRAIN_DATA_ROOT": str(tmp_path),
                             "DSTRAIN_DATASETS": "+mls"}).datasets
    assert [d.key for d in added] == default + ["mls"]
    assert added[-1].params.language == "french" and added[-1].params.format == "opus"
    with pytest.raises(ConfigError, match=r"whole list \(a,b\) or only datasets to add"):
        resolve(environ={"DSTRAIN_LANGUAGE": "fr", "DSTRAIN_DATASETS": "common_voice,+mls"})
    listed = next(line for line in dstrain("languages").stdout.splitlines() if line.startswith("fr "))
    assert "mls (opt-in: +mls)" in listed


def test_dstrain_run_french_on_mls_french(served, tmp_path):
    server, archives = served
    data = tmp_path / "data"
    (tmp_path / "dstrain.toml").write_text("\n".join([
        f'data_root = "{data}"', "workers = 2", "[dataset.mls]", f'url = "{server.url}/fr/{archives["mls_fr"].name}"',
        f'sha256 = "{sha256(archives["mls_fr"])}"']) + "\n")
    dstrain("run", "-l", "fr", "--datasets", "mls", "--config", tmp_path / "dstrain.toml", "--to", "import")
    manifest = json.loads((data / "imported" / "fr" / "mls" / "manifest.json").read_text())
    assert manifest["language"] == "french" and manifest["licence"] == "CC-BY-4.0"
    assert manifest["counts"] == {"train": 2, "dev": 1, "test": 1}
    kept = {row["transcript"] for split in SPLITS for row in read_csv(listing(data / "imported/fr/mls", split))}
    assert kept == {row.text for row in MLS_FRENCH}
