"""What the import and clean cost as the data grows, for each way of storing the clips (clips.format).

    .venv/bin/python bench/scale.py [--sizes 10000,200000] [--formats wav,sdb-opus,sdb-wav] [--dir DIR]

For each size N it builds a Common Voice release of N clips with distinct names and many speakers, from a
few espeak-ng sentences encoded once (each clip is one of them under a new name, so 200,000 clips take a
minute to build), then for each format imports it (``--to import``), cleans it (``--to clean``) and runs
``--to clean`` again, and prints:
- the import's time and clips/s (from its record), and the load average meanwhile: on a shared machine
  other work slows every number;
- the peak memory of the whole process group (the dstrain process and its workers), of the import and of
  clean: the sum of their RSS, and of their PSS (RSS shares the pages the forked workers have in common
  between them, PSS counts each once);
- the CPU time per clip of the import, of dstrain itself (reading the archive, recording each clip) and of
  its workers (decoding, resampling, encoding), and so the most clips/s the cores could give at best;
- the no-op rerun's time, and its CPU time (a busy machine stretches the first, not the second);
- bytes on disk per hour of audio: what the import keeps, and with clean's sets (a CSV names the imported
  WAVs; a database is a copy).
Targets (printed, not asserted): sdb with Opus at most 1/4 of the WAV bytes; import with sdb at least
620 clips/s on 2 cores, against WAV in the same run; import and clean peak at most 300 MB at every N; the
no-op rerun at most 2 s at 200,000 clips.
"""
import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.commands import DSTRAIN, RELEASE, clean_env, write_config  # noqa: E402
from tests.fixtures.common_voice import COLUMNS  # noqa: E402
from tests.fixtures.speech import encode, espeak  # noqa: E402

SENTENCES = [
    "le chat dort sur le canapé", "nous irons à la plage demain matin", "il pleut depuis ce matin",
    "elle lit un livre près de la fenêtre", "les enfants jouent dans le jardin", "la mer est calme ce soir",
    "le vent souffle fort aujourd'hui", "nous mangeons des pommes", "le train part à l'heure", "où est la gare",
    "mon frère repeint la porte bleue", "la voisine cherche un panier de pommes", "le facteur apporte le journal",
    "notre équipe découvre la vieille horloge", "ma grand-mère oublie une lettre froissée",
    "le boulanger regarde le jardin fleuri", "un enfant apporte la porte bleue", "ce vieux marin cherche le port",
    "la maîtresse repeint le tableau noir", "bonjour à tous et bienvenue",
]
SPEAKERS = 5000
MB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")


def mp3s(workdir: Path) -> List[Tuple[str, bytes]]:
    """Each sentence spoken once, as Common Voice ships clips: MP3, 48 kHz, mono."""
    out = []
    for n, text in enumerate(SENTENCES):
        pcm, rate = espeak(text, "fr", 150 + 10 * (n % 5))
        mp3 = workdir / f"s{n}.mp3"
        encode(pcm, rate, mp3, resample=48000, kbps=48)
        out.append((text, mp3.read_bytes()))
    return out


def release(n: int, spoken: List[Tuple[str, bytes]], out_dir: Path, duplicates: bool = False) -> Path:
    """A Common Voice release of ``n`` clips: 90% train, 5% dev, 5% test; clip i says sentence i mod k.  With
    ``duplicates``, every row of ``train.tsv`` names the same one clip instead (the archive is a few MB)."""
    archive = out_dir / f"{RELEASE}-fr.tar.gz"
    split_of = lambda i: "dev" if i % 20 == 1 else "test" if i % 20 == 2 else "train"  # noqa: E731
    tables: Dict[str, List[str]] = {s: ["\t".join(COLUMNS)] for s in ("train", "dev", "test", "validated")}
    if duplicates:
        split_of = lambda i: "train"  # noqa: E731
    for i in range(n):
        name = f"common_voice_fr_{0 if duplicates else i:08d}.mp3"
        # Duplicates all say the clip's own sentence: rows that disagree would reject the clip everywhere.
        said = spoken[0 if duplicates else i % len(spoken)][0]
        row = "\t".join((f"speaker{i % SPEAKERS:05d}", name, f"sid{i}", said, "", "2", "0",
                         "", "", "", "", "fr", ""))
        tables[split_of(i)].append(row)
        tables["validated"].append(row)
    with tarfile.open(str(archive), "w:gz", compresslevel=1) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{RELEASE}/fr/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for table, lines in tables.items():
            add(table + ".tsv", ("\n".join(lines) + "\n").encode("utf-8"))
        for i in range(1 if duplicates else n):
            add(f"clips/common_voice_fr_{i:08d}.mp3", spoken[i % len(spoken)][1])
    return archive


class GroupMemory:
    """Polls the memory of every process of a session: the peak sums of their RSS and PSS, in bytes; and the CPU
    seconds the session's leader (dstrain itself, not its workers) has used."""

    def __init__(self, sid: int):
        self.sid, self.rss, self.pss, self.leader_cpu = sid, 0, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            rss = pss = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[3]) != self.sid:  # field 6: the session
                        continue
                    if int(pid) == self.sid:  # fields 14 and 15: its own user and system time
                        self.leader_cpu = (int(fields[11]) + int(fields[12])) / TICKS
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                        if line.startswith("Rss:"):
                            rss += int(line.split()[1]) * 1024
                        elif line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
                except (OSError, ValueError, IndexError):  # gone meanwhile
                    continue
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measured(command: List[str]) -> Tuple[float, GroupMemory, float]:
    """Wall time, peak memory and CPU seconds (of the command and every process it waited for: its workers) of
    a command run in its own session."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=clean_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    memory = GroupMemory(proc.pid)
    _, err = proc.communicate()
    memory.stop()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    return time.perf_counter() - start, memory, used


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def one(archive: Path, work: Path, kind: str, workers: int, rows: int) -> Dict[str, float]:
    """Import, clean and rerun the release in format ``kind`` ("wav", "sdb-opus", "sdb-wav")."""
    root = work / kind
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    os.link(str(archive), str(data / "sources" / archive.name))
    clips, _, audio = kind.partition("-")
    config = write_config(root / "dstrain.toml", data, clips=clips)
    extra = [f'clips.sdb_audio = "{audio}"'] if audio else []
    text = config.read_text().replace(f'clips.format = "{clips}"', "\n".join([f'clips.format = "{clips}"'] + extra))
    config.write_text(text + '[clean]\nshared_transcripts = "keep"\n')
    run = [DSTRAIN, "run", "-l", "fr", "--config", str(config), "--workers", str(workers)]
    subprocess.run(run + ["--to", "download"], check=True, env=clean_env(), stderr=subprocess.DEVNULL)
    os.sync()
    load = os.getloadavg()[0]
    _, imported, import_cpu = measured(run + ["--to", "import"])
    load = (load + os.getloadavg()[0]) / 2
    record = json.loads((data / "runs/fr/state/import.json").read_text())
    dataset = data / "imported" / "fr" / "common_voice"
    hours = max(sum(json.loads((dataset / "manifest.json").read_text())["hours"].values()), 1e-9)
    import_bytes = du(dataset)
    clean_seconds, cleaned, _ = measured(run + ["--to", "clean"])
    noop, _, noop_cpu = measured(run + ["--to", "clean"])
    clean_bytes = du(data / "runs" / "fr" / "clean")
    shutil.rmtree(str(root))
    leader_ms = 1000 * imported.leader_cpu / rows
    return {"rows": rows, "seconds": record["seconds"], "clips_s": rows / record["seconds"], "load": load,
            "leader_ms": leader_ms, "workers_ms": 1000 * import_cpu / rows - leader_ms, "clean_seconds": clean_seconds,
            "import_rss": imported.rss, "import_pss": imported.pss, "clean_rss": cleaned.rss,
            "clean_pss": cleaned.pss, "noop": noop, "noop_cpu": noop_cpu, "hours": hours,
            "import_per_hour": import_bytes / hours, "all_per_hour": (import_bytes + clean_bytes) / hours}


def best(found: Dict[str, float], cores: int) -> float:
    """The most clips per second the import's CPU work allows on ``cores`` cores, nothing else running: dstrain
    itself reads the archive and records each clip on one core, its workers convert on all of them."""
    return min(1000 / found["leader_ms"], 1000 * cores / (found["leader_ms"] + found["workers_ms"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,200000", help="clips per release, comma-separated")
    parser.add_argument("--formats", default="wav,sdb-opus,sdb-wav", help="wav, sdb-opus, sdb-wav")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--duplicates", action="store_true",
                        help="releases whose train.tsv names one clip N times (the import once took 913 MB for a "
                             "million, clean 148 s): the figures per clip are then per row")
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: the temporary directory)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dstrain-scale-", dir=None if args.dir is None else str(args.dir)))
    kinds = args.formats.split(",")
    try:
        spoken = mp3s(work)
        results = {}
        for n in (int(size) for size in args.sizes.split(",")):
            started = time.perf_counter()
            archive = release(n, spoken, work, args.duplicates)
            print(f"\nN = {n}: release built in {time.perf_counter() - started:.0f} s "
                  f"({archive.stat().st_size / MB:.0f} MB)", flush=True)
            for kind in kinds:
                results[(n, kind)] = found = one(archive, work, kind, args.workers, n)
                print(f"  {kind:9} import {found['seconds']:7.1f} s {found['clips_s']:7.1f} clips/s "
                      f"(load {found['load']:.1f}); peak import {found['import_rss'] / MB:5.0f} MB RSS "
                      f"{found['import_pss'] / MB:5.0f} MB PSS, clean {found['clean_rss'] / MB:5.0f} MB RSS "
                      f"{found['clean_pss'] / MB:5.0f} MB PSS; no-op rerun {found['noop']:.2f} s "
                      f"({found['noop_cpu']:.2f} s of CPU); "
                      f"{found['import_per_hour'] / MB:6.1f} MB/h imported, {found['all_per_hour'] / MB:6.1f} MB/h "
                      "with clean's sets", flush=True)
                print(f"  {'':9} import CPU per clip: dstrain {found['leader_ms']:.2f} ms, its workers "
                      f"{found['workers_ms']:.2f} ms; at best on {args.workers} cores {best(found, args.workers):.0f} "
                      f"clips/s; clean {found['clean_seconds']:.1f} s", flush=True)
            archive.unlink()
        print("\nTargets (not asserted):")
        for n in sorted({n for n, _ in results}):
            row = {kind: results[(n, kind)] for kind in kinds if (n, kind) in results}
            if "wav" in row and "sdb-opus" in row:
                ratio = row["sdb-opus"]["import_per_hour"] / row["wav"]["import_per_hour"]
                print(f"  N={n}: sdb+opus bytes / wav bytes = {ratio:.3f} (target <= 0.25)")
            for kind, found in row.items():
                if kind.startswith("sdb"):
                    versus = f", wav {row['wav']['clips_s']:.0f}" if "wav" in row else ""
                    print(f"  N={n}: {kind} import {found['clips_s']:.0f} clips/s{versus} (target >= 620 on 2 cores)")
                peak = max(found["import_rss"], found["clean_rss"]) / MB
                print(f"  N={n}: {kind} peak {peak:.0f} MB RSS, "
                      f"{max(found['import_pss'], found['clean_pss']) / MB:.0f} MB PSS (target <= 300 MB)")
                print(f"  N={n}: {kind} no-op rerun {found['noop']:.2f} s (target <= 2 s at 200000)")
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    main()
