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
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.common_voice import COLUMNS  # noqa: E402
from tests.fixtures.speech import encode, espeak  # noqa: E402

RELEASE = "cv-corpus-99.0-2099-01-01"
CASES = ("zero", "onehz", "tiny", "long")


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read without ever holding them."""

    def __init__(self, size: int):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _add(tar: tarfile.TarFile, name: str, data=None, size: int = 0, fileobj=None) -> None:
    info = tarfile.TarInfo(f"{RELEASE}/fr/{name}")
    info.size = len(data) if data is not None else size
    tar.addfile(info, io.BytesIO(data) if data is not None else fileobj)


def build(case: str, args, where: Path) -> Path:
    """The archive of one case; every clip in it is named in train.tsv."""
    good = where / "good.mp3"
    encode(*espeak("Bonjour à tous et bienvenue."), good, resample=48000)
    members = {"good.mp3": good.read_bytes()}
    if case == "onehz":
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(1)
            wav.writeframes(bytes(range(256)) * (args.onehz_kb * 4))
        members["onehz.mp3"] = buffer.getvalue()
    elif case == "tiny":
        members.update((f"tiny_{i:06d}.mp3", b"\xff") for i in range(args.tiny))
    elif case == "long":
        tone = where / "tone.wav"
        subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(tone), "synth", str(args.long_seconds),
                        "sine", "440"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "32", str(tone), str(where / "long.mp3")], check=True)
        tone.unlink()
        members["long.mp3"] = (where / "long.mp3").read_bytes()
    names = list(members) + (["zero.mp3"] if case == "zero" else [])
    archive = where / f"{RELEASE}-fr.tar.gz"
    with tarfile.open(str(archive), "w:gz", compresslevel=1) as tar:
        for split in ("train", "dev", "test"):
            rows = [("\t".join(COLUMNS) + "\n").encode()]
            if split == "train":
                rows += [f"client1\t{name}\tsid\tBonjour à tous et bienvenue.\t\t2\t0\t\t\t\t\tfr\t\n".encode()
                         for name in names]
            _add(tar, split + ".tsv", b"".join(rows))
        for name, data in members.items():
            _add(tar, "clips/" + name, data)
        if case == "zero":
            _add(tar, "clips/zero.mp3", size=args.zero_mb << 20, fileobj=Zeros(args.zero_mb << 20))
    return archive


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
