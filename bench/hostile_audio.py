"""Memory and time of a Common Voice import fed hostile audio (issue 13, class 3).

    .venv/bin/python bench/hostile_audio.py [--zero-mb 2048] [--onehz-kb 32] [--tiny 100000] [--long-seconds 3600]
                                            [--only CASE ...] [--workers 2] [--dir DIR]

Each case is a Common Voice archive (one espeak-ng clip beside the hostile members, every one named in
train.tsv), imported in a fresh process.  For each it prints the wall time, the peak resident memory of
the import and its workers (the largest single process), what the hostile rows were rejected for, and
the bytes of WAVs left in clips/ for rejected rows.  Cases:
- zero: one member of zeros (``--zero-mb``), which gzip shrinks about a thousand times;
- onehz: a WAV whose header claims 1 Hz (``--onehz-kb`` of samples);
- tiny: ``--tiny`` one-byte members;
- long: one MP3 of ``--long-seconds`` of tone (far over max_duration).
It needs espeak-ng, lame and sox, like the tests' fixtures; nothing of pytest.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.hostile import RELEASE, hostile_cv, mp3, wav_claiming  # noqa: E402

CASES = ("zero", "onehz", "tiny", "long")
SAID = "Bonjour à tous et bienvenue."


def build(case: str, args, where: Path) -> Path:
    """The archive of one case; every clip in it is named in train.tsv."""
    clips = {"good.mp3": mp3(SAID)}
    if case == "zero":
        clips["zero.mp3"] = args.zero_mb << 20
    elif case == "onehz":
        clips["onehz.mp3"] = wav_claiming(1, bytes(range(256)) * (args.onehz_kb * 4))
    elif case == "tiny":
        clips.update((f"tiny_{i:06d}.mp3", b"\xff") for i in range(args.tiny))
    elif case == "long":
        tone = where / "tone.wav"
        subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(tone), "synth", str(args.long_seconds),
                        "sine", "440"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "32", str(tone), str(where / "long.mp3")], check=True)
        tone.unlink()
        clips["long.mp3"] = (where / "long.mp3").read_bytes()
    return hostile_cv(where, clips, {"train": [(name, SAID) for name in clips]})


IMPORT = f"""
import json, resource, sys
from pathlib import Path
from dstrain.importers.common_voice import CORPUS
from dstrain.languages.fr import LANGUAGE
archive, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
params = CORPUS.Params(release="{RELEASE}", locale="fr", max_duration=10.0)
manifest = CORPUS.prepare(archive, "0" * 64, out, LANGUAGE.normalize, params, workers)
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({{"rejected": manifest["rejected"], "peak_mb": round(peak / 1024)}}))
"""


def run(case: str, args, where: Path) -> dict:
    archive = build(case, args, where)
    out = where / "imported"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", IMPORT, str(archive), str(out), str(args.workers)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    kept = set()
    for split in ("train", "dev", "test"):
        csv = out / (split + ".csv")
        if csv.exists():
            kept |= {line.split(",")[0] for line in csv.read_text().splitlines()[1:]}
    left = sum(p.stat().st_size for p in (out / "clips").glob("*.wav") if "clips/" + p.name not in kept) \
        if (out / "clips").exists() else 0
    result = {"case": case, "archive_mb": round(archive.stat().st_size / 1e6, 2), "seconds": round(seconds, 1)}
    if proc.returncode == 0:  # the peak is the largest single process: the import's or one worker's
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    else:
        result["failed"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    return dict(result, rejected_wav_mb=round(left / 1e6, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zero-mb", type=int, default=2048)
    parser.add_argument("--onehz-kb", type=int, default=32)
    parser.add_argument("--tiny", type=int, default=100000)
    parser.add_argument("--long-seconds", type=int, default=3600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=CASES, default=CASES)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    for case in args.only:
        with tempfile.TemporaryDirectory(dir=str(args.dir) if args.dir else None) as where:
            print(json.dumps(run(case, args, Path(where))), flush=True)


if __name__ == "__main__":
    main()
