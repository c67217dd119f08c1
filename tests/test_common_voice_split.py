"""split = "validated": the validated clips re-split away from the official dev/test speakers and sentences."""
import csv
import json
from pathlib import Path

import pytest

from dstrain.importers.common_voice import CORPUS
from dstrain.importers.kit.resplit import RULE
from dstrain.languages.fr import LANGUAGE as FR
from tests.conftest import clean_env, dstrain
from tests.fixtures.common_voice import VALIDATED_ROWS, build_common_voice
from tests.fixtures.outputs import listing
from tests.fixtures.speech import KEPT

RELEASE = "cv-corpus-77.0-2097-01-01"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return build_common_voice(tmp_path_factory.mktemp("cv-validated"), rows=VALIDATED_ROWS, release=RELEASE)


def run(release: Path, root: Path, **settings) -> Path:
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    (data / "sources" / release.name).symlink_to(release)
    # WAVs: the CSVs keep the rows in the order of the TSVs, which these tests read (a database is by length).
    env = clean_env(DSTRAIN_DATA_ROOT=str(data), DSTRAIN_DATASETS="common_voice", DSTRAIN_WORKERS="2",
                    DSTRAIN_CLIPS__FORMAT="wav",
                    DSTRAIN_DATASET__COMMON_VOICE__MAX_DURATION="5.0",
                    **{f"DSTRAIN_DATASET__COMMON_VOICE__{k.upper()}": str(v) for k, v in settings.items()})
    dstrain("run", "-l", "fr", "--to", "clean", env=env)
    return data


def clips(data: Path, split: str):
    with listing(data / "imported/fr/common_voice", split).open(encoding="utf-8", newline="") as handle:
        # <name>.mp3.wav (under clips/ for WAVs): the clip's own name
        return [Path(row["wav_filename"]).stem for row in csv.DictReader(handle)]


def stems(*splits):
    return [r.key for r in VALIDATED_ROWS if r.split in splits and r.outcome == KEPT]


@pytest.fixture(scope="module")
def validated(release, tmp_path_factory) -> Path:
    return run(release, tmp_path_factory.mktemp("validated"), split="validated", max_repeats=2)


def test_validated_trains_on_every_clip_whose_speaker_and_sentence_are_not_held_out(validated):
    assert clips(validated, "train") == stems("train", "validated")
    assert clips(validated, "dev") == stems("dev") and clips(validated, "test") == stems("test")
    rejects = (validated / "imported/fr/common_voice/rejects.csv").read_text()
    assert "train,validated.tsv:12 v_val_7.mp3,invalid_label" in rejects


def test_no_dev_or_test_speaker_or_sentence_reaches_train(validated):
    by_name = {r.key: r for r in VALIDATED_ROWS}
    train = [by_name[name] for name in clips(validated, "train")]
    held = [by_name[name] for split in ("dev", "test") for name in clips(validated, split)]
    assert {r.group for r in train}.isdisjoint(r.group for r in held)
    assert {FR.normalize(r.text) for r in train}.isdisjoint(FR.normalize(r.text) for r in held)
    repeats = [FR.normalize(r.text) for r in train]
    assert max(repeats.count(sentence) for sentence in repeats) == 2


def test_the_manifest_and_the_clean_report_state_the_rule_and_the_counts(validated):
    manifest = json.loads((validated / "imported/fr/common_voice/manifest.json").read_text())
    assert manifest["release"] == RELEASE
    assert manifest["split"] == {"by": "validated", "rule": RULE, "max_repeats": 2, "counts": {
        "in_dev_test": 2, "validated": 8, "speaker_in_dev_test": 1, "sentence_in_dev_test": 1,
        "over_max_repeats": 1, "train": 5, "sentences": 3}}
    assert manifest["counts"] == {"train": 5, "dev": 1, "test": 1}
    report = (validated / "runs/fr/clean/report.md").read_text()
    assert "- common_voice: by validated, max_repeats 2. " + RULE in report
    assert "  - speaker_in_dev_test: 1" in report and "  - over_max_repeats: 1" in report


def test_official_keeps_common_voices_own_split_and_says_so(release, tmp_path):
    data = run(release, tmp_path)
    assert clips(data, "train") == stems("train")
    manifest = json.loads((data / "imported/fr/common_voice/manifest.json").read_text())
    assert manifest["split"] == {"by": "official"} and manifest["counts"] == {"train": 2, "dev": 1, "test": 1}
    assert "- common_voice: by official" in (data / "runs/fr/clean/report.md").read_text()


def test_max_repeats_is_a_setting_checked_like_the_others():
    assert CORPUS.Params(locale="fr").split == "official"
    with pytest.raises(ValueError, match="max_repeats"):
        CORPUS.Params(locale="fr", split="validated", max_repeats=0)
    with pytest.raises(ValueError, match="split"):
        CORPUS.Params(locale="fr", split="everything")
