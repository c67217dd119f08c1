"""Import throughput against the original pipeline's approach, and the cost of a no-op rerun.

    .venv/bin/python bench/import_throughput.py [--clips 1000] [--workers N] [--dir DIR]

Builds a Common Voice release of N espeak-ng clips, then prints:
- clips/s of `dstrain run --to import` (extraction, TSV reading, normalisation,
  MP3 decoding, resampling, WAV writing, CSVs), from the stage's own record;
- clips/s of converting the same MP3s with one `sox` process per clip, in a
  pool of the same size (what the original bash pipeline did);
- the wall time of a rerun of `--to alphabet` once everything is done;
- what writing one WAV-sized file costs this file system, which every clip pays.
Targets: at least 3x the sox baseline; the no-op rerun in 2 s or less.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.commands import DSTRAIN, clean_env, write_config  # noqa: E402
from tests.fixtures.common_voice import FR_ROWS, build_common_voice  # noqa: E402


def sox_baseline(archive: Path, workdir: Path, workers: int) -> float:
    """Clips/s of one sox process per clip, as the original import scripts ran it."""
    with tarfile.open(str(archive)) as tar:
        tar.extractall(str(workdir / "src"))  # noqa: S202 - our own archive
    mp3s = sorted((workdir / "src").rglob("*.mp3"))
    mp3s = [p for p in mp3s if p.stat().st_size > 0 and "bad" not in p.name]
    out = workdir / "sox-wav"
    out.mkdir()

    def one(mp3: Path) -> None:
        subprocess.run(["sox", str(mp3), "-r", "16000", "-c", "1", "-b", "16", str(out / (mp3.stem + ".wav"))],
                       check=True, stderr=subprocess.DEVNULL)

    os.sync()
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:  # threads only wait: each clip is its own sox process
        list(pool.map(one, mp3s))
    return len(mp3s) / (time.perf_counter() - start)


def file_creation_ms(directory: Path, count: int = 500) -> float:
    """What one WAV costs the file system before any audio work: create, write 44 KB, rename.

    It varies by an order of magnitude on some virtual disks (ext4 with online discard, after deletions),
    and every clip pays it, so it is printed beside the results.
    """
    scratch = directory / "fs-probe"
    scratch.mkdir()
    data = bytes(44000)
    start = time.perf_counter()
    for i in range(count):
        part = scratch / f"{i}.wav.part"
        part.write_bytes(data)
        os.replace(str(part), str(scratch / f"{i}.wav"))
    seconds = time.perf_counter() - start
    shutil.rmtree(str(scratch))
    return 1000 * seconds / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to work (default: the temporary directory); /dev/shm takes the disk out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dstrain-bench-", dir=None if args.dir is None else str(args.dir)))
    try:
        print(f"building a Common Voice release of {args.clips} espeak-ng clips...", flush=True)
        good = [r for r in FR_ROWS if "bad" not in r.key]
        archive = build_common_voice(work, rows=good, extra_clips=args.clips - len(good))
        data = work / "data"
        (data / "sources").mkdir(parents=True)
        shutil.copy(str(archive), str(data / "sources" / archive.name))
        config = write_config(work / "dstrain.toml", data)
        run = [DSTRAIN, "run", "-l", "fr", "--config", str(config), "--workers", str(args.workers)]
        os.sync()  # the corpus just written must not be flushed to disk during a measurement
        fs_ms = file_creation_ms(work)
        os.sync()
        subprocess.run(run + ["--to", "import"], check=True, env=clean_env(), stderr=subprocess.DEVNULL)
        record = json.loads((data / "runs/fr/state/import.json").read_text())
        rows = sum(record["counts"]["common_voice"].values())
        ours = rows / record["seconds"]

        baseline = sox_baseline(archive, work, args.workers)

        subprocess.run(run + ["--to", "alphabet"], check=True, env=clean_env(), stderr=subprocess.DEVNULL)
        start = time.perf_counter()
        subprocess.run(run + ["--to", "alphabet"], check=True, env=clean_env(), stderr=subprocess.DEVNULL)
        noop = time.perf_counter() - start

        print(f"clips                      {rows}")
        print(f"workers                    {args.workers}")
        print("dstrain import             {:8.1f} clips/s  ({:.2f} s)".format(ours, record["seconds"]))
        print(f"sox per clip (baseline)    {baseline:8.1f} clips/s")
        print(f"speed-up                   {ours / baseline:8.2f}x   (target >= 3x)")
        print(f"no-op rerun to alphabet    {noop:8.2f} s    (target <= 2 s)")
        print(f"file system                {fs_ms:8.2f} ms to write and rename a 44 KB file (fast disks: < 0.1)")
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    main()
