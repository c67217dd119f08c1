"""One WAV per clip, never two clips in one WAV (issue 18, class 2).

Real espeak clips in each corpus's real layout: ``x.mp3`` and ``x.ogg`` are two clips with two WAVs, each
holding its own speech; names that are one file where case (or Unicode normalisation) is ignored are both
rejected, whatever the file system here does; a clip listed twice is kept once, or not at all when the rows
disagree; and the same holds for members an importer extracts (Lingua Libre), for ids that two splits
share (MLS, through the ledger every importer's rows go through), and for the samples of a sample database
(clips.format = "sdb"), whose names are the clips' too.
"""
import tempfile
import unicodedata
import warnings
import wave
import zipfile
from pathlib import Path

import pytest

from dstrain.importers.common_voice import CORPUS as COMMON_VOICE
from dstrain.importers.kit.assemble import Candidate, wav_name
from dstrain.importers.kit.ledger import Ledger
from dstrain.importers.lingua_libre import CORPUS as LINGUA_LIBRE
from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.formats.audio import convert_bytes
from tests.fixtures.hostile import RELEASE, good_rows, hostile_cv, mp3
from tests.fixtures.lingua_libre import PARAMS as LINGUA_LIBRE_PARAMS
from tests.fixtures.outputs import listing, read_csv
from tests.fixtures.speech import encode, espeak

FIRST, SECOND = "La mer est calme ce soir.", "Les enfants jouent dans le jardin avec un grand ballon rouge."


def ogg(text: str) -> bytes:
    """espeak-ng's speech as an Ogg Vorbis file."""
    with tempfile.TemporaryDirectory() as where:
        target = Path(where) / "clip.ogg"
        encode(*espeak(text), target, resample=48000)
        return target.read_bytes()


def _import(archive: Path, out: Path, workers: int = 2, clip_format: str = "wav") -> dict:
    params = COMMON_VOICE.Params(release=RELEASE, locale="fr", max_duration=8.0)
    return COMMON_VOICE.prepare(archive, "0" * 64, out, FR.normalize, params, workers, (clip_format, "wav", 9))


def _kept(out: Path):
    """transcript -> (split, row) of the kept rows, in either clip format."""
    found = {}
    for split in ("train", "dev", "test"):
        for row in read_csv(listing(out, split)):
            assert row["transcript"] not in found, "a transcript appears twice"
            found[row["transcript"]] = (split, row)
    return found


def _one_each(where: Path, candidates):
    """(the transcripts of the candidates left, the rejects) once the ledger has left one per clip."""
    with Ledger(where / "ledger.sqlite") as ledger:
        ledger.add_candidates(candidates)
        ledger.one_clip_each()
        return [fields[4] for _, fields, _ in ledger.judged()], list(ledger.rejects())


def _pcm(path: Path) -> bytes:
    with wave.open(str(path)) as wav:
        return wav.readframes(wav.getnframes())


def test_x_mp3_and_x_ogg_are_two_clips_each_with_its_own_speech(tmp_path):
    clips, rows = good_rows()
    clips.update({"x.mp3": mp3(FIRST), "x.ogg": ogg(SECOND)})
    rows["train"] += [("x.mp3", FIRST), ("x.ogg", SECOND)]
    out = tmp_path / "imported"
    _import(hostile_cv(tmp_path, clips, rows), out)
    train = {row["transcript"]: row["wav_filename"] for row in read_csv(out / "train.csv")}
    assert train[FR.normalize(FIRST)] == "clips/x.mp3.wav" and train[FR.normalize(SECOND)] == "clips/x.ogg.wav"
    for name, sentence in (("x.mp3", FIRST), ("x.ogg", SECOND)):
        alone = tmp_path / f"alone-{name}.wav"
        assert convert_bytes((name, clips[name], str(alone)), 8.0).ok
        assert _pcm(out / train[FR.normalize(sentence)]) == _pcm(alone), f"{name}'s WAV holds another clip"


@pytest.mark.parametrize("clip_format", ["wav", "sdb"])
def test_names_that_are_one_file_where_case_or_normalisation_is_ignored_are_both_rejected(tmp_path, clip_format):
    clips, rows = good_rows()
    composed, decomposed = "café.mp3", unicodedata.normalize("NFD", "café.mp3")
    clips.update({"Y.mp3": mp3(FIRST), "y.mp3": mp3(SECOND), composed: mp3(FIRST), decomposed: mp3(SECOND)})
    rows["train"] += [("Y.mp3", FIRST), ("y.mp3", SECOND), (composed, FIRST), (decomposed, SECOND)]
    out = tmp_path / "imported"
    manifest = _import(hostile_cv(tmp_path, clips, rows), out, clip_format=clip_format)
    rejects = {row["source"].split(" ", 1)[1]: row for row in read_csv(out / "rejects.csv")}
    assert {name: row["reason"] for name, row in rejects.items()} == {
        "Y.mp3": "name_clash", "y.mp3": "name_clash", composed: "name_clash", decomposed: "name_clash"}
    assert "would be the file of clips/y.mp3 too (where case is ignored): neither is kept" in \
        rejects["Y.mp3"]["detail"]
    assert manifest["counts"] == {"train": 1, "dev": 1, "test": 1}
    names = sorted(Path(row["wav_filename"]).name for split in ("train", "dev", "test")
                   for row in read_csv(listing(out, split)))
    assert names == ["dev_good.mp3.wav", "test_good.mp3.wav", "train_good.mp3.wav"]
    if clip_format == "wav":
        assert sorted(p.name for p in (out / "clips").glob("*.wav")) == names


@pytest.mark.parametrize("clip_format", ["wav", "sdb"])
def test_a_clip_listed_twice_is_kept_once_or_not_at_all(tmp_path, clip_format):
    clips, rows = good_rows()
    clips.update({"same.mp3": mp3(FIRST), "torn.mp3": mp3(SECOND)})
    rows["train"] += [("same.mp3", FIRST), ("same.mp3", FIRST), ("torn.mp3", SECOND)]
    rows["test"] += [("torn.mp3", FIRST)]  # the same clip, another sentence, another split
    out = tmp_path / "imported"
    _import(hostile_cv(tmp_path, clips, rows), out, clip_format=clip_format)
    rejects = [(row["source"], row["reason"]) for row in read_csv(out / "rejects.csv")]
    assert rejects == [("train.tsv:4 same.mp3", "duplicate"), ("train.tsv:5 torn.mp3", "duplicate"),
                       ("test.tsv:3 torn.mp3", "duplicate")]
    assert _kept(out)[FR.normalize(FIRST)][0] == "train"
    assert FR.normalize(SECOND) not in _kept(out)


def test_members_that_differ_only_in_case_are_not_extracted_and_both_rows_say_why(tmp_path):
    """Lingua Libre's words are file names: "Mot" and "mot" by one speaker would be one file on macOS's disk."""
    archive = tmp_path / "Q21-fra-French.zip"
    with zipfile.ZipFile(str(archive), "w") as zip_file:
        for name, text in (("Alice/Bonjour.ogg", "bonjour"), ("Alice/bonjour.ogg", "bonjour"),
                           ("Alice/maison.ogg", "maison")):
            zip_file.writestr("Q21-fra-French/" + name, ogg(text))
    out = tmp_path / "imported"
    manifest = LINGUA_LIBRE.prepare(archive, "1" * 64, out, FR.normalize,
                                    LINGUA_LIBRE.Params(**dict(LINGUA_LIBRE_PARAMS, split=(1, 0, 0))), 2)
    rejects = {row["source"]: (row["reason"], row["detail"]) for row in read_csv(out / "rejects.csv")}
    assert set(rejects) == {"Q21-fra-French/Alice/Bonjour.ogg", "Q21-fra-French/Alice/bonjour.ogg"}
    assert all(reason == "name_clash" and "differ only in case" in detail for reason, detail in rejects.values())
    assert manifest["counts"]["train"] == 1
    assert not list((out / "extracted").rglob("*onjour.ogg"))


def test_two_inputs_one_wav_name_in_any_importer_are_both_rejected(tmp_path):
    """What every importer's rows go through (assemble): MLS ids are unique within a split only."""
    candidates = [Candidate("train", "train/transcripts.txt:1 10_20_30", tmp_path / "train/10/20/10_20_30.opus",
                            "10_20_30.wav", "un"),
                  Candidate("dev", "dev/transcripts.txt:1 10_20_30", tmp_path / "dev/10/20/10_20_30.opus",
                            "10_20_30.wav", "deux"),
                  Candidate("train", "train/transcripts.txt:2 10_20_31", tmp_path / "train/10/20/10_20_31.opus",
                            "10_20_31.wav", "trois")]
    kept, rejects = _one_each(tmp_path, candidates)
    assert kept == ["trois"]
    assert [(r.split, r.reason) for r in rejects] == [("train", "name_clash"), ("dev", "name_clash")]


def test_what_a_wav_is_named(tmp_path):
    assert [wav_name(n) for n in ("x.mp3", "x.ogg", "x.wav", "a/b/x.opus", "x")] == [
        "x.mp3.wav", "x.ogg.wav", "x.wav", "x.opus.wav", "x.wav"]
    # "x" and "x.wav" both make x.wav: two inputs, one name.
    kept, rejects = _one_each(tmp_path, [Candidate("train", "1", Path("x"), wav_name("x"), "a"),
                                         Candidate("train", "2", Path("x.wav"), wav_name("x.wav"), "b")])
    assert kept == [] and {r.reason for r in rejects} == {"name_clash"}


def test_a_clip_listed_a_great_many_times_is_named_a_few_times_in_each_reject(tmp_path):
    """Each reject names the other rows of its clip, but not all of them: a clip listed 10,000 times, once with
    another sentence, would otherwise write 10,000 names in each of 10,000 rejects."""
    rows = [Candidate("train", f"train.tsv:{n}", Path("clips/x.mp3"), "x.mp3.wav", "un") for n in range(2, 10002)]
    kept, rejects = _one_each(tmp_path, rows + [Candidate("test", "test.tsv:2", Path("clips/x.mp3"), "x.mp3.wav",
                                                          "deux")])
    assert kept == [] and len(rejects) == 10001 and {r.reason for r in rejects} == {"duplicate"}
    assert rejects[0].detail == ("this clip is listed elsewhere with another sentence or split: train.tsv:3, "
                                 "train.tsv:4, train.tsv:5, train.tsv:6, train.tsv:7 and 9995 more")


def test_the_wavs_of_an_import_under_the_old_names_do_not_stay(tmp_path):
    """Before the extension was kept, x.mp3 became x.wav: a new import of the same archive deletes those."""
    clips, rows = good_rows()
    archive = hostile_cv(tmp_path, clips, rows)
    out = tmp_path / "imported"
    _import(archive, out)
    (out / "clips" / "train_good.wav").write_bytes((out / "clips" / "train_good.mp3.wav").read_bytes())
    _import(archive, out)
    assert sorted(p.name for p in (out / "clips").glob("*.wav")) == [
        "dev_good.mp3.wav", "test_good.mp3.wav", "train_good.mp3.wav"]


@pytest.mark.parametrize("clip_format", ["wav", "sdb"])
def test_a_clip_the_archive_holds_twice_is_rejected_not_taken_from_either_copy(tmp_path, clip_format):
    """clips/x.mp3 twice in the tar, another recording each time: which one the row's sentence is about cannot be
    told, so no clip is made of either, on the first import and on one that finds a WAV of an earlier run."""
    clips, rows = good_rows()
    clips["x.mp3"] = mp3(SECOND)
    rows["train"].append(("x.mp3", SECOND))
    archive = hostile_cv(tmp_path, clips, rows, before=[(f"{RELEASE}/fr/clips/x.mp3", mp3(FIRST))])
    out = tmp_path / "imported"
    for _ in range(2):
        manifest = _import(archive, out, clip_format=clip_format)
        rejects = {row["source"]: row for row in read_csv(out / "rejects.csv")}
        assert rejects["train.tsv:3 x.mp3"]["reason"] == "name_clash"
        assert "the archive holds clips/x.mp3 2 times" in rejects["train.tsv:3 x.mp3"]["detail"]
        assert manifest["counts"] == {"train": 1, "dev": 1, "test": 1}
        assert FR.normalize(SECOND) not in _kept(out)
        if clip_format == "wav":
            assert not (out / "clips" / "x.mp3.wav").exists()
            (out / "clips" / "x.mp3.wav").write_bytes((out / "clips" / "train_good.mp3.wav").read_bytes())


def test_a_member_an_extracting_importer_finds_twice_is_extracted_from_neither_copy(tmp_path):
    archive = tmp_path / "Q21-fra-French.zip"
    with zipfile.ZipFile(str(archive), "w") as zip_file, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name: that is the point
        for name, text in (("Alice/bonjour.ogg", "bonjour"), ("Alice/bonjour.ogg", "au revoir"),
                           ("Alice/maison.ogg", "maison")):
            zip_file.writestr("Q21-fra-French/" + name, ogg(text))
    out = tmp_path / "imported"
    manifest = LINGUA_LIBRE.prepare(archive, "1" * 64, out, FR.normalize,
                                    LINGUA_LIBRE.Params(**dict(LINGUA_LIBRE_PARAMS, split=(1, 0, 0))), 2)
    rejects = [(row["source"], row["reason"], row["detail"]) for row in read_csv(out / "rejects.csv")]
    twice = ("Q21-fra-French/Alice/bonjour.ogg", "name_clash")
    assert [(source, reason) for source, reason, _ in rejects] == [twice, twice]
    assert "holds 'Q21-fra-French/Alice/bonjour.ogg' twice" in rejects[0][2]
    assert manifest["counts"]["train"] == 1
    assert not (out / "extracted" / "Q21-fra-French" / "Alice" / "bonjour.ogg").exists()
