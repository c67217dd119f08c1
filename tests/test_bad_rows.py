"""One bad row never stops an import, and only plainly named members count (issue 13, class 4)."""
import pytest

from dstrain.importers.common_voice import CORPUS
from dstrain.importers.kit.rows import plain_name
from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.sources.archive import canonical
from tests.fixtures.hostile import RELEASE, good_rows, hostile_cv, import_peak, mp3, tsv
from tests.fixtures.outputs import kept_rows, read_csv


def _import(archive, out):
    params = CORPUS.Params(release=RELEASE, locale="fr", max_duration=5.0)
    return CORPUS.prepare(archive, "0" * 64, out, FR.normalize, params, 2)


def test_rows_naming_a_path_are_rejected_and_the_import_goes_on(tmp_path):
    clips, rows = good_rows()
    clips["after.mp3"] = mp3("La mer est calme ce soir.")
    rows["train"] = [("../../etc/passwd", "Un chemin qui sort."), ("clips/train_good.mp3", "Un chemin vers un clip."),
                     ("..", "Deux points."), ("", "Pas de nom.")] + rows["train"] + \
        [("after.mp3", "La mer est calme ce soir.")]
    out = tmp_path / "imported"
    manifest = _import(hostile_cv(tmp_path, clips, rows), out)
    rejects = read_csv(out / "rejects.csv")
    assert [(r["source"], r["reason"]) for r in rejects] == [
        ("train.tsv:2 ../../etc/passwd", "invalid_path"), ("train.tsv:3 clips/train_good.mp3", "invalid_path"),
        ("train.tsv:4 ..", "invalid_path"), ("train.tsv:5 ", "invalid_path")]
    assert rejects[0]["detail"] == "'../../etc/passwd' is not a plain file name"
    assert manifest["counts"] == {"train": 2, "dev": 1, "test": 1}
    assert set(kept_rows(out)) == {"le chat dort sur le canapé", "la mer est calme ce soir",
                                   "le soleil se lève à l'est", "le café est chaud"}


@pytest.mark.parametrize("impostor", ["../fr/train.tsv", f"/{RELEASE}/fr/train.tsv", f"{RELEASE}//fr/train.tsv",
                                      f"{RELEASE}/fr/./train.tsv", f"{RELEASE}/../fr/train.tsv"])
def test_only_the_canonical_member_is_read_as_the_tsv(tmp_path, impostor):
    clips, rows = good_rows()
    # Placed first, and naming a clip the archive holds: read as the TSV, it would replace the real rows.
    clips["impostor.mp3"] = mp3("Je ne suis pas la vraie liste.")
    fake = tsv([("impostor.mp3", "Je ne suis pas la vraie liste.")])
    out = tmp_path / "imported"
    manifest = _import(hostile_cv(tmp_path, clips, rows, before=[(impostor, fake)]), out)
    assert manifest["counts"] == {"train": 1, "dev": 1, "test": 1}
    assert kept_rows(out)["le chat dort sur le canapé"][0] == "train"
    assert "je ne suis pas la vraie liste" not in kept_rows(out)


def test_a_line_of_256_mb_is_one_bad_row_and_is_never_held(tmp_path):
    """A TSV is read as the archive streams by, a line at most 64 KB at a time: 256 MB without a newline
    (about 250 KB once gzipped) is one unreadable row, and the rows after it still count."""
    clips, rows = good_rows()
    clips["after.mp3"] = mp3("La mer est calme ce soir.")
    size = 256 << 20
    train = tsv(rows["train"]), size, b"\n" + tsv([("after.mp3", "La mer est calme ce soir.")]).split(b"\n", 1)[1]
    out = tmp_path / "imported"
    archive = hostile_cv(tmp_path, clips, rows, before=[(f"{RELEASE}/fr/train.tsv", train)])
    peak = import_peak(archive, out)
    assert peak < size, f"peak {peak >> 20} MB for a {size >> 20} MB line"
    assert [(r["source"], r["reason"], r["detail"]) for r in read_csv(out / "rejects.csv")] == [
        ("train.tsv:3", "unreadable_row", "longer than 65536 bytes")]
    assert kept_rows(out)["la mer est calme ce soir"][0] == "train"


def test_a_tar_made_from_its_directory_is_still_read(tmp_path):
    """``tar -C dir .`` writes ``./`` before every name: still the plain form of the path."""
    clips, rows = good_rows()
    archive = hostile_cv(tmp_path, {}, {}, before=[(f"./{RELEASE}/fr/{split}.tsv", tsv(rows[split]))
                                                  for split in ("train", "dev", "test")] +
                         [(f"./{RELEASE}/fr/clips/{name}", data) for name, data in clips.items()])
    assert _import(archive, tmp_path / "imported")["counts"] == {"train": 1, "dev": 1, "test": 1}


@pytest.mark.parametrize("name, plain", [("common_voice_fr_1.mp3", True), ("..x.mp3", True), ("a b.wav", True),
                                         ("clips/x.mp3", False), ("../x", False), ("..", False), (".", False),
                                         ("", False), ("a\\b.mp3", False), ("a\0b", False)])
def test_what_a_plain_clip_name_is(name, plain):
    rejects = []
    assert plain_name("train", "t.tsv:2", name, rejects) is plain
    assert [r.reason for r in rejects] == ([] if plain else ["invalid_path"])


@pytest.mark.parametrize("name, parts", [("a/b/c.tsv", ("a", "b", "c.tsv")), ("./a/b", ("a", "b")), ("a/", ("a",)),
                                         ("../a", None), ("/a", None), ("a//b", None), ("a/./b", None),
                                         ("a/../b", None), ("", None), ("./", None)])
def test_what_a_canonical_member_name_is(name, parts):
    assert canonical(name) == parts
