"""The language contract: built-ins, pip plugins, broken modules, new modules, English-compatible mode."""
import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dstrain.pipeline.language import Language
from dstrain.pipeline.registry import available_languages
from tests.conftest import clean_env, dstrain
from tests.fixtures.common_voice import build_common_voice
from tests.fixtures.outputs import listing
from tests.fixtures.speech import Row

PLUGIN = Path(__file__).parent / "plugin_language"


def test_every_builtin_language_passes_its_own_cases():
    found = available_languages()
    assert {"fr", "en"} <= set(found)
    for code, entry in found.items():
        assert entry.language.failing_cases() == [], code
        for raw, expected in entry.language.cases:
            if expected is not None:
                assert set(expected) <= set(entry.language.letters + " "), (code, raw)


def fake_distribution(site: Path, module: str, source: str, entry: str) -> None:
    """A module plus the dist-info that registers it, as pip would install it."""
    (site / (module + ".py")).write_text(source, encoding="utf-8")
    info = site / (module + "-0.1.dist-info")
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dstrain.languages]\n{entry}\n")


BROKEN = '''
from dstrain.pipeline.language import DatasetSpec, Language

LANGUAGE = Language(
    code="xb", name="Broken", locale="xb", normalize=lambda label: label.upper(),
    cases=(("bonjour", "bonjour"),), letters="abcdefghijklmnopqrstuvwxyz",
    datasets=(DatasetSpec("common_voice", {"release": "cv-corpus-1.0", "locale": "xb"}),),
)
'''


def test_a_module_whose_case_fails_is_refused_before_any_download(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "broken_lang", BROKEN, "xb = broken_lang:LANGUAGE")
    env = clean_env(PYTHONPATH=str(site))
    assert "plugin broken_lang" in dstrain("languages", env=env).stdout
    proc = dstrain("run", "-l", "xb", "--data-root", tmp_path / "data", env=env, check=False)
    assert proc.returncode == 2
    assert "normalize('bonjour') gave 'BONJOUR', expected 'bonjour'" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_two_providers_of_one_language_is_an_error(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "other_fr", BROKEN.replace('code="xb"', 'code="fr"'), "fr = other_fr:LANGUAGE")
    proc = dstrain("languages", env=clean_env(PYTHONPATH=str(site)), check=False)
    assert proc.returncode == 2 and "language 'fr' is defined twice: built-in and plugin other_fr" in proc.stderr


def test_a_plugin_with_the_new_import_name_loads_without_a_warning(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "new_lang", BROKEN.replace('code="xb"', 'code="xn"'), "xn = new_lang:LANGUAGE")
    proc = dstrain("languages", env=clean_env(PYTHONPATH=str(site)))
    assert "xn     Broken" in proc.stdout and "plugin new_lang" in proc.stdout
    assert "language plugin new_lang" not in proc.stderr  # (the old-style test plugin is warned about)


OLD_STYLE = BROKEN.replace("from dstrain.pipeline.language", "from pipeline.language").replace('code="xb"', 'code="xo"')


def test_a_plugin_with_the_old_import_name_still_loads_and_is_told_the_new_one(tmp_path, monkeypatch):
    """Plugins written when dstrain's modules were imported as pipeline.*: they keep working, with a warning."""
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "old_lang", OLD_STYLE, "xo = old_lang:LANGUAGE")
    monkeypatch.syspath_prepend(str(site))
    with pytest.deprecated_call(match=r"language plugin old_lang \(old_lang:LANGUAGE\) imports pipeline, "
                                      r"pipeline.language: .*from dstrain.pipeline.language import Language"):
        found = available_languages()
    assert found["xo"].origin == "plugin old_lang"
    assert isinstance(found["xo"].language, Language)  # the very class: the old name is the new module


def test_the_old_style_plugin_package_is_served_and_the_user_told(plugin_installed):
    """tests/plugin_language still says `from pipeline.language import ...`, as plugins published before did."""
    proc = dstrain("languages")
    assert "eo     Esperanto            eo       plugin dstrain-lang-eo" in proc.stdout
    assert ("language plugin dstrain-lang-eo (dstrain_lang_eo:LANGUAGE) imports pipeline, pipeline.language: that "
            "name is deprecated") in proc.stderr
    assert "Write `from dstrain.pipeline.language import Language`" in proc.stderr


@pytest.fixture(scope="module")
def plugin_installed():
    if importlib.util.find_spec("dstrain_lang_eo") is None:  # tests/run.sh installs it; a bare pytest may not
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", str(PLUGIN)], check=True)


EO_ROWS = [
    Row("train", "eo_1.mp3", "Saluton, mondo!"),
    Row("train", "eo_2.mp3", "Ĉu vi parolas Esperanton?"),
    Row("train", "eo_3.mp3", "La ĝardeno estas bela."),
    Row("train", "eo_4.mp3", "Mi havas 3 katojn."),
    Row("dev", "eo_5.mp3", "La suno brilas hodiaŭ."),
    Row("test", "eo_6.mp3", "Ŝi manĝas pomon."),
]


def test_a_language_from_a_pip_package_runs_to_the_alphabet(plugin_installed, tmp_path):
    assert "eo     Esperanto            eo       plugin dstrain-lang-eo" in dstrain("languages").stdout
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    build_common_voice(data / "sources", rows=EO_ROWS, release="cv-corpus-99.0-2099-01-01", locale="eo", voice="eo")
    env = clean_env(DSTRAIN_DATASET__COMMON_VOICE__RELEASE="cv-corpus-99.0-2099-01-01")
    dstrain("run", "-l", "eo", "--data-root", data, "--to", "alphabet", env=env)
    labels = [line for line in (data / "runs/eo/alphabet.txt").read_text().split("\n")
              if line and not line.startswith("#")]
    assert {"ĉ", "ĝ", "ŝ", "ŭ"} <= set(labels)
    rejects = (data / "imported/eo/common_voice/rejects.csv").read_text()
    assert "eo_4.mp3,invalid_label,Mi havas 3 katojn." in rejects


def test_new_language_writes_a_module_that_passes_its_own_check(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    out = dstrain("new-language", "br", "--name", "Breton", "--locale", "br-FR",
                  "--letters", "abcdefghijklmnopqrstuvwxyzñùê'", "--dir", site).stdout
    module = site / "br.py"
    assert f"wrote {module}" in out
    source = module.read_text()
    assert source.count("QUESTION") >= 5 and 'LETTERS = "abcdefghijklmnopqrstuvwxyzñùê\'"' in source
    fake_distribution(site, "br_entry", "from br import LANGUAGE\n", "br = br_entry:LANGUAGE")
    proc = dstrain("check", "-l", "br", "--data-root", tmp_path / "data", "--to", "alphabet",
                   env=clean_env(PYTHONPATH=str(site)))
    assert "language br: 3 test cases pass" in proc.stderr
    again = dstrain("new-language", "br", "--name", "Breton", "--dir", site, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_english_compatible_mode_transliterates_and_uses_the_english_alphabet(cv_archive, tmp_path):
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(cv_archive, data / "sources" / cv_archive.name)
    env = clean_env(DSTRAIN_DATASET__COMMON_VOICE__RELEASE="cv-corpus-99.0-2099-01-01")
    dstrain("run", "-l", "fr", "--data-root", data, "--datasets", "common_voice", "--english-compatible",
            "--to", "alphabet", env=env)
    labels = [line for line in (data / "runs/fr/alphabet.txt").read_text().split("\n")
              if line and not line.startswith("#")]
    assert labels == [" "] + list("abcdefghijklmnopqrstuvwxyz'")
    with listing(data / "runs/fr/clean", "train").open(encoding="utf-8") as handle:
        transcripts = [row["transcript"] for row in csv.DictReader(handle)]
    assert "bonjour a tous et bienvenue" in transcripts and "le train part a l'heure" in transcripts
    assert all(t.isascii() for t in transcripts)


WITH_DEFAULTS = BROKEN.replace('label.upper()', 'label').replace(
    'datasets=', 'defaults={"train.dropout_rate": 0.2, "lm.alpha": 0.6}, datasets=')


def test_a_language_sets_its_own_defaults_below_the_config_file(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "tuned_lang", WITH_DEFAULTS, "xb = tuned_lang:LANGUAGE")
    config = tmp_path / "c.toml"
    config.write_text("[lm]\nalpha = 0.9\n")
    out = dstrain("config", "-l", "xb", "--config", config, env=clean_env(PYTHONPATH=str(site))).stdout
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert " 0.2 " in lines["train.dropout_rate"] and lines["train.dropout_rate"].endswith("[language xb]")
    assert " 0.9 " in lines["lm.alpha"] and lines["lm.alpha"].endswith(f"[file {config}]")

    site2 = tmp_path / "site2"
    site2.mkdir()
    fake_distribution(site2, "typo_lang", WITH_DEFAULTS.replace("dropout_rate", "dropout"), "xb = typo_lang:LANGUAGE")
    proc = dstrain("config", "-l", "xb", env=clean_env(PYTHONPATH=str(site2)), check=False)
    assert proc.returncode == 2 and "unknown setting 'train.dropout' (from language xb)" in proc.stderr
