"""CCPMF on a small copy of its published archive: numbered parts of a zip of zips, MP3s cut at XML timestamps."""
import json
import shutil
import wave
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from dstrain.importers import ccpmf
from dstrain.importers.ccpmf import Row, segments
from dstrain.importers.kit.spoken_numbers import spell_numbers
from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.paths import SPLITS
from dstrain.pipeline.sources.fetch import SourceError
from tests.fixtures.ccpmf import CCPMF, CCPMF_MAX, CCPMF_ROOT, build_ccpmf
from tests.fixtures.outputs import kept_rows, read_csv, sha256
from tests.fixtures.speech import KEPT, SHARES
from tests.http_server import FileServer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    with FileServer(www) as server:
        yield server, build_ccpmf(www)


def ccpmf_params(served, **changes) -> ccpmf.Params:
    server, (parts, whole, _) = served
    values = dict(parts=tuple(f"{server.url}/{p.name}" for p in parts), sha256=sha256(whole), split=SHARES,
                  max_duration=CCPMF_MAX)
    values.update(changes)
    return ccpmf.Params(**values)


def import_ccpmf(served, root: Path, **changes):
    params = ccpmf_params(served, **changes)
    digest = ccpmf.CORPUS.download(params, root / "sources")
    archive = ccpmf.CORPUS.archive_path(params, root / "sources")
    return ccpmf.CORPUS.prepare(archive, digest, root / "ccpmf", FR.normalize, params, 2)


@pytest.fixture(scope="module")
def ccpmf_imported(served, tmp_path_factory):
    root = tmp_path_factory.mktemp("ccpmf")
    return import_ccpmf(served, root), root


def test_ccpmf_keeps_exactly_the_good_segments_in_their_split(served, ccpmf_imported):
    _, root = ccpmf_imported
    expected = served[1][2]
    kept = kept_rows(root / "ccpmf")
    assert {label: split for label, (split, _) in kept.items()} == {
        e.key: e.split for e in expected if e.outcome == KEPT}
    assert set(split for split, _ in kept.values()) == set(SPLITS)
    for _, row in kept.values():
        assert int(row["wav_filesize"]) == (root / "ccpmf" / row["wav_filename"]).stat().st_size


def test_ccpmf_rejects_every_other_piece_for_its_reason(served, ccpmf_imported):
    _, root = ccpmf_imported
    expected = served[1][2]
    got = sorted((r["source"], r["reason"], r["split"]) for r in read_csv(root / "ccpmf" / "rejects.csv"))
    assert got == sorted((e.key, e.outcome, e.split) for e in expected if e.outcome != KEPT)


def test_ccpmf_never_expands_an_entity_nor_parses_an_xml_larger_than_any_transcript(ccpmf_imported, monkeypatch):
    """The billion laughs (a few hundred bytes declaring entities that expand to 2 GB) is refused for its
    declarations, not left to the machine's expat; an XML over MAX_XML_BYTES is not parsed at all."""
    _, root = ccpmf_imported
    laughs = next(r for r in read_csv(root / "ccpmf" / "rejects.csv") if r["source"] == "2012/20120505_Rires.xml")
    assert laughs["reason"] == "unreadable_row" and "declares entities" in laughs["detail"]
    xml = root / "big.xml"
    xml.write_bytes(b'<?xml version="1.0"?>\n<transcription>' + b" " * 2000 + b"</transcription>\n")
    monkeypatch.setattr(ccpmf, "MAX_XML_BYTES", 1000)
    rejects = []
    assert ccpmf._rows(xml, "2012/big.xml", "train", rejects) == []
    assert rejects[0].reason == "too_large" and "no transcript is over 1000 bytes" in rejects[0].detail


def test_ccpmf_days_never_cross_splits(served, ccpmf_imported):
    _, root = ccpmf_imported
    expected = served[1][2]
    day_of = {e.key: e.group for e in expected if e.outcome == KEPT}
    splits_of = {}
    for label, (split, _) in kept_rows(root / "ccpmf").items():
        splits_of.setdefault(day_of[label], set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of.values()), splits_of


def test_ccpmf_parts_are_downloaded_joined_verified_then_removed(served, ccpmf_imported):
    manifest, root = ccpmf_imported
    whole = served[1][1]
    kept = sorted(p.name for p in (root / "sources").iterdir() if p.name != ".locks")
    assert kept == [whole.name, whole.name + ".verified.json"]
    assert sha256(root / "sources" / whole.name) == sha256(whole)
    assert manifest == json.loads((root / "ccpmf" / "manifest.json").read_text())
    assert manifest["importer"] == "ccpmf" and manifest["licence"].startswith("Licence Ouverte")
    assert manifest["source"]["sha256"] == sha256(whole)
    assert manifest["counts"] == {"train": 10, "dev": 2, "test": 2}
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
    archive = ccpmf.CORPUS.archive_path(params, first / "sources")
    ccpmf.CORPUS.prepare(archive, sha256(archive), first / "ccpmf", FR.normalize, params, 2)
    assert {p: p.stat().st_mtime_ns for p in (first / "ccpmf" / "clips").iterdir()} == clips
    import_ccpmf(served, tmp_path)
    for output in ("train.csv", "dev.csv", "test.csv", "rejects.csv"):
        assert (tmp_path / "ccpmf" / output).read_bytes() == (first / "ccpmf" / output).read_bytes()


def test_ccpmf_a_longer_max_duration_joins_rows_and_drops_the_old_segments(served, ccpmf_imported, tmp_path):
    _, first = ccpmf_imported
    shutil.copytree(str(first), str(tmp_path / "copy"))
    params = ccpmf_params(served, max_duration=10.0)
    archive = ccpmf.CORPUS.archive_path(params, tmp_path / "copy" / "sources")
    ccpmf.CORPUS.prepare(archive, sha256(archive), tmp_path / "copy" / "ccpmf", FR.normalize, params, 2)
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
    parts, whole, _ = served[1]
    (tmp_path / "sources").mkdir()
    for part in parts:
        shutil.copy(str(part), str(tmp_path / "sources" / part.name))
    params = ccpmf.Params(sha256=sha256(whole))
    assert ccpmf.CORPUS.download(params, tmp_path / "sources") == sha256(whole)
    kept = sorted(p.name for p in (tmp_path / "sources").iterdir() if p.name != ".locks")
    assert kept == [whole.name, whole.name + ".verified.json"]


def test_ccpmf_without_its_archive_says_where_to_get_it_and_how_to_name_the_parts(tmp_path):
    with pytest.raises(SourceError, match="Download its parts from https://data.economie.gouv.fr") as err:
        ccpmf.CORPUS.download(ccpmf.Params(), tmp_path)
    archive = ccpmf.Params().archive
    assert f"named as published: {archive}.001, {archive}.002, and so on" in str(err.value)
    assert f"Place it at exactly this path:\n    {tmp_path.absolute() / archive}" in str(err.value)


def test_ccpmf_refuses_a_language_num2words_lacks():
    with pytest.raises(ValidationError, match="num2words has no language 'xx'"):
        ccpmf.Params(language="xx")


def test_the_test_corpus_is_laid_out_as_published(served):
    parts, whole, _ = served[1]
    assert [p.name[-4:] for p in parts] == [".001", ".002", ".003"]
    assert b"".join(p.read_bytes() for p in parts) == whole.read_bytes()
    with zipfile.ZipFile(str(whole)) as outer:
        assert outer.namelist() == [CCPMF_ROOT + ".zip"]
    assert len([r for r in CCPMF if r.mp3 and r.xml]) >= 4


@pytest.mark.parametrize("raw, tidied", ccpmf.CASES)
def test_the_transcripts_known_glitches_are_tidied_into_what_was_said(raw, tidied):
    assert ccpmf.tidy(raw) == tidied


def test_the_glitches_of_the_real_transcripts_end_as_clean_labels():
    for raw, label in (("à 14:30", "à quatorze heures trente"),
                       ("en 2019/2020", "en deux mille dix neuf deux mille vingt"),
                       ("70-80 %", "soixante dix quatre vingts pour cent"), ("Merci. [end]", "merci"),
                       ("le fran¸cais", "le français")):
        assert FR.normalize(spell_numbers(ccpmf.tidy(raw), "fr")) == label


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
