"""How fast DeepSpeech 0.9.3 trains on the CPU from each format of the same clips: WAVs named by a CSV, a
sample database of Opus, a sample database of WAVs (clips.format, clips.sdb_audio).

    eval "$(bash tests/trainer_env.sh)"; .venv/bin/python bench/training_formats.py [--clips 96] [--batch 8]

The clips are espeak-ng sentences, written by dstrain's own writers (pipeline/formats/sets.py).  For each
format the real trainer (TRAINER_PYTHON) trains --epochs epochs twice: with --feature_cache (the first
epoch reads the audio and fills the cache, the others read the cache), and without (every epoch reads the
audio).  It prints the seconds of each epoch (with --repeat, the shortest of the repeats), and each format's
time against the WAVs'.  The train stage
turns the feature cache on by default (train.feature_cache).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dstrain.pipeline.formats import payload  # noqa: E402
from dstrain.pipeline.formats.deepspeech_csv import Sample  # noqa: E402
from dstrain.pipeline.formats.sets import SetWriter  # noqa: E402
from dstrain.pipeline.paths import clip_set  # noqa: E402
from tests.fixtures.speech import espeak  # noqa: E402

SENTENCES = ["le chat dort sur le canapé", "nous irons à la plage demain matin", "il pleut depuis ce matin",
             "elle lit un livre près de la fenêtre", "les enfants jouent dans le jardin", "la mer est calme ce soir",
             "le vent souffle fort aujourd'hui", "nous mangeons des pommes", "le train part à l'heure",
             "mon frère repeint la porte bleue", "la voisine cherche un panier de pommes", "où est la gare"]
ALPHABET = " abcdefghijklmnopqrstuvwxyzàâçéèêëîïôùûü'"
FORMATS = ("wav", "sdb-opus", "sdb-wav")


def write_sets(root: Path, clips: int) -> Dict[str, Path]:
    """The same clips in each format; returns what DeepSpeech is given for each."""
    import numpy
    import soxr

    pcms = []
    for i in range(clips):
        pcm, rate = espeak(SENTENCES[i % len(SENTENCES)], "fr", 140 + 7 * (i % 9))
        mono = numpy.frombuffer(pcm, dtype="<i2").astype("float32") / 32768
        pcms.append((numpy.round(soxr.resample(mono, rate, 16000) * 32767).astype("<i2").tobytes(),
                     SENTENCES[i % len(SENTENCES)]))
    (root / "wavs").mkdir()
    given = {}
    for kind in FORMATS:
        clip_format, _, audio = kind.partition("-")
        target = clip_set(root / kind, "train", clip_format)
        target.data.parent.mkdir()
        with SetWriter(target, audio or "opus") as writer:
            # Shortest first: DeepSpeech sorts a CSV itself, and reads a database in its order.
            for n, (pcm, text) in enumerate(sorted(pcms, key=lambda item: len(item[0]))):
                wav = payload.encode(pcm, "wav")
                if clip_format == "wav":
                    path = root / "wavs" / f"clip{n:04d}.wav"
                    path.write_bytes(wav)
                    writer.add(Sample(str(path), len(wav), text))
                else:
                    writer.add(Sample(f"clip{n:04d}", len(wav), text), wav, "wav")
        given[kind] = target.data
    return given


def epochs(python: str, files: Path, root: Path, args, cache: bool) -> List[float]:
    """Seconds of each training epoch, from DeepSpeech's own log lines."""
    work = Path(tempfile.mkdtemp(dir=str(root)))
    command = [python, "-u", "-m", "deepspeech_training.train", "--train_files", str(files),
               "--train_batch_size", str(args.batch), "--n_hidden", str(args.n_hidden), "--epochs", str(args.epochs),
               "--alphabet_config_path", str(root / "alphabet.txt"), "--checkpoint_dir", str(work / "ckpt"),
               "--summary_dir", str(work / "summaries"), "--show_progressbar=false", "--log_level", "1"]
    if cache:
        command += ["--feature_cache", str(work / "cache" / "features")]
        (work / "cache").mkdir()
    marks = {}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            match = re.match(r"I (Training|Finished training) epoch (\d+)", line)
            if match:
                marks[(match.group(1), int(match.group(2)))] = time.time()
    shutil.rmtree(str(work))
    if proc.returncode != 0:
        sys.exit(f"the trainer failed (exit {proc.returncode}) on {files}")
    return [marks[("Finished training", e)] - marks[("Training", e)] for e in range(args.epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-hidden", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1,
                        help="train each case this many times and keep each epoch's shortest time: other work on a "
                             "shared machine only ever slows an epoch down")
    args = parser.parse_args()
    python = os.environ.get("TRAINER_PYTHON")
    if not python:
        sys.exit("set TRAINER_PYTHON (eval \"$(bash tests/trainer_env.sh)\")")
    root = Path(tempfile.mkdtemp(prefix="dstrain-train-formats-"))
    try:
        (root / "alphabet.txt").write_text("\n".join(ALPHABET) + "\n", encoding="utf-8")
        given = write_sets(root, args.clips)
        sizes = {kind: sum(p.stat().st_size for p in (root / "wavs").iterdir()) if kind == "wav"
                 else path.stat().st_size for kind, path in given.items()}
        print(f"{args.clips} clips, n_hidden {args.n_hidden}, batch {args.batch}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        found = {}
        # Interleaved, so that load from elsewhere falls on every format alike.
        for cache in (True, False):
            for kind in FORMATS:
                runs = [epochs(python, given[kind], root, args, cache) for _ in range(args.repeat)]
                found[(kind, cache)] = times = [min(epoch) for epoch in zip(*runs)]
                print(f"  {kind:9} {'feature cache' if cache else 'no cache':13} epochs "
                      + " ".join(f"{t:6.1f}" for t in times) + f" s  ({sizes[kind] / 1e6:.1f} MB of audio; "
                      f"load {os.getloadavg()[0]:.1f})", flush=True)
        print("\nagainst the WAVs (time / WAV time; below 1 is faster):")
        for kind in FORMATS[1:]:
            first = found[(kind, True)][0] / found[("wav", True)][0]
            cached = sum(found[(kind, True)][1:]) / sum(found[("wav", True)][1:])
            uncached = sum(found[(kind, False)][1:]) / sum(found[("wav", False)][1:])
            print(f"  {kind:9} first epoch {first:.2f}; later epochs from the cache {cached:.2f}; "
                  f"later epochs without a cache {uncached:.2f}")
    finally:
        shutil.rmtree(str(root), ignore_errors=True)


if __name__ == "__main__":
    main()
