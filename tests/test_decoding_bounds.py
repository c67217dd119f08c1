"""Decoding is bounded whatever the input claims (issue 13, class 3), and a decoder's complaints are worded
the same on every run and kept in the stage log (issue 15, 4; issue 14)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dstrain.importers.common_voice import CORPUS
from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.formats.audio import convert, convert_bytes, max_bytes
from tests.conftest import dstrain, write_config
from tests.fixtures.hostile import damaged, good_rows, hostile_cv, import_peak, mp3, wav_claiming
from tests.fixtures.outputs import read_csv
from tests.fixtures.speech import noise

MAX_SECONDS = 5.0


def _import(archive: Path, out: Path, workers: int = 2) -> dict:
    params = CORPUS.Params(release=archive.name[:-len("-fr.tar.gz")], locale="fr", max_duration=MAX_SECONDS)
    return CORPUS.prepare(archive, "0" * 64, out, FR.normalize, params, workers)


def _rejects(out: Path) -> dict:
    return {row["source"].split(" ", 1)[1]: row for row in read_csv(out / "rejects.csv")}


def test_a_wav_whose_header_claims_1_hz_is_refused_before_any_sample_is_decoded(tmp_path):
    # 32 KB of samples at 1 Hz: resampled to 16 kHz, 524 MB of WAV.
    lying = wav_claiming(1, bytes(range(256)) * 128)
    source = tmp_path / "lying.wav"
    source.write_bytes(lying)
    for clip in (convert_bytes(("lying.mp3", lying, str(tmp_path / "a.wav")), MAX_SECONDS),
                 convert((str(source), str(tmp_path / "b.wav")), MAX_SECONDS)):
        assert (clip.ok, clip.reason) == (False, "bad_header")
        assert "1 Hz" in clip.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lying.wav"], "no WAV and no temporary file left"


def test_a_clip_longer_than_max_duration_is_refused_and_leaves_no_wav(tmp_path):
    tone = tmp_path / "tone.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(tone), "synth", "60", "sine", "440"], check=True)
    long_mp3 = tmp_path / "long.mp3"
    subprocess.run(["lame", "--quiet", "-b", "32", str(tone), str(long_mp3)], check=True)
    out = tmp_path / "out"
    out.mkdir()
    from_header = convert((str(tone), str(out / "tone.wav")), MAX_SECONDS)
    assert (from_header.reason, from_header.detail) == ("too_long", "header says 60.00s > 5.0s")
    # An MP3's length in its header is an estimate: decoding stops a little past the limit instead.
    decoded = convert((str(long_mp3), str(out / "long.wav")), MAX_SECONDS)
    assert decoded.reason == "too_long" and "decodes to more than 5.5s" in decoded.detail
    assert list(out.iterdir()) == []


def test_rejected_rows_leave_no_wav_and_odd_members_get_named_reasons(tmp_path):
    clips, rows = good_rows()
    slow = mp3("une phrase lente, lente, très lente, qui dure bien plus que la limite", speed=80)
    clips.update({"lying.mp3": wav_claiming(1, bytes(8000)), "one_byte.mp3": b"\xff", "slow.mp3": slow,
                  "short.mp3": mp3("oui", speed=400)})
    rows["train"] = rows["train"] + [("lying.mp3", "Un en-tête qui ment."), ("one_byte.mp3", "Un seul octet."),
                                     ("slow.mp3", "Une phrase lente."),
                                     ("short.mp3", "Cette phrase est beaucoup trop longue pour un seul mot dit vite.")]
    out = tmp_path / "imported"
    manifest = _import(hostile_cv(tmp_path, clips, rows), out)
    rejects = _rejects(out)
    assert {name: row["reason"] for name, row in rejects.items()} == {
        "lying.mp3": "bad_header", "one_byte.mp3": "undecodable_audio", "slow.mp3": "too_long",
        "short.mp3": "too_short"}
    assert rejects["one_byte.mp3"]["detail"] == "1 bytes, smaller than any audio header"
    assert manifest["counts"] == {"train": 1, "dev": 1, "test": 1}
    assert sorted(p.name for p in (out / "clips").iterdir() if p.suffix == ".wav") == [
        "dev_good.mp3.wav", "test_good.mp3.wav", "train_good.mp3.wav"], \
        "rejected clips, judged after decoding too, leave no WAV"


def test_a_huge_member_of_zeros_is_never_read_into_memory(tmp_path):
    """256 MB of zeros, about 250 KB once gzipped: refused as too_large without holding it (the probe's 2 GB
    took 7.5 GB of RAM)."""
    size = 256 << 20
    clips, rows = good_rows()
    clips["zeros.mp3"] = size
    rows["train"] = rows["train"] + [("zeros.mp3", "Rien que des zéros.")]
    out = tmp_path / "imported"
    peak = import_peak(hostile_cv(tmp_path, clips, rows), out, MAX_SECONDS)
    # About 100 MB whatever the member's size: what the import and its workers need anyway.
    assert peak < size, f"peak {peak >> 20} MB for a {size >> 20} MB member"
    zeros = _rejects(out)["zeros.mp3"]
    assert zeros["reason"] == "too_large" and str(max_bytes(MAX_SECONDS)) in zeros["detail"]
    assert json.loads((out / "manifest.json").read_text())["counts"]["train"] == 1


def test_a_corrupt_mp3_gets_the_decoders_reason_the_same_on_every_run(tmp_path):
    clips, rows = good_rows()
    clips["corrupt.mp3"] = noise("corrupt")
    rows["train"] = rows["train"] + [("corrupt.mp3", "Ce fichier est abîmé.")]
    archive = hostile_cv(tmp_path, clips, rows)
    first, second = _import(archive, tmp_path / "one"), _import(archive, tmp_path / "two", workers=1)
    assert first["rejected"] == second["rejected"] == {"undecodable_audio": 1}
    assert (tmp_path / "one/rejects.csv").read_bytes() == (tmp_path / "two/rejects.csv").read_bytes()
    detail = _rejects(tmp_path / "one")["corrupt.mp3"]["detail"]
    assert detail.startswith("libsndfile: Format not recognised")
    assert "tmp" not in detail and "pipe" not in detail and str(tmp_path) not in detail


def test_libmpg123_notes_go_to_the_stage_log_with_the_clip_not_to_the_console(tmp_path):
    clips, rows = good_rows()
    clips["damaged.mp3"] = damaged(mp3("Les enfants jouent dans le jardin."))
    rows["train"] = rows["train"] + [("damaged.mp3", "Les enfants jouent dans le jardin.")]
    data = tmp_path / "data"
    (data / "sources").mkdir(parents=True)
    archive = hostile_cv(tmp_path, clips, rows)
    shutil.copy(archive, data / "sources" / archive.name)
    proc = dstrain("run", "--language", "fr", "--config", write_config(tmp_path / "dstrain.toml", data),
                   "--to", "import")
    assert "Illegal Audio-MPEG-Header" not in proc.stdout + proc.stderr
    log = (data / "runs/fr/logs/import.log").read_text()
    assert "damaged.mp3: the decoder said: Note: Illegal Audio-MPEG-Header" in log


@pytest.mark.parametrize("rate", [1, 3999, 384000])
def test_a_recording_with_a_lying_header_is_not_resampled(tmp_path, rate):
    from dstrain.pipeline.formats.recordings import decode

    source = tmp_path / "recording.wav"
    source.write_bytes(wav_claiming(rate, bytes(4000)))
    clip = decode(source, tmp_path / "decoded.wav")
    assert (clip.reason, clip.detail.split(";")[0]) == ("bad_header", f"header says {rate} Hz")
    assert not (tmp_path / "decoded.wav").exists()

