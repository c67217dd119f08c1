"""Time and memory of `dstrain run` fed hostile inputs (issue 18).

    .venv/bin/python bench/hostile_inputs.py [--only CASE ...] [--bomb-gb 3] [--dir DIR]

Each case runs the real command in a fresh process and prints its wall time, the peak resident memory of
the largest of its processes, and what it said.  Cases:
- truncated: a Common Voice release cut short among its clips (90 % of it), pinned by its sha256, imported
  with --workers 2; then the same command again (the archive is marked damaged);
- linebomb: a train.tsv of ``--bomb-gb`` GB without a newline (a few MB of .tar.gz), imported with TMPDIR set
  to an empty folder: prints the bytes left in it and in the run's own tmp/;
- zipbomb: verifying a zip of 2,000 members that share 10 MB of zeros (20 GB if read), not pinned.
It needs espeak-ng and lame, like the tests' fixtures; nothing of pytest.
"""
import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.commands import DSTRAIN, clean_env, write_config  # noqa: E402
from tests.fixtures.hostile import (  # noqa: E402
    RELEASE,
    good_rows,
    hostile_cv,
    import_peak,
    mp3,
    overlapping_zip,
    tsv,
)

CASES = ("truncated", "linebomb", "zipbomb")


#: Runs a command and prints, last, the peak resident memory of the largest process it waited for: its own
#: counter, so that what ran before does not count.
MEASURED = ("import resource, subprocess, sys\n"
            "status = subprocess.call(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(status)\n")


def run(args, env) -> tuple:
    """(seconds, peak MB of the largest process, exit status, what it said of a failure) of one command."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, env=env)
    seconds = time.monotonic() - started
    *lines, peak = proc.stderr.splitlines()
    said = [line for line in lines if "failed" in line or "error" in line]
    return seconds, round(int(peak) / 1024), proc.returncode, (said[0] if said else "")[:200]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truncated(where: Path, args) -> None:
    clips, rows = good_rows()
    for n in range(12):
        clips[f"more_{n}.mp3"] = mp3(f"Phrase numéro {n}.")
        rows["train"].append((f"more_{n}.mp3", f"Phrase numéro {n}."))
    data = where / "data"
    (data / "sources").mkdir(parents=True)
    archive = hostile_cv(data / "sources", clips, rows)
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) * 9 // 10])
    config = write_config(where / "c.toml", data, _sha256(archive))  # pinned as cut: only the import reads it
    command = [DSTRAIN, "run", "-l", "fr", "--config", str(config), "--to", "import", "--workers", "2"]
    for label in ("first run", "rerun"):
        seconds, peak, status, said = run(command, clean_env())
        print(f"truncated, {label}: {seconds:.1f} s, exit {status}, peak {peak} MB: {said}")


def linebomb(where: Path, args) -> None:
    clips, rows = good_rows()
    train = tsv(rows["train"]), args.bomb_gb << 30, b"\n"
    data = where / "data"
    (data / "sources").mkdir(parents=True)
    archive = hostile_cv(data / "sources", clips, rows, before=[(f"{RELEASE}/fr/train.tsv", train)])
    print(f"linebomb: archive of {archive.stat().st_size / 1e6:.1f} MB, train.tsv of {args.bomb_gb} GB in one line")
    scratch = where / "tmpdir"
    scratch.mkdir()
    config = write_config(where / "c.toml", data, _sha256(archive))
    dstrain = [DSTRAIN, "run", "-l", "fr", "--config", str(config)]
    subprocess.run(dstrain + ["--to", "download"], check=True, capture_output=True, env=clean_env())
    seconds, peak, status, said = run(dstrain + ["--only", "import"], clean_env(TMPDIR=str(scratch)))
    left = sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file())
    run_tmp = data / "runs" / "fr" / "tmp"
    in_run = sum(p.stat().st_size for p in run_tmp.rglob("*") if p.is_file()) if run_tmp.exists() else 0
    rejects = (data / "imported" / "fr" / "common_voice" / "rejects.csv").read_text().strip().splitlines()[1:]
    print(f"linebomb: {seconds:.1f} s, exit {status}, peak {peak} MB (any process, the trainer's probe among them), "
          f"{left} bytes left in TMPDIR, {in_run} in runs/fr/tmp; rejects: {rejects}")
    peak = import_peak(archive, where / "alone")
    print(f"linebomb: the import alone (its process and its workers): peak {peak >> 20} MB")


def zipbomb(where: Path, args) -> None:
    from dstrain.pipeline.sources import sniff

    bomb = overlapping_zip(where / "bomb.zip", copies=2000, size=10 << 20)
    started = time.monotonic()
    verdict = sniff.check(bomb, hashing=True)
    print(f"zipbomb: {bomb.stat().st_size} bytes, {time.monotonic() - started:.3f} s to refuse: {verdict.problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=CASES, default=CASES)
    parser.add_argument("--bomb-gb", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        for case in args.only:
            where = Path(work) / case
            where.mkdir()
            globals()[case](where, args)


if __name__ == "__main__":
    main()
