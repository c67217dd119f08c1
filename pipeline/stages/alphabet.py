"""alphabet: the characters the model will output, in DeepSpeech's alphabet.txt format."""
import logging
import re
from collections import Counter
from pathlib import Path
from typing import List

from importers.deepspeech_csv import read_samples
from pipeline.atomic import write_text
from pipeline.errors import StageError
from pipeline.language import ENGLISH_LETTERS
from pipeline.paths import SPLITS

log = logging.getLogger("dstrain")
RARE = 5


def read_labels(path: Path) -> List[str]:
    """The labels of a DeepSpeech alphabet file, read as its C++ Alphabet::init does (v0.9.3).

    One label per line; a line starting with '#' is a comment; '\\#' is the label '#'; empty lines are skipped.
    """
    labels = []
    # Its getline_crossplatform ends a line at \n, \r\n or \r.
    for line in re.split(r"\r\n|\r|\n", path.read_text(encoding="utf-8")):
        if line == "\\#":
            labels.append("#")
        elif line and not line.startswith("#"):
            labels.append(line)
    return labels


def alphabet_text(characters) -> str:
    lines = [
        "# Each line in this file represents the Unicode codepoint (UTF-8 encoded)",
        "# associated with a numeric label.",
        "# A line that starts with # is a comment. You can escape it with \\# if you wish",
        "# to use '#' as a label.",
    ]
    lines += ["\\#" if c == "#" else c for c in characters]
    lines.append("# The last (non-comment) line needs to end with a newline.")
    return "\n".join(lines) + "\n"


def inputs(ctx) -> dict:
    return {"english_compatible": ctx.config.settings.english_compatible}


def run(ctx) -> dict:
    seen: Counter = Counter()
    for split in SPLITS:
        for sample in read_samples(ctx.paths.clean_csv(split)):
            seen.update(sample.transcript)
    if ctx.config.settings.english_compatible:
        characters = [" "] + list(ENGLISH_LETTERS)
        unused = [c for c in characters if not seen[c]]
        if unused:
            log.info("English alphabet: %d characters never occur in the data: %s", len(unused), "".join(unused))
    else:
        if not seen:
            raise StageError("the cleaned transcripts are empty; nothing to build an alphabet from")
        characters = [" "] + sorted(c for c in seen if c != " ")
    rare = sorted(c for c in characters if 0 < seen[c] < RARE)
    if rare:
        log.warning("characters seen fewer than %d times (the model can hardly learn them): %s",
                    RARE, " ".join(repr(c) for c in rare))
    text = alphabet_text(characters)
    write_text(ctx.paths.alphabet, text)
    log.info("alphabet: %d labels -> %s", len(characters), ctx.paths.alphabet)
    return {"counts": {"labels": len(characters)}, "outputs": text}
