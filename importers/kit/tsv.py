"""Reading corpus TSVs the way they really are: quotes are literal, and one bad line is one bad row."""
import contextlib
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, NamedTuple, Optional, Union

#: Longer than any row of a real corpus: a longer "line" (2 GB without a newline) is one bad row, never held.
MAX_LINE = 1 << 16


class TsvRow(NamedTuple):
    line: int
    fields: Optional[Dict[str, str]]
    #: Why the line could not be read; None when ``fields`` is set.
    problem: Optional[str]


def read_tsv(path: Union[Path, BinaryIO], required=(), name: str = "") -> Iterator[TsvRow]:
    """Yield every data line of a tab-separated file with a header line.

    Common Voice sentences hold unbalanced quotes, so no quoting is applied: a
    field runs to the next tab.  A line that is not UTF-8, lacks a required
    column or is longer than ``MAX_LINE`` bytes is reported as a problem and the
    lines after it are still read.  ``path`` may also be an open binary file
    (a member read from an archive); ``name`` names it in errors.
    """
    opened = Path(path).open("rb") if isinstance(path, (str, Path)) else contextlib.nullcontext(path)
    path = name or path
    with opened as handle:
        header = handle.readline(MAX_LINE).decode("utf-8-sig").rstrip("\r\n").split("\t")
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError("{}: header has no column {} (it has: {})".format(path, missing[0], ", ".join(header)))
        number = 1
        while True:
            raw = handle.readline(MAX_LINE + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # the rest of the line, a block at a time
                    raw = handle.readline(MAX_LINE)
                yield TsvRow(number, None, f"longer than {MAX_LINE} bytes")
                continue
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield TsvRow(number, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            fields = dict(zip(header, text.split("\t")))
            absent = [name for name in required if name not in fields]
            if absent:
                yield TsvRow(number, None, f"too few fields: no {absent[0]}")
                continue
            yield TsvRow(number, fields, None)
