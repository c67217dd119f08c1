"""DeepSpeech's alphabet file (``alphabet.txt``): one output label per line, read as DeepSpeech 0.9.3 reads it."""
import re
from pathlib import Path
from typing import Iterable, List


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


def alphabet_text(characters: Iterable[str]) -> str:
    lines = [
        "# Each line in this file represents the Unicode codepoint (UTF-8 encoded)",
        "# associated with a numeric label.",
        "# A line that starts with # is a comment. You can escape it with \\# if you wish",
        "# to use '#' as a label.",
    ]
    lines += ["\\#" if c == "#" else c for c in characters]
    lines.append("# The last (non-comment) line needs to end with a newline.")
    return "\n".join(lines) + "\n"
