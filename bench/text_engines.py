"""What compiled text engines reach on one core, for steps every full normalisation needs.

    .venv/bin/python -m pip install pyarrow polars   # optional: a missing engine is skipped
    .venv/bin/python bench/text_engines.py [--mb 16]

It uses bench/lm_corpus.py's French-like text and one thread per engine: CPython's own (unicodedata, str, re,
Counter over a whole block), Apache Arrow's compute functions (utf8proc, RE2) and Polars (Rust).
For each engine it times four steps by themselves: NFKC, lower-casing, one regex replacement (runs of
punctuation to a space), and counting the words.
A normalisation doing all four cannot be faster than its slowest step.
The last line gives the per-core rate that 0.5x `tr | sed` needs when it runs on every core.
"""
import argparse
import os
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before polars is imported

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lm_corpus import generate, shell_pipeline  # noqa: E402

PUNCTUATION_RUNS = r"[^\w'\n]{2,}|[^\w' \n]"
#: The same for RE2 (Arrow), whose \w is ASCII only; Polars' Rust regex reads it alike.
PUNCTUATION_RUNS_UNICODE = r"[^\p{L}\p{N}_'\n]{2,}|[^\p{L}\p{N}_' \n]"


def cpython_steps(lines):
    import re

    block = "\n".join(lines)
    pattern = re.compile(PUNCTUATION_RUNS)
    return {
        "NFKC": lambda: unicodedata.normalize("NFKC", block),
        "lower": block.lower,
        "regex": lambda: pattern.sub(" ", block),
        "word counts": lambda: Counter(block.split()),
    }


def arrow_steps(lines):
    import pyarrow as pa
    import pyarrow.compute as pc

    pa.set_cpu_count(1)
    array = pa.array(lines, pa.large_string())
    return {
        "NFKC": lambda: pc.utf8_normalize(array, "NFKC"),
        "lower": lambda: pc.utf8_lower(array),
        "regex": lambda: pc.replace_substring_regex(array, PUNCTUATION_RUNS_UNICODE, " "),
        "word counts": lambda: pc.value_counts(pc.list_flatten(pc.split_pattern_regex(array, r"\s+"))),
    }


def polars_steps(lines):
    import polars as pl

    series = pl.Series(lines)
    return {
        "NFKC": lambda: series.str.normalize("NFKC"),
        "lower": series.str.to_lowercase,
        "regex": lambda: series.str.replace_all(PUNCTUATION_RUNS_UNICODE, " "),
        "word counts": lambda: series.str.split(" ").explode().value_counts(),
    }


ENGINES = (("CPython", cpython_steps), ("Arrow", arrow_steps), ("Polars", polars_steps))


def best_seconds(step, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dstrain-bench-engines-") as work:
        text = Path(work) / "text.txt"
        generate(text, args.mb)
        size = text.stat().st_size / 1e6
        lines = text.read_text(encoding="utf-8").split("\n")
        shell = size / shell_pipeline(text, Path(work) / "shell.txt")

    print(f"{size:.1f} MB of French-like text, MB/s on one thread")
    print("{:<10}{:>10}{:>10}{:>10}{:>14}".format("engine", "NFKC", "lower", "regex", "word counts"))
    for name, steps_of in ENGINES:
        try:
            steps = steps_of(lines)
        except ImportError:
            print(f"{name:<10}  not installed")
            continue
        rates = [size / best_seconds(step) for step in steps.values()]
        print("{:<10}{:>10.1f}{:>10.1f}{:>10.1f}{:>14.1f}".format(name, *rates))
    cores = os.cpu_count() or 1
    print(f"tr | sed: {shell:.1f} MB/s; 0.5x of it on {cores} cores needs {0.5 * shell / cores:.1f} MB/s per core "
          "for the whole normalisation, all steps together")


if __name__ == "__main__":
    main()
