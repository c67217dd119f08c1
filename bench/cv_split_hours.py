"""How many hours each Common Voice split trains on, on a release shaped like a real one.

    .venv/bin/python bench/cv_split_hours.py [--clips 900] [--sentences 300] [--workers N] [--dir DIR]

Builds an espeak-ng release whose validated.tsv is several times its train.tsv
(tests/fixtures/common_voice.py's shaped_rows: a few speakers record most clips,
popular sentences are read many times, the official split made as
CorporaCreator makes it), imports it with split = "official" and with
split = "validated" at several max_repeats, and prints clips and hours per split.
"""
import argparse
import hashlib
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dstrain.importers.common_voice import CORPUS  # noqa: E402
from dstrain.languages.fr import LANGUAGE  # noqa: E402
from tests.fixtures.common_voice import build_common_voice, shaped_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=900)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="cv-split-hours-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = shaped_rows(clips=args.clips, sentences=args.sentences)
    shape = Counter(row.split for row in rows)
    validated = len(rows)
    print(f"release: {validated} validated clips, official train {shape['train']}, dev {shape['dev']}, "
          f"test {shape['test']} (validated/train = {validated / shape['train']:.1f}), "
          f"{len({r.group for r in rows})} speakers, {len({r.text for r in rows})} sentences")
    archive = build_common_voice(work, rows=rows, release="cv-corpus-88.0-2096-01-01")
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    print("| split | max_repeats | train clips | train h | dev h | test h |\n|---|---:|---:|---:|---:|---:|")
    for split, repeats in (("official", None), ("validated", 1), ("validated", 5), ("validated", 1000)):
        params = CORPUS.Params(locale="fr", split=split, max_duration=10.0, **({"max_repeats": repeats} if repeats
                                                                                 else {}))
        out = work / f"{split}-{repeats}"
        manifest = CORPUS.prepare(archive, sha256, out, LANGUAGE.normalize, params, args.workers)
        hours = manifest["hours"]
        print(f"| {split} | {repeats or '-'} | {manifest['counts']['train']} | {hours['train']:.3f} | "
              f"{hours['dev']:.3f} | {hours['test']:.3f} |")


if __name__ == "__main__":
    main()
