"""Reading corpus tables the way they really are: quotes are literal, and one bad line is one bad row.

A line is never held whole when it is longer than any row of a real corpus (``MAX_LINE``): 3 GB without a
newline, inflated from a few MB of archive, is one unreadable row, read past a block at a time.
"""
import contextlib
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, NamedTuple, Optional, Tuple, Union

from dstrain.pipeline.errors import DstrainError

#: Longer than any row of a real corpus: a longer "line" (2 GB without a newline) is one bad row, never held.
MAX_LINE = 1 << 16
#: What ``copy_table`` writes of a longer line: enough for ``lines`` to find it too long.
_CUT = MAX_LINE + 1


class TsvRow(NamedTuple):
    line: int
    fields: Optional[Dict[str, str]]
    #: Why the line could not be read; None when ``fields`` is set.
    problem: Optional[str]


def lines(handle: BinaryIO, first: int = 1) -> Iterator[Tuple[int, Optional[bytes]]]:
    """(number, the line without its end) for each line of ``handle``, numbered from ``first``; None instead
    of a line longer than ``MAX_LINE`` bytes, which is read past without being held."""
    number = first - 1
    while True:
        raw = handle.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # the rest of the line, a block at a time
                raw = handle.readline(MAX_LINE)
            yield number, None
            continue
        yield number, raw.rstrip(b"\r\n")


def read_lines(path: Path) -> Iterator[Tuple[int, Optional[bytes]]]:
    """``lines`` of a file."""
    with Path(path).open("rb") as handle:
        yield from lines(handle)


def copy_table(source: BinaryIO, out: BinaryIO, limit: int, name: str) -> None:
    """Copy a table, each line longer than ``MAX_LINE`` cut to ``MAX_LINE + 1`` bytes as it streams by (still
    too long for ``lines``), and refuse one that copies to more than ``limit`` bytes: inflated from a small
    archive, a table of gigabytes fills no disk."""
    written = 0
    while True:
        raw = source.readline(_CUT)
        if not raw:
            return
        if len(raw) == _CUT and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = source.readline(1 << 20)
            raw = b"x" * _CUT + b"\n"
        written += len(raw)
        if written > limit:
            raise DstrainError(f"{name} is over {limit >> 20} MB: no table of a real corpus is, the archive is "
                               "damaged or made to fill the disk")
        out.write(raw)


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
        for number, raw in lines(handle, first=2):
            if raw is None:
                yield TsvRow(number, None, f"longer than {MAX_LINE} bytes")
                continue
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
