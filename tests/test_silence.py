"""clean rejects clips that hold no speech, or whose speaking rate nobody has, and says so in its report."""
import shutil

import pytest

from tests.conftest import clean_env, dstrain, write_config
from tests.fixtures.common_voice import build_common_voice
from tests.fixtures.outputs import read_csv
from tests.fixtures.speech import Row

ROWS = [
    Row("train", "good_1.mp3", "Le chat dort sur le canapé."),
    Row("train", "good_2.mp3", "Nous irons à la plage demain matin."),
    Row("train", "good_3.mp3", "Elle lit un livre près de la fenêtre."),
    # Labelled with a sentence, as the probe's clip was: nothing in it is louder than -120 dBFS.
    Row("train", "silence.mp3", "Cette phrase n'a jamais été dite.", audio="silence"),
    # A hiss at about -60 dBFS: silent under the default threshold (-50), not under -70.
    Row("train", "hiss.mp3", "Un souffle et rien d'autre.", audio="hiss"),
    # A short word under a sentence: long enough for DeepSpeech's frames (import keeps it), too fast to say.
    Row("train", "fast.mp3", "Bonjour à tous ici", spoken="oui"),
    # A whole sentence said under one short word: far too slow.
    Row("train", "slow.mp3", "Oui.",
        spoken="Les enfants jouent dans le jardin pendant que leurs parents regardent la mer", speed=120),
    Row("dev", "dev_1.mp3", "Le soleil se lève à l'est."),
    Row("test", "test_1.mp3", "Le café est chaud."),
]


@pytest.fixture(scope="module", params=["wav", "sdb"])
def cleaned(tmp_path_factory, request):
    """The rows imported and cleaned, as WAV files or in sample databases (Opus): clean hears both."""
    root = tmp_path_factory.mktemp("silence")
    archive = build_common_voice(root, ROWS)
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    shutil.copy(archive, data / "sources" / archive.name)
    config = write_config(root / "dstrain.toml", data, clips=request.param)
    dstrain("run", "--language", "fr", "--config", config, "--to", "clean")
    return data, config


def _quarantined(data):
    return {row["source"].rsplit("/", 1)[-1]: row for row in read_csv(data / "runs/fr/clean/quarantine.csv")}


def _kept(data):
    database = (data / "runs/fr/clean/train.sdb").exists()
    return {row["wav_filename"].rsplit("/", 1)[-1] for split in ("train", "dev", "test")
            for row in read_csv(data / f"runs/fr/clean/{split}{'.sdb' if database else ''}.csv")}


def test_silent_clips_and_impossible_rates_are_quarantined_with_their_measure(cleaned):
    data, _ = cleaned
    quarantined = _quarantined(data)
    assert {name: row["reason"] for name, row in quarantined.items()} == {
        "silence.mp3.wav": "silent", "hiss.mp3.wav": "silent", "fast.mp3.wav": "speaking_rate",
        "slow.mp3.wav": "speaking_rate"}
    assert "0.00s louder than -50 dBFS" in quarantined["silence.mp3.wav"]["detail"]
    assert "outside 1 to 30" in quarantined["fast.mp3.wav"]["detail"]
    assert _kept(data) == {"good_1.mp3.wav", "good_2.mp3.wav", "good_3.mp3.wav", "dev_1.mp3.wav", "test_1.mp3.wav"}


def test_the_report_counts_both_and_names_the_thresholds(cleaned):
    data, _ = cleaned
    report = (data / "runs/fr/clean/report.md").read_text()
    assert "| silent | 2 |" in report and "| speaking_rate | 2 |" in report
    assert "2 clips were silent" in report and "-50 dBFS (`clean.silence_dbfs`)" in report
    assert "2 clips had a speaking rate nobody has" in report


def test_the_silence_threshold_is_a_setting(cleaned):
    data, config = cleaned
    env = clean_env(DSTRAIN_CLEAN__SILENCE_DBFS="-70")
    dstrain("run", "--language", "fr", "--config", config, "--to", "clean", env=env)
    quarantined = _quarantined(data)
    assert quarantined["silence.mp3.wav"]["reason"] == "silent"
    assert "hiss.mp3.wav" not in quarantined, "a hiss 60 dB down is louder than -70 dBFS"
    assert "hiss.mp3.wav" in _kept(data)
    assert "-70 dBFS" in (data / "runs/fr/clean/report.md").read_text()
