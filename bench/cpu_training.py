"""How fast DeepSpeech 0.9.3 trains its full-size model (n_hidden 2048) on this machine's CPU.

    eval "$(bash tests/trainer_env.sh)"; .venv/bin/python bench/cpu_training.py [--clips 16] [--batch 8]

It speaks French sentences with espeak-ng, trains two epochs with the real trainer (TRAINER_PYTHON) and
times the second (the first also builds the graph), then prints the seconds of training per second of audio
and what one epoch of 100 and 1,000 hours of speech would take at that rate.  This is the number behind the
check stage's warning that training on the CPU is impractical for a real model.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

SENTENCES = ["le chat dort sur le canapé", "nous irons à la plage demain matin", "il pleut depuis ce matin",
             "elle lit un livre près de la fenêtre", "les enfants jouent dans le jardin", "la mer est calme ce soir",
             "le vent souffle fort aujourd'hui", "nous mangeons des pommes"]
ALPHABET = " abcdefghijklmnopqrstuvwxyzàâçéèêëîïôùûü'"


def speak(text: str, wav: Path) -> float:
    raw = wav.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "fr", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    raw.unlink()
    with wave.open(str(wav)) as handle:
        return handle.getnframes() / handle.getframerate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-hidden", type=int, default=2048)
    args = parser.parse_args()
    python = os.environ.get("TRAINER_PYTHON")
    if not python:
        sys.exit("set TRAINER_PYTHON (eval \"$(bash tests/trainer_env.sh)\")")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows, audio = ["wav_filename,wav_filesize,transcript"], 0.0
        for i in range(args.clips):
            wav = root / f"clip{i:03d}.wav"
            text = SENTENCES[i % len(SENTENCES)]
            audio += speak(text, wav)
            rows.append(f"{wav},{wav.stat().st_size},{text}")
        (root / "train.csv").write_text("\n".join(rows) + "\n")
        (root / "alphabet.txt").write_text("\n".join(ALPHABET) + "\n")
        command = [python, "-u", "-m", "deepspeech_training.train", "--train_files", str(root / "train.csv"),
                   "--train_batch_size", str(args.batch), "--n_hidden", str(args.n_hidden), "--epochs", "2",
                   "--alphabet_config_path", str(root / "alphabet.txt"), "--checkpoint_dir", str(root / "ckpt"),
                   "--summary_dir", str(root / "summaries"), "--show_progressbar=false"]
        marks = {}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            for line in proc.stdout:
                match = re.match(r"I (Training|Finished training) epoch (\d+)", line)
                if match:
                    marks[(match.group(1), int(match.group(2)))] = time.time()
        if proc.returncode != 0 or ("Finished training", 1) not in marks:
            sys.exit(f"the trainer failed (exit {proc.returncode})")
    epoch = marks[("Finished training", 1)] - marks[("Training", 1)]
    rate = epoch / audio
    print(f"CPU cores:                          {os.cpu_count()}")
    print(f"model:                              n_hidden {args.n_hidden}, batch {args.batch}")
    print(f"audio per epoch:                    {audio:.1f} s in {args.clips} clips")
    print(f"one epoch (the second):             {epoch:.1f} s")
    print(f"training seconds per audio second:  {rate:.2f}")
    for hours in (100, 1000):
        print(f"one epoch of {hours:>5} h of speech:     {hours * rate / 24:.0f} days")


if __name__ == "__main__":
    main()
