"""Reading corpus TSVs the way they really are: quotes are literal, and one bad line is one bad row."""
import io
from pathlib import Path
from typing import Dict, Iterator, NamedTuple, Optional, Union


class TsvRow(NamedTuple):
    line: int
    fields: Optional[Dict[str, str]]
    #: Why the line could not be read; None when ``fields`` is set.
    problem: Optional[str]


def read_tsv(path: Union[Path, bytes], required=(), name: str = "") -> Iterator[TsvRow]:
    """Yield every data line of a tab-separated file with a header line.

    Common Voice sentences hold unbalanced quotes, so no quoting is applied: a
    field runs to the next tab.  A line that is not UTF-8 or lacks a required
    column is reported as a problem and the lines after it are still read.
    ``path`` may also be the file's content, read from an archive; ``name`` names it in errors.
    """
    handle = io.BytesIO(path) if isinstance(path, bytes) else Path(path).open("rb")
    path = name or path
    with handle:
        header = handle.readline().decode("utf-8-sig").rstrip("\r\n").split("\t")
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError("{}: header has no column {} (it has: {})".format(path, missing[0], ", ".join(header)))
        for number, raw in enumerate(handle, start=2):
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
