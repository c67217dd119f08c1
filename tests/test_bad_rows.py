"""One bad row never stops an import, and only plainly named members count (issue 13, class 4); an OS error of
one row's name is one rejected row, an error of the machine stops the import (issue 18, class 4)."""
import io
import shlex
import subprocess
import sys
import zipfile

import pytest

from dstrain.importers.common_voice import CORPUS
from dstrain.importers.kit.rows import plain_name
from dstrain.importers.kit.tsv import MAX_LINE, copy_table
from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.sources.archive import canonical
from tests.conftest import DSTRAIN, clean_env, sha256, write_config
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


# -- issue 18, class 4: an OS error of one row's name stays one rejected row ----------------------------------

LONG = "a" * 296 + ".mp3"  # 300 bytes: no Linux file system takes a name over 255


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clip_name_longer_than_the_file_system_allows_is_one_rejected_row(tmp_path, workers):
    """It ended the whole import with ENAMETOOLONG, on every rerun; in a worker process or not."""
    clips, rows = good_rows()
    fits = "f" * 247 + ".mp3"  # its WAV, fits.mp3.wav, is 255 bytes: the most a name may have, and allowed
    clips.update({LONG: mp3("Un nom bien trop long."), fits: mp3("La mer est calme ce soir.")})
    rows["train"] = [(LONG, "Un nom bien trop long."), (fits, "La mer est calme ce soir.")] + rows["train"]
    out = tmp_path / "imported"
    params = CORPUS.Params(release=RELEASE, locale="fr", max_duration=5.0)
    manifest = CORPUS.prepare(hostile_cv(tmp_path, clips, rows), "0" * 64, out, FR.normalize, params, workers)
    rejects = read_csv(out / "rejects.csv")
    assert [(r["source"], r["reason"]) for r in rejects] == [(f"train.tsv:2 {LONG}", "invalid_path")]
    assert "cannot be a file here: File name too long" in rejects[0]["detail"]
    assert manifest["counts"] == {"train": 2, "dev": 1, "test": 1}
    assert kept_rows(out)["la mer est calme ce soir"][1]["wav_filename"] == f"clips/{fits}.wav"


def test_members_the_file_system_refuses_are_rejected_rows_of_an_extracting_importer(tmp_path):
    """Lingua Libre extracts its zip: a member too long to be a file, or under a "folder" that is a file, is
    left out with its reason, and its row is rejected with it; the other words are imported."""
    from dstrain.importers.lingua_libre import CORPUS as LINGUA_LIBRE
    from tests.fixtures.lingua_libre import PARAMS
    from tests.test_one_wav_per_clip import ogg

    speech = ogg("bonjour")
    archive = tmp_path / "Q21-fra-French.zip"
    with zipfile.ZipFile(str(archive), "w") as zip_file:
        for name in ("Alice/bonjour.ogg", "Alice/" + "b" * 300 + ".ogg", "Alice/maison.ogg",
                     "Alice/maison.ogg/soleil.ogg"):
            zip_file.writestr("Q21-fra-French/" + name, speech)
    out = tmp_path / "imported"
    params = LINGUA_LIBRE.Params(**dict(PARAMS, split=(1, 0, 0), max_duration=10.0))
    manifest = LINGUA_LIBRE.prepare(archive, "1" * 64, out, FR.normalize, params, 2)
    rejects = {r["source"].rsplit("/", 1)[-1]: r for r in read_csv(out / "rejects.csv")}
    assert {name: r["reason"] for name, r in rejects.items()} == {"b" * 300 + ".ogg": "invalid_path",
                                                                  "soleil.ogg": "invalid_path"}
    assert "File name too long" in rejects["b" * 300 + ".ogg"]["detail"]
    assert manifest["counts"]["train"] == 2


def test_a_full_disk_stops_the_import_with_what_to_do(tmp_path):
    """An error of the machine is not a bad row: the import stops, with the advice, and rejects nothing."""
    clips, rows = good_rows()
    speech = mp3("Une phrase assez longue pour remplir un petit disque, encore et encore.")
    for n in range(40):
        clips[f"fill_{n}.mp3"] = speech
        rows["train"].append((f"fill_{n}.mp3", "Une phrase assez longue pour remplir un petit disque."))
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    (data / "imported").mkdir()
    archive = hostile_cv(data / "sources", clips, rows)
    config = write_config(tmp_path / "c.toml", data, sha256(archive))
    # A disk of 1 MB under imported/, in a mount namespace of this command's own.
    script = (f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(data / 'imported'))} || exit 97\n"
              f"exec {DSTRAIN} run -l fr --config {shlex.quote(str(config))} --to import --workers 2\n")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=clean_env(), timeout=300)
    if proc.returncode == 97 or "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip("mounting a small disk needs root and mount namespaces")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "The disk is full: no room to write" in proc.stderr and "stage import failed" in proc.stderr
    assert not (data / "imported" / "fr" / "common_voice" / "rejects.csv").exists()


# -- issue 18, class 5: a bomb never lands outside the data root ---------------------------------------------

def test_a_line_bomb_leaves_nothing_in_a_small_tmpdir(tmp_path):
    """A train.tsv that inflates to 512 MB without a newline, with TMPDIR on a disk of 1 MB: the table is cut
    as it streams and spooled under the dataset's own folder, so it fills nothing, and is one bad row."""
    clips, rows = good_rows()
    clips["after.mp3"] = mp3("La mer est calme ce soir.")
    train = tsv(rows["train"]), 512 << 20, b"\n" + tsv([("after.mp3", "La mer est calme ce soir.")]).split(b"\n", 1)[1]
    archive = hostile_cv(tmp_path, clips, rows, before=[(f"{RELEASE}/fr/train.tsv", train)])
    small, out = tmp_path / "small-tmp", tmp_path / "imported"
    small.mkdir()
    script = (f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(small))} || exit 97\n"
              f"TMPDIR={shlex.quote(str(small))} exec {shlex.quote(sys.executable)} -c "
              + shlex.quote("import sys\nfrom pathlib import Path\n"
                            "from dstrain.importers.common_voice import CORPUS\n"
                            "from dstrain.languages.fr import LANGUAGE\n"
                            f"params = CORPUS.Params(release='{RELEASE}', locale='fr', max_duration=5.0)\n"
                            "CORPUS.prepare(Path(sys.argv[1]), '0' * 64, Path(sys.argv[2]), LANGUAGE.normalize, "
                            "params, 2)\n") + f" {shlex.quote(str(archive))} {shlex.quote(str(out))}\n")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    if proc.returncode == 97 or "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
        pytest.skip("mounting a small disk needs root and mount namespaces")
    assert proc.returncode == 0, proc.stderr
    assert [(r["source"], r["reason"], r["detail"]) for r in read_csv(out / "rejects.csv")] == [
        ("train.tsv:3", "unreadable_row", "longer than 65536 bytes")]
    assert kept_rows(out)["la mer est calme ce soir"][0] == "train"


def test_a_table_is_cut_as_it_streams_and_bounded():
    source = io.BytesIO(b"head\n" + b"x" * (5 * MAX_LINE) + b"\nok\n")
    copy = io.BytesIO()
    copy_table(source, copy, 1 << 20, "t.tsv")
    assert [len(line) for line in copy.getvalue().split(b"\n")] == [4, MAX_LINE + 1, 2, 0]
    with pytest.raises(DstrainError, match="t.tsv is over 1 MB"):
        copy_table(io.BytesIO(b"row\n" * (1 << 19)), io.BytesIO(), 1 << 20, "t.tsv")
