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
from tests.conftest import clean_env, dstrain
from tests.fixtures.outputs import listing, read_csv, sha256
from tests.fixtures.speech import KEPT, SHARES
from tests.http_server import FileServer

TESTS = Path(__file__).parent


def fixture_of(name: str):
    """tests/fixtures/<name>.py, the corpus's small copy; None when it has none."""
    module = "tests.fixtures." + name
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


#: Every corpus the registry finds, with its fixture module (tests/fixtures/<corpus>.py): none is named here.
FIXTURES = {name: fixture_of(name) for name in available_importers()}
#: Those that say how to import them (PARAMS) get every check below; the others have a test module of their own.
CORPORA = {name: fixture.ROWS for name, fixture in FIXTURES.items() if hasattr(fixture, "PARAMS")}


def test_every_corpus_has_its_fixture_and_takes_the_common_checks_or_has_tests_of_its_own():
    """docs/adding-a-corpus.md's convention, so a new corpus needs no edit here: tests/fixtures/<name>.py builds
    its archive (build_<name>); with PARAMS, ROWS and LANGUAGE it takes every check below, else it has
    tests/test_<name>*.py."""
    for name, fixture in FIXTURES.items():
        assert fixture is not None, f"importers/{name}.py has no tests/fixtures/{name}.py"
        assert callable(getattr(fixture, "build_" + name, None)), f"tests/fixtures/{name}.py has no build_{name}"
        if name in CORPORA:
            assert fixture.ROWS and fixture.LANGUAGE.normalize, name
        else:
            assert sorted(TESTS.glob(f"test_{name}*.py")), f"{name}: no PARAMS in its fixture, no tests/test_{name}*.py"
    # Those that take the common checks today keep them (a fixture that lost its PARAMS would skip them silently).
    assert {"lingua_libre", "m_ailabs", "openslr57", "trainingspeech"} <= set(CORPORA)


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


def corpus_plugin(site: Path, module: str, source: str, entry: str) -> None:
    """A corpus module plus the dist-info that registers it in dstrain.corpora, as pip would install it."""
    (site / (module + ".py")).write_text(source, encoding="utf-8")
    info = site / (module + "-0.1.dist-info")
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dstrain.corpora]\n{entry}\n")


#: M-AILABS's layout under another name, from another package: a corpus a community publishes.
ELSEWHERE = '''
import dataclasses
from dstrain.importers.m_ailabs import CORPUS as M_AILABS


class Elsewhere(type(M_AILABS)):
    """Read as M-AILABS is."""


CORPUS = Elsewhere(**dict({f.name: getattr(M_AILABS, f.name) for f in dataclasses.fields(M_AILABS)},
                          licence="CC0 (a test)", homepage="https://example.org/elsewhere"))
'''

LANGUAGE_OF_ELSEWHERE = '''
from dstrain.languages.fr import LANGUAGE as FR
from dataclasses import replace
from dstrain.pipeline.language import DatasetSpec

LANGUAGE = replace(FR, code="xe", datasets=(DatasetSpec("elsewhere", {"language": "fr_FR"}),))
'''


def test_a_corpus_from_another_package_is_found_as_the_built_ins_are(served, tmp_path):
    server, archives = served
    site, languages = tmp_path / "site", tmp_path / "languages"
    site.mkdir()
    languages.mkdir()
    corpus_plugin(site, "elsewhere", ELSEWHERE, "elsewhere = elsewhere:CORPUS")
    (languages / "xe.py").write_text(LANGUAGE_OF_ELSEWHERE, encoding="utf-8")
    archive = archives["m_ailabs"]
    env = clean_env(PYTHONPATH=str(site), DSTRAIN_LANGUAGE_DIRS=str(languages),
                    DSTRAIN_DATASET__ELSEWHERE__URL=f"{server.url}/{archive.name}",
                    DSTRAIN_DATASET__ELSEWHERE__SHA256=sha256(archive))
    dstrain("run", "-l", "xe", "--data-root", tmp_path / "data", "--to", "import", env=env)
    imported = tmp_path / "data/imported/xe/elsewhere"
    manifest = json.loads((imported / "manifest.json").read_text())
    assert manifest["importer"] == "elsewhere" and manifest["licence"] == "CC0 (a test)"
    assert read_csv(listing(imported, "train"))


def test_two_providers_of_one_corpus_is_an_error(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    corpus_plugin(site, "m_ailabs", ELSEWHERE.replace("Elsewhere", "Again"), "again = m_ailabs:CORPUS")
    proc = dstrain("config", "-l", "fr", env=clean_env(PYTHONPATH=str(site)), check=False)
    assert proc.returncode == 2 and "corpus 'm_ailabs' is defined twice: built-in and plugin m_ailabs" in proc.stderr
