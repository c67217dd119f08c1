"""Finding the user's Common Voice archive in sources/: any release, read from the archive itself."""
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import dstrain
from tests.fixtures.common_voice import build_common_voice
from tests.fixtures.speech import Row

ROWS = [Row("train", "fr_a.mp3", "Le chat dort."), Row("train", "fr_b.mp3", "La mer est calme."),
        Row("dev", "fr_c.mp3", "Il pleut."), Row("test", "fr_d.mp3", "Le café est chaud.")]
#: A release no default names, as a user would bring one.
OTHER = "cv-corpus-42.0-2098-06-30"


@pytest.fixture(scope="module")
def other_release(tmp_path_factory) -> Path:
    return build_common_voice(tmp_path_factory.mktemp("cv-other"), rows=ROWS, release=OTHER)


def setup(tmp_path: Path, archives, release=None) -> Path:
    """A data root whose sources/ holds ``archives`` ({name: built archive}), and a config that pins ``release``."""
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    for name, archive in archives.items():
        shutil.copy(archive, data / "sources" / name)
    lines = [f'data_root = "{data}"', "workers = 2", 'datasets = ["common_voice"]', "[dataset.common_voice]",
             "max_duration = 5.0"] + ([f'release = "{release}"'] if release else [])
    (tmp_path / "dstrain.toml").write_text("\n".join(lines) + "\n")
    return data


def run_import(tmp_path: Path, check=True):
    return dstrain("run", "-l", "fr", "--config", tmp_path / "dstrain.toml", "--to", "import", check=check)


def manifest(data: Path) -> dict:
    return json.loads((data / "imported/fr/common_voice/manifest.json").read_text())


def test_the_only_archive_of_the_locale_is_used_whatever_its_release(other_release, tmp_path):
    data = setup(tmp_path, {other_release.name: other_release})
    run_import(tmp_path)
    found = manifest(data)
    assert found["release"] == OTHER and found["source"]["archive"] == other_release.name
    assert found["counts"] == {"train": 2, "dev": 1, "test": 1}


def test_the_release_recorded_is_the_archives_own_not_its_file_name(other_release, tmp_path):
    data = setup(tmp_path, {"cv-corpus-21.0-2025-03-14-fr.tar.gz": other_release})
    proc = run_import(tmp_path)
    assert manifest(data)["release"] == OTHER
    assert f"cv-corpus-21.0-2025-03-14-fr.tar.gz holds release {OTHER} (its top folder)" in proc.stderr


def test_a_pinned_release_the_archive_contradicts_is_refused(other_release, tmp_path):
    data = setup(tmp_path, {"cv-corpus-21.0-2025-03-14-fr.tar.gz": other_release}, release="cv-corpus-21.0-2025-03-14")
    proc = run_import(tmp_path, check=False)
    assert proc.returncode != 0
    assert f"holds release {OTHER} (its top folder), not cv-corpus-21.0-2025-03-14" in proc.stderr
    assert f'release = "{OTHER}"' in proc.stderr and "DSTRAIN_DATASET__COMMON_VOICE__RELEASE" in proc.stderr
    assert not (data / "imported/fr/common_voice/manifest.json").exists()


def test_several_archives_are_named_with_how_to_pick_one(other_release, tmp_path):
    setup(tmp_path, {other_release.name: other_release, "cv-corpus-43.0-2098-09-30-fr.tar.gz": other_release,
                     "cv-corpus-43.0-2098-09-30-de.tar.gz": other_release})
    proc = run_import(tmp_path, check=False)
    assert proc.returncode != 0
    assert "holds 2 Common Voice archives for locale 'fr'" in proc.stderr
    assert other_release.name in proc.stderr and "cv-corpus-43.0-2098-09-30-fr.tar.gz" in proc.stderr
    assert "-de.tar.gz" not in proc.stderr
    assert 'set release (e.g. release = "cv-corpus-43.0-2098-09-30")' in proc.stderr


def test_none_found_names_the_settings_that_choose_the_release(tmp_path):
    data = setup(tmp_path, {})
    proc = run_import(tmp_path, check=False)
    assert proc.returncode != 0
    assert "no Common Voice archive for locale 'fr' in " + str(data / "sources") in proc.stderr
    assert "cv-corpus-*-fr.tar.gz" in proc.stderr
    for setting in ("set release", "archive (the file name", "mdc_dataset_id",
                    "DSTRAIN_DATASET__COMMON_VOICE__RELEASE"):
        assert setting in proc.stderr


def test_a_pinned_release_not_in_sources_points_at_the_one_that_is(other_release, tmp_path):
    setup(tmp_path, {other_release.name: other_release}, release="cv-corpus-21.0-2025-03-14")
    proc = run_import(tmp_path, check=False)
    assert proc.returncode != 0
    assert "cv-corpus-21.0-2025-03-14-fr.tar.gz is not in" in proc.stderr
    assert f'sources/ holds {other_release.name}: to use it instead, set release = "{OTHER}"' in proc.stderr


def test_a_file_that_is_no_tar_archive_is_named_not_traced(tmp_path):
    broken = tmp_path / "cv-corpus-1.0-2000-01-01-fr.tar.gz"
    broken.write_bytes(b"<html>Sign in to download</html>\n")
    setup(tmp_path, {broken.name: broken})
    proc = run_import(tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    # The download's own check finds it first: named, with the command that removes it.
    assert f"{broken.name} was not used: it is an HTML page" in proc.stderr
    assert f"rm {tmp_path / 'data' / 'sources' / broken.name}" in proc.stderr
