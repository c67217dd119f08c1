"""Every corpus whose fixture says how to import it, on a small archive in its real format: the same checks."""
import importlib
import json
import shutil
import stat
import wave
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from dstrain.importers.kit.split import split_of
from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.paths import SPLITS
from dstrain.pipeline.registry import available_importers, get_importer
from dstrain.pipeline.sources.archive import extract
from tests.conftest import dstrain
from tests.fixtures.outputs import listing, read_csv, sha256
from tests.fixtures.speech import KEPT, SHARES
from tests.http_server import FileServer

#: Every corpus has a fixture module named after it (tests/fixtures/<corpus>.py).
FIXTURES = {name: importlib.import_module("tests.fixtures." + name) for name in available_importers()}
#: Those that say how to import them (PARAMS) get every check below; the others have a test module of their own.
CORPORA = {name: fixture.ROWS for name, fixture in FIXTURES.items() if hasattr(fixture, "PARAMS")}


def test_every_corpus_has_its_fixture_and_most_take_the_common_checks():
    assert set(FIXTURES) == {"ccpmf", "common_voice", "lingua_libre", "m_ailabs", "mls", "openslr57", "trainingspeech"}
    assert set(CORPORA) == {"lingua_libre", "m_ailabs", "openslr57", "trainingspeech"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    archives = {name: getattr(FIXTURES[name], "build_" + name)(www) for name in CORPORA}
    with FileServer(www) as server:
        yield server, archives


def import_over_http(name: str, served, root: Path):
    """Download with the fixture's parameters (plus this server's URL and sha256), then prepare."""
    server, archives = served
    corpus = get_importer(name)
    params = corpus.Params(**dict(FIXTURES[name].PARAMS, url=f"{server.url}/{archives[name].name}",
                                  sha256=sha256(archives[name])))
    digest = corpus.download(params, root / "sources")
    manifest = corpus.prepare(corpus.archive_path(params, root / "sources"), digest, root / name,
                              FIXTURES[name].LANGUAGE.normalize, params, 2)
    return manifest, root / name


@pytest.fixture(scope="module")
def imported(served, tmp_path_factory):
    """Every corpus imported once, shared by the assertions below."""
    root = tmp_path_factory.mktemp("imported")
    return {name: import_over_http(name, served, root) for name in CORPORA}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_exactly_the_good_rows_are_kept_in_their_split(imported, name):
    _, directory = imported[name]
    clips = CORPORA[name]
    kept = {}
    for split in SPLITS:
        for row in read_csv(directory / (split + ".csv")):
            assert row["transcript"] not in kept, "a transcript appears twice"
            kept[row["transcript"]] = split
            assert int(row["wav_filesize"]) == (directory / row["wav_filename"]).stat().st_size
    assert kept == {FIXTURES[name].LANGUAGE.normalize(c.text): c.split for c in clips if c.outcome == KEPT}
    assert set(kept.values()) == set(SPLITS), "the small corpus fills every split"


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_every_other_row_is_rejected_for_its_reason(imported, name):
    _, directory = imported[name]
    clips = CORPORA[name]
    got = []
    for reject in read_csv(directory / "rejects.csv"):
        key = max((c.key for c in clips if reject["source"].endswith(c.key)), key=len)
        got.append((key, reject["reason"], reject["split"]))
    assert sorted(got) == sorted((c.key, c.outcome, c.split) for c in clips if c.outcome != KEPT)


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_speakers_never_cross_splits(imported, name):
    _, directory = imported[name]
    group_of = {FIXTURES[name].LANGUAGE.normalize(c.text): c.group for c in CORPORA[name] if c.outcome == KEPT}
    splits_of = {}
    for split in SPLITS:
        for row in read_csv(directory / (split + ".csv")):
            splits_of.setdefault(group_of[row["transcript"]], set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of.values()), splits_of


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_manifest_records_source_licence_and_counts(imported, served, name):
    manifest, directory = imported[name]
    _, archives = served
    clips = CORPORA[name]
    assert manifest == json.loads((directory / "manifest.json").read_text())
    assert manifest["importer"] == name and manifest["licence"]
    assert manifest["source"] == {"archive": archives[name].name, "sha256": sha256(archives[name]),
                                  "url": manifest["source"]["url"]}
    assert manifest["source"]["url"].endswith("/" + archives[name].name)
    assert manifest["counts"] == {s: sum(c.outcome == KEPT and c.split == s for c in clips) for s in SPLITS}
    reasons = [c.outcome for c in clips if c.outcome != KEPT]
    assert manifest["rejected"] == {reason: reasons.count(reason) for reason in sorted(set(reasons))}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_the_split_is_the_same_on_every_import(imported, served, tmp_path, name):
    _, first = imported[name]
    _, again = import_over_http(name, served, tmp_path)
    for output in ("train.csv", "dev.csv", "test.csv", "rejects.csv"):
        assert (again / output).read_bytes() == (first / output).read_bytes()


def test_ogg_recordings_become_16khz_mono_16bit_wavs(imported):
    _, directory = imported["lingua_libre"]
    for split in SPLITS:
        for row in read_csv(directory / (split + ".csv")):
            with wave.open(str(directory / row["wav_filename"])) as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)


def test_speaker_hash_is_pinned_and_follows_the_shares():
    # Pinned: a change would move speakers between splits, leaking test voices into train.
    assert [split_of(s, SHARES) for s in ("Alice", "Bob (Robert)", "Dédé")] == ["train", "dev", "test"]
    names = [f"speaker{i}" for i in range(20000)]
    counts = {s: 0 for s in SPLITS}
    for speaker in names:
        counts[split_of(speaker, (0.8, 0.1, 0.1))] += 1
    assert abs(counts["train"] / len(names) - 0.8) < 0.02 and abs(counts["test"] / len(names) - 0.1) < 0.02
    assert {split_of(speaker, (1, 0, 0)) for speaker in names[:200]} == {"train"}
    assert {split_of(speaker, (0, 0, 1)) for speaker in names[:200]} == {"test"}


@pytest.mark.parametrize("field, value, phrase", [
    ("split", (0.5, 0.5, 0.5), "add up to 1"),
    ("skip", ("Modjou/(",), "is not a regular expression"),
])
def test_bad_parameters_are_refused(field, value, phrase):
    params = dict(FR.dataset("lingua_libre").params)
    params[field] = value
    with pytest.raises(ValidationError, match=phrase):
        get_importer("lingua_libre").Params(**params)


def test_zip_extraction_refuses_escaping_paths_and_skips_links(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(str(evil), "w") as zip_file:
        zip_file.writestr("ok/../../escape.txt", b"owned")
    with pytest.raises(DstrainError, match="leaves the extraction directory"):
        extract(evil, tmp_path / "out", "sha")
    assert not (tmp_path / "escape.txt").exists()

    links = tmp_path / "links.zip"
    with zipfile.ZipFile(str(links), "w") as zip_file:
        link = zipfile.ZipInfo("corpus/passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zip_file.writestr(link, "/etc/passwd")
        zip_file.writestr("corpus/word.ogg", b"data")
    target = extract(links, tmp_path / "links", "sha")
    assert not (target / "corpus/passwd").exists() and (target / "corpus/word.ogg").read_bytes() == b"data"


def write_config(path: Path, data: Path, served, **overrides) -> Path:
    """A config for the Lingua Libre and M-AILABS archives of the test server; ``overrides`` per dataset."""
    server, archives = served
    lines = [f'data_root = "{data}"', "workers = 2"]
    for name in ("lingua_libre", "m_ailabs"):
        values = {"url": f"{server.url}/{archives[name].name}", "sha256": sha256(archives[name]),
                  "split": list(SHARES), "max_duration": FIXTURES[name].PARAMS.get("max_duration", 15.0)}
        values.update(overrides.get(name, {}))
        lines += [f"[dataset.{name}]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_import(config: Path, check=True):
    return dstrain("run", "-l", "fr", "--datasets", "lingua_libre,m_ailabs", "--config", config, "--to", "import",
                   check=check)


def files(data: Path):
    return {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file() and "logs" not in p.parts}


def test_rerun_does_nothing_and_a_new_skip_list_reimports_only_its_dataset(served, tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, served)
    run_import(config)
    imported = data / "imported" / "fr"
    assert {r["transcript"] for r in read_csv(listing(imported / "lingua_libre", "train"))} == {"bonjour", "maison",
                                                                                       "l'école"}

    before = files(data)
    proc = run_import(config)
    assert "✓ download  up to date" in proc.stderr and "✓ import    up to date" in proc.stderr
    after = files(data)
    assert [p.name for p, m in before.items() if after.get(p) != m] == ["check.json"]

    before = files(data)
    config = write_config(tmp_path / "c.toml", data, served, lingua_libre={"skip": ["Modjou/.*", "Alice/.*"]})
    proc = run_import(config)
    assert "m_ailabs: already imported" in proc.stderr and "▶ import" in proc.stderr
    assert all(before[p] == m for p, m in files(data / "imported/fr/m_ailabs").items())
    assert {r["transcript"] for r in read_csv(listing(imported / "lingua_libre", "train"))} == {"l'école"}
    skipped = {r["source"] for r in read_csv(imported / "lingua_libre/rejects.csv") if r["reason"] == "skipped"}
    assert skipped == {"Q21-fra-French/Alice/bonjour.ogg", "Q21-fra-French/Alice/maison.ogg",
                       "Q21-fra-French/Modjou/chat.ogg"}


@pytest.mark.parametrize("setting, cause", [
    ({"url": "/gone/Q21-fra-French.zip"}, "answered HTTP 404"),
    ({"sha256": "0" * 64}, "was expected"),
])
def test_a_broken_source_fails_its_dataset_and_says_how_to_skip_it(served, tmp_path, setting, cause):
    server, _ = served
    data = tmp_path / "data"
    if "url" in setting:
        setting = {"url": server.url + setting["url"]}
    proc = run_import(write_config(tmp_path / "c.toml", data, served, lingua_libre=setting), check=False)
    assert proc.returncode == 1
    assert "stage download failed: 1 of 2 datasets could not be obtained:\n  dataset lingua_libre:" in proc.stderr
    assert cause in proc.stderr
    assert "To go on without lingua_libre, add --datasets m_ailabs (or set datasets in your config)" in proc.stderr
    assert (data / "sources" / "fr_FR.tgz").exists()  # the other dataset was still downloaded
    assert "resume with:\n    dstrain run -l fr --datasets lingua_libre,m_ailabs --config" in proc.stderr
    assert not (data / "imported").exists()


def test_a_placed_archive_is_used_without_a_download(served, tmp_path):
    """Offline use: the archive put in sources/ by hand is verified and imported."""
    _, archives = served
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    for name in ("lingua_libre", "m_ailabs"):
        shutil.copy(str(archives[name]), str(data / "sources" / archives[name].name))
    nowhere = {"url": "http://127.0.0.1:9/unreachable"}
    run_import(write_config(tmp_path / "c.toml", data, served, lingua_libre=nowhere, m_ailabs=nowhere))
    assert listing(data / "imported/fr/m_ailabs", "train").exists()


@pytest.mark.parametrize("source, narrator", [
    ("LeComteDeMonteCristoT1Chap1_0001.wav", "Saphir"), ("LeComteDeMonteCristoT2Chap41_0420.wav", "Saphir"),
    ("LesMysteresDeParisT5P10C3_0007.wav", "Jean-François Ricou"), ("LaGloireDuComacchio_0012.wav", "Eric"),
    ("LeDernierJourDunCondamne_0001.wav", "Ka00"), ("MemoiresDuSergentBourgogne_0100.wav", "Raminagrobis"),
])
def test_trainingspeech_knows_the_narrator_of_every_source_of_its_sources_json(source, narrator):
    from dstrain.importers import trainingspeech

    assert trainingspeech.NARRATORS[trainingspeech._book(source)] == narrator


def test_trainingspeech_splits_by_narrator_so_chapters_of_one_voice_stay_together(served, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="dstrain"):
        manifest, directory = import_over_http("trainingspeech", served, tmp_path)
    assert "no narrator known for Candide, LesMiserables, MadameBovary" in caplog.text
    assert manifest["split"] == {"by": "narrator", "shares": list(SHARES)}
    test = {Path(row["wav_filename"]).name for row in read_csv(directory / "test.csv")}
    assert {"LeComteDeMonteCristoT1Chap1_0001.wav", "LeComteDeMonteCristoT1Chap2_0001.wav"} <= test
