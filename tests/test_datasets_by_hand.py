"""Sources only a person can place: without them, a run that was not told which datasets to use goes on with the
others, and says which it left out (config.py's _waiting_for_hands).

French has two: Common Voice (its terms must be accepted) and CCPMF (its parts are asked for by hand).
"""
import shutil

from dstrain.pipeline.config import resolve
from tests.conftest import RELEASE, clean_env, dstrain

CCPMF_ZIP = "transcriptionsxml_audiomp3_mefr_ccpmf_2012-2020_2.zip"


def _keys(datasets):
    return [d.key for d in datasets]


def test_the_french_sources_placed_by_hand_are_left_out_until_they_are_there(tmp_path, cv_archive):
    sources = tmp_path / "sources"
    sources.mkdir()
    config = resolve(environ={}, flags={"language": "fr", "data_root": str(tmp_path)})
    assert _keys(config.waiting) == ["common_voice", "ccpmf"]
    assert _keys(config.datasets) == ["lingua_libre", "m_ailabs", "openslr57", "trainingspeech"]
    shown = dstrain("config", "-l", "fr", "--data-root", tmp_path, env=clean_env()).stdout
    assert "a run goes on without common_voice, ccpmf: placed in sources/ by hand, not there yet" in shown

    # Placed: a Common Voice release, the first of CCPMF's numbered parts.
    shutil.copy(str(cv_archive), str(sources / f"{RELEASE}-fr.tar.gz"))
    (sources / (CCPMF_ZIP + ".001")).write_bytes(b"PK")
    config = resolve(environ={}, flags={"language": "fr", "data_root": str(tmp_path)})
    assert config.waiting == () and _keys(config.datasets)[0] == "common_voice" and "ccpmf" in _keys(config.datasets)


def test_datasets_named_or_with_an_address_are_never_left_out(tmp_path):
    (tmp_path / "sources").mkdir()
    named = resolve(environ={}, flags={"language": "fr", "data_root": str(tmp_path),
                                       "datasets": "common_voice,lingua_libre"})
    assert named.waiting == () and _keys(named.datasets) == ["common_voice", "lingua_libre"]
    # Added to the defaults: the defaults still go on without what is not placed.
    added = resolve(environ={}, flags={"language": "fr", "data_root": str(tmp_path), "datasets": "+mls"})
    assert _keys(added.waiting) == ["common_voice", "ccpmf"] and _keys(added.datasets)[-1] == "mls"
    # With somewhere to download them from, they are downloaded.
    addressed = resolve(environ={"DSTRAIN_DATASET__CCPMF__URL": "https://mirror.example/ccpmf.zip",
                                 "DSTRAIN_DATASET__COMMON_VOICE__MDC_DATASET_ID": "cv-fr"},
                        flags={"language": "fr", "data_root": str(tmp_path)})
    assert addressed.waiting == ()


def test_a_language_whose_every_dataset_waits_is_not_left_with_none(tmp_path):
    """English has only Common Voice: nothing to go on with, so it stays, and the download stage says how to get
    it (tests/test_download.py)."""
    (tmp_path / "sources").mkdir()
    config = resolve(environ={}, flags={"language": "en", "data_root": str(tmp_path)})
    assert config.waiting == () and _keys(config.datasets) == ["common_voice"]
