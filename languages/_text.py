"""Small pieces shared by the language normalisers (not a language: no LANGUAGE).

Everything here is built once at import; the normalisers only run
``str.translate`` and precompiled regexes on each label.
"""
import re
import unicodedata
from typing import Dict, Iterable, Mapping, Optional

Table = Dict[int, Optional[str]]

#: Typographic apostrophes and the quote-like marks people type instead of one.
APOSTROPHES = "\u2019\u2018\u201b`\u02bc\u02bb\u2032\uff07"
#: Invisible characters that sit inside words: deleting them keeps the word whole.
INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
#: Combining marks left after NFKC (on letters with no precomposed form, or
#: produced by lower(), e.g. "İ" -> "i̇"); the base letter is kept.
COMBINING_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))

#: A word of the cleaned transcript.  Anything else separates words, which is
#: how dashes, quotes, ellipses and other punctuation become spaces.
WORD = re.compile(r"[\w']+")


def any_of(table: Table) -> "re.Pattern[str]":
    """A regex finding a character the table changes: most labels need no translate."""
    return re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(table)) + "]")


def chars_to(chars: Iterable[str], value: Optional[str]) -> Table:
    return {ord(c): value for c in chars}


def words_table(words: Mapping[str, str]) -> Table:
    """Symbols read aloud; padded with spaces so a glued one ("cent%") splits off."""
    return {ord(symbol): f" {word} " for symbol, word in words.items()}


def combining_marks() -> Table:
    return {cp: None for start, end in COMBINING_RANGES for cp in range(start, end + 1)}


def latin_fold(keep: str, extra: Mapping[str, str]) -> Table:
    """Map lower-case accented Latin letters outside ``keep`` to base letters (ñ -> n).

    Labels are lower-cased before this table runs.  ``extra`` covers letters
    NFKD cannot take apart (ß, ø, ł, ...) and overrides the automatic folding.
    """
    table = {}  # type: Table
    for start, end in ((0x00C0, 0x024F), (0x1E00, 0x1EFF)):
        for cp in range(start, end + 1):
            char = chr(cp)
            if not char.islower() or char in keep:
                continue
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            if base.isascii() and base.isalpha():
                table[cp] = base.lower()
    table.update((ord(char), value) for char, value in extra.items())
    return table
