"""Language-model corpus preparation against the original pipeline's shell preparation, and its memory.

    .venv/bin/python bench/lm_corpus.py [--mb 200] [--workers N]

Generates French-like text (mixed case, punctuation, quotes, elisions, some digits and <s> markup),
then prints:
- MB/s of dstrain's corpus preparation (the lm stage's own code: French normalisation of every line,
  alphabet check, dev/test exclusion, word counts and top-k vocabulary) on every core;
- MB/s of the original's `tr '[:upper:]' '[:lower:]' | sed 's/<s>/ /g'` on the same text;
- MB/s of the original's whole preparation: that shell pipeline, then the pass of DeepSpeech's
  `data/lm/generate_lm.py` that lmplz reads from (lower-case each line, count its words, write it gzipped,
  keep the top-k words), as the commonvoice-fr pipeline ran them one after the other;
- peak RSS of the preparation (main process, and the largest worker) for a quarter and all of the text;
- on one core, what the per-line normalisation and the word count cost by themselves.
Target: at least 0.5x the shell pipeline's throughput; memory flat as the input grows.
"""
import argparse
import gzip
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dstrain.languages.fr import LANGUAGE as FR  # noqa: E402
from dstrain.languages.fr import LETTERS  # noqa: E402
from dstrain.pipeline.lm import corpus  # noqa: E402

FUNCTION_WORDS = ("de la le et les des en un une du que il est pour qui dans a par sur pas au plus ne se ce "
                  "avec son sa ses ou mais elle nous vous ils on y à été très où ça après déjà").split()
SYLLABLES = ("ba be bé bi bo bu ca ce ci co cu da de dé di do du fa fe fi fo ga ge gi go la le lé li lo lu "
             "ma me mé mi mo mu na ne ni no pa pe pi po pu ra re ré ri ro ru sa se si so su ta te té ti to tu "
             "va ve vi vo gè mè fê çu ça qua que qui tion ment eur ais ait ant œu ille eau oi ain ien ère").split()
DECORATIONS = (",", ";", ":", "»", "«", "-t-il", "’", "(", ")", "—")
ENDINGS = (".", " !", " ?", "…", ".", ".", ".", "...")
HELD_OUT = 15000


def vocabulary(rng: np.random.Generator, size: int):
    """Pseudo-words ranked like real text: function words first, then syllable words, some decorated."""
    words = list(FUNCTION_WORDS)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES, size=int(rng.integers(1, 5))))
        if word in seen:
            continue
        seen.add(word)
        roll = rng.random()
        if roll < 0.05:
            word = word.capitalize()  # proper nouns
        elif roll < 0.10 and word[0] in "aeiouéèœ":
            word = rng.choice(("l'", "d'", "qu'", "l’", "jusqu'")) + word
        elif roll < 0.16:
            word += rng.choice(DECORATIONS)
        elif roll < 0.17:
            word = word.upper()
        words.append(word)
    ranks = np.arange(1, size + 1)
    weights = 1.0 / ranks ** 1.05
    return np.array(words, dtype=object), weights / weights.sum()


def generate(path: Path, megabytes: float, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    words, weights = vocabulary(rng, 120000)
    target = megabytes * 1e6
    written = 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            lengths = rng.integers(4, 28, size=20000)
            tokens = rng.choice(words, size=int(lengths.sum()), p=weights)
            ends = rng.choice(ENDINGS, size=len(lengths))
            extra = rng.random(len(lengths))
            lines, start = [], 0
            for n, end, roll in zip(lengths, ends, extra):
                line = " ".join(tokens[start:start + n]) + end
                start += n
                if roll < 0.04:
                    line = f"En {1900 + int(roll * 2500)}, " + line  # digits: rejected
                elif roll < 0.05:
                    line = "<s> " + line
                elif roll < 0.08:
                    line = line.upper()
                lines.append(line[0].upper() + line[1:])
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            written += len(chunk.encode("utf-8"))


def held_out_sentences(path: Path) -> frozenset:
    sentences = set()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            text = FR.normalize(line)
            if text:
                sentences.add(text)
            if len(sentences) == HELD_OUT:
                break
    return frozenset(sentences)


def measure(text: Path, out: Path, workers: int) -> dict:
    """One preparation, as the lm stage runs it (in a child process, so its peak RSS is its own)."""
    rules = corpus.Rules(normalize=FR.normalize, allowed=" " + LETTERS, held_out=held_out_sentences(text))
    start = time.perf_counter()
    summary = corpus.build([("text", corpus.file_blocks(text))], out, rules, workers)
    top = corpus.top_words(summary.words, 500000)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lines": summary.total("lines"), "kept": summary.total("kept"),
            "held_out": summary.total("held_out"), "vocabulary": len(summary.words), "top": len(top),
            "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def measure_in_child(text: Path, out: Path, workers: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure", str(text), str(out), "--workers", str(workers)],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def shell_pipeline(text: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-c", "tr '[:upper:]' '[:lower:]' < \"$1\" | sed 's/<s>/ /g' > \"$2\"", "bash",
                    str(text), str(out)], check=True)
    return time.perf_counter() - start


def generate_lm_pass(lower: Path, work: Path) -> None:
    """The work of generate_lm.py's convert_and_filter_topk, without its progress bar: each line
    lower-cased, its words counted, the line written to lower.txt.gz; then the top 500k words written."""
    counts: Counter = Counter()
    with lower.open(encoding="utf-8") as lines, io.TextIOWrapper(
            io.BufferedWriter(gzip.open(str(work / "lower.txt.gz"), "w+")), encoding="utf-8") as out:
        for line in lines:
            line = line.lower()
            counts.update(line.split())
            out.write(line)
    top = counts.most_common(500000)
    (work / "vocab-500000.txt").write_text("\n".join(word for word, _ in top), encoding="utf-8")


def generate_lm_seconds(lower: Path, work: Path) -> float:
    """generate_lm.py's pass over tr | sed's output, in a child process, as it ran."""
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--generate-lm-pass", str(lower), str(work)], check=True)
    return time.perf_counter() - start


def one_core_floors(text: Path) -> dict:
    """MB/s on one core of two unavoidable parts, on a 4 MB block: the French normalize of every line,
    and counting the words of the result (for the vocabulary).  The corpus cannot go faster than these
    allow, whatever the plumbing around them."""
    block = text.read_bytes()[:corpus.BLOCK_BYTES]
    lines = block.decode("utf-8").split("\n")
    start = time.perf_counter()
    kept = [t for t in map(FR.normalize, lines) if t]
    normalize = time.perf_counter() - start
    out = ("\n".join(kept) + "\n").encode("utf-8")
    start = time.perf_counter()
    Counter(out.split())
    count = time.perf_counter() - start
    return {"normalize": len(block) / normalize / 1e6, "count": len(block) / count / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--measure", nargs=2, metavar=("TEXT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--generate-lm-pass", nargs=2, metavar=("LOWER", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_lm_pass:
        generate_lm_pass(Path(args.generate_lm_pass[0]), Path(args.generate_lm_pass[1]))
        return
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.workers)))
        return

    work = Path(tempfile.mkdtemp(prefix="dstrain-bench-lm-"))
    try:
        text, quarter = work / "text.txt", work / "quarter.txt"
        print(f"generating {args.mb:.0f} MB of French-like text...", flush=True)
        generate(text, args.mb)
        with text.open("rb") as whole, quarter.open("wb") as part:
            part.write(whole.read(text.stat().st_size // 4))
            part.write(whole.readline())  # end on a whole line
        size = text.stat().st_size / 1e6

        ours = measure_in_child(text, work / "corpus.txt", args.workers)
        small = measure_in_child(quarter, work / "corpus-quarter.txt", args.workers)
        shell = shell_pipeline(text, work / "shell.txt")
        original = shell + generate_lm_seconds(work / "shell.txt", work)

        print(f"input                       {size:8.1f} MB, {ours['lines']} lines")
        print(f"workers                     {args.workers}")
        print("dstrain corpus preparation  {:8.1f} MB/s ({:.1f} s; {} lines kept, {} dev/test lines left out, "
              "{} distinct words)".format(size / ours["seconds"], ours["seconds"], ours["kept"], ours["held_out"],
                                          ours["vocabulary"]))
        print(f"tr | sed (original)         {size / shell:8.1f} MB/s ({shell:.1f} s; lower-cases ASCII only)")
        print("ratio                       {:8.2f}x  (target >= 0.5x)".format(shell / ours["seconds"]))
        print(f"original's whole preparation {size / original:7.1f} MB/s ({original:.1f} s; tr | sed, then "
              "generate_lm.py's lower/count/gzip pass)")
        print("ratio to it                 {:8.2f}x".format(original / ours["seconds"]))
        floors = one_core_floors(text)
        print("one core, alone             {:8.1f} MB/s French normalize per line, {:.1f} MB/s counting words".format(
            floors["normalize"], floors["count"]))
        for label, result in ((f"{size / 4:.0f} MB", small), (f"{size:.0f} MB", ours)):
            print("peak RSS at {:<8}         main {:6.1f} MB, largest worker {:6.1f} MB, {} distinct words".format(
                label, result["rss_main_mb"], result["rss_worker_mb"], result["vocabulary"]))
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    main()
