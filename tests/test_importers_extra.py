"""CCPMF and Multilingual LibriSpeech on small archives in their real formats, and German end to end."""
import csv
import hashlib
import json
import shutil
import wave
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from importers import ccpmf, mls
from importers.ccpmf import Row, segments
from importers.fetch import SourceError
from importers.spoken_numbers import spell_numbers
from languages.de import LANGUAGE as DE
from languages.fr import LANGUAGE as FR
from pipeline.errors import DstrainError
from pipeline.paths import SPLITS
from tests.conftest import dstrain
from tests.formats_extra import (
    CCPMF,
    CCPMF_MAX,
    CCPMF_ROOT,
    KEPT,
    MLS_GERMAN,
    SHARES,
    Utterance,
    build_ccpmf,
    build_mls,
)
from tests.http_server import FileServer

MLS_FLAC = [
    Utterance("train", "5000_9_000001", "guten morgen", KEPT),
    Utterance("dev", "6000_8_000001", "gute nacht", KEPT),
    Utterance("test", "7000_7_000001", "bis bald", KEPT),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv(path: Path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def kept_rows(directory: Path):
    """transcript -> (split, CSV row)."""
    found = {}
    for split in SPLITS:
        for row in read_csv(directory / (split + ".csv")):
            assert row["transcript"] not in found, "a transcript appears twice"
            found[row["transcript"]] = (split, row)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    parts, whole, expected = build_ccpmf(www)
    (www / "flac").mkdir()
    archives = {"ccpmf": (parts, whole, expected), "mls": build_mls(www),
                "mls_flac": build_mls(www / "flac", fmt="flac", utterances=MLS_FLAC)}
    with FileServer(www) as server:
        yield server, archives


def ccpmf_params(served, **changes) -> ccpmf.Params:
    server, archives = served
    parts, whole, _ = archives["ccpmf"]
    values = dict(parts=tuple(f"{server.url}/{p.name}" for p in parts), sha256=sha256(whole), split=SHARES,
                  max_duration=CCPMF_MAX)
    values.update(changes)
    return ccpmf.Params(**values)


def import_ccpmf(served, root: Path, **changes):
    params = ccpmf_params(served, **changes)
    digest = ccpmf.download(params, root / "sources")
    return ccpmf.prepare(ccpmf.archive_path(params, root / "sources"), digest, root / "ccpmf", FR.normalize,
                         params, 2)


@pytest.fixture(scope="module")
def ccpmf_imported(served, tmp_path_factory):
    root = tmp_path_factory.mktemp("ccpmf")
    return import_ccpmf(served, root), root


def test_ccpmf_keeps_exactly_the_good_segments_in_their_split(served, ccpmf_imported):
    _, root = ccpmf_imported
    expected = served[1]["ccpmf"][2]
    kept = kept_rows(root / "ccpmf")
    assert {label: split for label, (split, _) in kept.items()} == {
        e.key: e.split for e in expected if e.outcome == KEPT}
    assert set(split for split, _ in kept.values()) == set(SPLITS)
    for _, row in kept.values():
        assert int(row["wav_filesize"]) == (root / "ccpmf" / row["wav_filename"]).stat().st_size


def test_ccpmf_rejects_every_other_piece_for_its_reason(served, ccpmf_imported):
    _, root = ccpmf_imported
    expected = served[1]["ccpmf"][2]
    got = sorted((r["source"], r["reason"], r["split"]) for r in read_csv(root / "ccpmf" / "rejects.csv"))
    assert got == sorted((e.key, e.outcome, e.split) for e in expected if e.outcome != KEPT)


def test_ccpmf_days_never_cross_splits(served, ccpmf_imported):
    _, root = ccpmf_imported
    expected = served[1]["ccpmf"][2]
    day_of = {e.key: e.group for e in expected if e.outcome == KEPT}
    splits_of = {}
    for label, (split, _) in kept_rows(root / "ccpmf").items():
        splits_of.setdefault(day_of[label], set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of.values()), splits_of


def test_ccpmf_parts_are_downloaded_joined_verified_then_removed(served, ccpmf_imported):
    manifest, root = ccpmf_imported
    whole = served[1]["ccpmf"][1]
    assert sorted(p.name for p in (root / "sources").iterdir()) == [whole.name, whole.name + ".verified.json"]
    assert sha256(root / "sources" / whole.name) == sha256(whole)
    assert manifest == json.loads((root / "ccpmf" / "manifest.json").read_text())
    assert manifest["importer"] == "ccpmf" and manifest["licence"].startswith("Licence Ouverte")
    assert manifest["source"]["sha256"] == sha256(whole)
    assert manifest["counts"] == {"train": 5, "dev": 2, "test": 2}
    assert not (root / "ccpmf" / "decoded").exists()


def test_ccpmf_segments_are_16khz_mono_wavs_cut_at_the_xml_timestamps(ccpmf_imported):
    _, root = ccpmf_imported
    for _, row in kept_rows(root / "ccpmf").values():
        start_ms, end_ms = Path(row["wav_filename"]).stem.rsplit("_", 2)[1:]
        with wave.open(str(root / "ccpmf" / row["wav_filename"])) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            seconds = wav.getnframes() / 16000
        assert abs(seconds - (int(end_ms) - int(start_ms)) / 1000) < 0.002
        assert seconds < CCPMF_MAX


def test_ccpmf_import_is_reproducible_and_a_rerun_cuts_nothing(served, ccpmf_imported, tmp_path):
    _, first = ccpmf_imported
    clips = {p: p.stat().st_mtime_ns for p in (first / "ccpmf" / "clips").iterdir()}
    params = ccpmf_params(served)
    archive = ccpmf.archive_path(params, first / "sources")
    ccpmf.prepare(archive, sha256(archive), first / "ccpmf", FR.normalize, params, 2)
    assert {p: p.stat().st_mtime_ns for p in (first / "ccpmf" / "clips").iterdir()} == clips
    import_ccpmf(served, tmp_path)
    for output in ("train.csv", "dev.csv", "test.csv", "rejects.csv"):
        assert (tmp_path / "ccpmf" / output).read_bytes() == (first / "ccpmf" / output).read_bytes()


def test_ccpmf_a_longer_max_duration_joins_rows_and_drops_the_old_segments(served, ccpmf_imported, tmp_path):
    _, first = ccpmf_imported
    shutil.copytree(str(first), str(tmp_path / "copy"))
    params = ccpmf_params(served, max_duration=10.0)
    archive = ccpmf.archive_path(params, tmp_path / "copy" / "sources")
    ccpmf.prepare(archive, sha256(archive), tmp_path / "copy" / "ccpmf", FR.normalize, params, 2)
    kept = kept_rows(tmp_path / "copy" / "ccpmf")
    joined = ("le ministre présente aujourd'hui les grandes orientations du budget "
              "les régions et les communes seront toutes consultées")
    assert joined in kept and "les régions et les communes seront toutes consultées" not in kept
    assert kept["une phrase lente"][0] == "train"  # too long for 4.5 s, not for 10
    # The two segments cut for 4.5 s are gone: only the joined one is left of that recording.
    named = {Path(row["wav_filename"]).name for _, row in kept.values()}
    budget_2 = {p.name for p in (tmp_path / "copy" / "ccpmf" / "clips").glob("20190312_Conference_Budget_2_*.wav")}
    assert len(budget_2) == 1 and budget_2 <= named


def test_ccpmf_parts_placed_by_hand_are_joined(served, tmp_path):
    parts, whole, _ = served[1]["ccpmf"]
    (tmp_path / "sources").mkdir()
    for part in parts:
        shutil.copy(str(part), str(tmp_path / "sources" / part.name))
    params = ccpmf.Params(sha256=sha256(whole))
    assert ccpmf.download(params, tmp_path / "sources") == sha256(whole)
    assert sorted(p.name for p in (tmp_path / "sources").iterdir()) == [whole.name, whole.name + ".verified.json"]


def test_ccpmf_without_its_archive_says_where_to_get_it(tmp_path):
    with pytest.raises(SourceError, match="Download its parts from https://data.economie.gouv.fr"):
        ccpmf.download(ccpmf.Params(), tmp_path)


def test_ccpmf_refuses_a_language_num2words_lacks():
    with pytest.raises(ValidationError, match="num2words has no language 'xx'"):
        ccpmf.Params(language="xx")


def test_the_test_corpus_is_laid_out_as_published(served):
    parts, whole, _ = served[1]["ccpmf"]
    assert [p.name[-4:] for p in parts] == [".001", ".002", ".003"]
    assert b"".join(p.read_bytes() for p in parts) == whole.read_bytes()
    with zipfile.ZipFile(str(whole)) as outer:
        assert outer.namelist() == [CCPMF_ROOT + ".zip"]
    assert len([r for r in CCPMF if r.mp3 and r.xml]) >= 4


def rows(*spans):
    return [None if span is None else Row(number, span[0], span[1], "x") for number, span in enumerate(spans, 1)]


@pytest.mark.parametrize("spans, runs", [
    # Close rows join, a longer silence splits.
    (((0.0, 1.0), (1.2, 2.0), (3.0, 4.0)), [[1, 2], [3]]),
    # Close, but together longer than max_duration (4.5 s).
    (((0.0, 3.0), (3.1, 6.0)), [[1], [2]]),
    # A row longer than max_duration stands alone (and is rejected as too long).
    (((0.0, 1.0), (1.1, 7.0), (7.1, 8.0)), [[1], [2], [3]]),
    # An unreadable row ends a run: the words it held are not in the text.
    (((0.0, 1.0), None, (1.1, 2.0)), [[1], [3]]),
    # Time going backwards ends a run.
    (((5.0, 6.0), (1.0, 2.0)), [[1], [2]]),
])
def test_segments_join_close_rows_within_max_duration(spans, runs):
    assert [[row.number for row in run] for run in segments(rows(*spans), 4.5, 0.3)] == runs


@pytest.mark.parametrize("text, language, spoken", [
    ("Les 3 000 participants", "fr", "Les trois mille participants"),
    ("en 2019.", "fr", "en deux mille dix-neuf."),
    ("2,50 €", "fr", "deux virgule cinquante €"),
    ("0,05 %", "fr", "zéro virgule zéro cinq %"),
    ("(42) et « 7 »", "fr", "(quarante-deux) et « sept »"),
    ("en 2019 300 personnes", "fr", "en deux mille dix-neuf trois cents personnes"),
    ("Es kostet 3,5 Euro", "de", "Es kostet drei Komma fünf Euro"),
    # Said in ways only the meaning tells: left for the normaliser to reject.
    ("le 1er mai, à 14:30, en 2019/2020, 70-80, 1.000.000, B2B, -5", "fr",
     "le 1er mai, à 14:30, en 2019/2020, 70-80, 1.000.000, B2B, -5"),
])
def test_numbers_are_spelled_out_only_when_they_stand_alone(text, language, spoken):
    assert spell_numbers(text, language) == spoken


# Multilingual LibriSpeech ------------------------------------------------------------------------------------------

#: Short enough for the slow utterance to be too long.
MLS_MAX = 8.0


def import_mls(served, root: Path, name="mls", **changes):
    server, archives = served
    archive = archives[name]
    where = archive.relative_to(archive.parents[1] if name == "mls_flac" else archive.parent).as_posix()
    values = dict(DE.dataset("mls").params, url=f"{server.url}/{where}", sha256=sha256(archive), max_duration=MLS_MAX)
    values.update(changes)
    params = mls.Params(**values)
    digest = mls.download(params, root / "sources")
    manifest = mls.prepare(mls.archive_path(params, root / "sources"), digest, root / name, DE.normalize, params, 2)
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
            u.ident.split("_")[0] for u in MLS_GERMAN if u.split == split}
        with wave.open(str(directory / row["wav_filename"])) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)


def test_mls_rejects_every_other_row_for_its_reason(mls_imported):
    _, directory = mls_imported
    got = sorted((r["split"], r["source"].split(" ")[-1], r["reason"]) for r in read_csv(directory / "rejects.csv"))
    assert got == sorted((u.split, u.ident, u.outcome) for u in MLS_GERMAN if u.outcome != KEPT)


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
    assert mls.source_url(mls.Params(language="german")) == "https://dl.fbaipublicfiles.com/mls/mls_german_opus.tar.gz"
    assert mls.source_url(mls.Params(language="french", format="flac")) == (
        "https://dl.fbaipublicfiles.com/mls/mls_french.tar.gz")
    with pytest.raises(ValidationError):
        mls.Params(language="german", format="mp3")


def test_mls_opus_without_a_decoder_fails_before_any_work(monkeypatch, tmp_path):
    import soundfile

    monkeypatch.setattr(soundfile, "available_subtypes", lambda kind: {"VORBIS": "Vorbis"})
    monkeypatch.setattr(mls, "external_decoder", lambda: None)
    params = mls.Params(language="german")
    with pytest.raises(DstrainError, match="cannot read Opus"):
        mls.prepare(tmp_path / "absent.tar.gz", "0" * 64, tmp_path / "mls", DE.normalize, params, 1)
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
        for row in read_csv(data / "runs" / "de" / "clean" / (split + ".csv")):
            seen.update(row["transcript"])
    assert set(labels) == seen and {"ä", "ö", "ü", "ß", " "} <= set(labels)
    assert set(labels) <= set(DE.letters + " ")
    imported = json.loads((data / "imported" / "de" / "mls" / "manifest.json").read_text())
    assert imported["counts"] == {"train": 3, "dev": 2, "test": 2}
