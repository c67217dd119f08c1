"""A server's answer to a download, and to a resumed one: its bytes as it stores them, what it says it sends,
and whether it truly continues the partial file.

Servers and proxies do not always answer a range request as they say: a 206 may start at byte 0 while its
Content-Range names the offset asked for, or be a piece of a newer version of the file, If-Range ignored.
Spliced onto the partial file, either makes a file whose start reads well.  So fetch.py asks again for the
``OVERLAP`` bytes before the partial file's end and splices only when they are the same, and never when the
answer's validator (ETag, Last-Modified) is not the one the partial file was downloaded with.
"""
import re
import time
from pathlib import Path
from typing import Iterator, Optional, Tuple

import requests
import urllib3

#: Small network reads: bytes of a read cut short by a dropped connection are lost.
NET_CHUNK = 1 << 16
#: A download that brings fewer than STALL_BYTES in STALL_SECONDS (about 1 kB/s) has stalled: slower than any
#: network a corpus is fetched over, and what a server that trickles to hold a run would send.
STALL_SECONDS = 60.0
STALL_BYTES = 64 << 10
#: Bytes before a partial file's end asked for again when it is resumed, and compared with what it holds.
OVERLAP = 64 << 10


class Restart(Exception):
    """The server's answer cannot continue the partial file: it is dropped, and the download starts over."""


def validator(resp) -> Optional[str]:
    """What If-Range can use to make sure a resumed download continues the same file."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        return etag
    return resp.headers.get("Last-Modified")


def content_range(resp) -> Tuple[Optional[int], Optional[int]]:
    """(first byte, total size) of a 206 or 416 answer's Content-Range; None for what it does not say."""
    found = re.match(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", resp.headers.get("Content-Range", ""))
    if not found:
        return None, None
    first, total = found.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def body(resp) -> Iterator[bytes]:
    """The body's bytes as the server holds them: a .tar.gz that a server sends with ``Content-Encoding: gzip``
    stays the .tar.gz it is (undone, it would be a .tar, and never the size announced).

    Read as it comes (``read1``), so that a server that trickles (a byte a minute, each within the read
    timeout) is caught: fewer than ``STALL_BYTES`` in ``STALL_SECONDS`` is a dropped connection, retried and
    resumed like one, so a download ends, done or failed, after at most fetch.ATTEMPTS such minutes."""
    window, got = time.monotonic(), 0
    try:
        while True:
            block = resp.raw.read1(NET_CHUNK, decode_content=False)
            if not block:
                return
            yield block
            got += len(block)
            elapsed = time.monotonic() - window
            if elapsed >= STALL_SECONDS:
                if got < STALL_BYTES:
                    raise requests.ConnectionError(f"the server sent {got} bytes in {elapsed:.0f} s, less than "
                                                   f"{STALL_BYTES} bytes in {STALL_SECONDS:.0f} s: it stalls")
                window, got = time.monotonic(), 0
    except urllib3.exceptions.HTTPError as exc:  # as requests' own iter_content would say it, to be retried
        raise requests.ConnectionError(exc) from exc


def after_overlap(chunks: Iterator[bytes], part: Path, offset: int, overlap: int) -> Iterator[bytes]:
    """The body after its first ``overlap`` bytes, which must be the partial file's last ones: a server that
    answers a resume with another piece, or another version, of the file is caught before anything is spliced."""
    head = b""
    for block in chunks:
        head += block
        if len(head) >= overlap:
            break
    if len(head) < overlap:
        raise requests.ConnectionError(f"connection closed within the {overlap} bytes asked for again")
    with part.open("rb") as handle:
        handle.seek(offset - overlap)
        ours = handle.read(overlap)
    if head[:overlap] != ours:
        raise Restart(f"the {overlap} bytes before byte {offset}, asked for again, are not those downloaded before: "
                      "the server does not continue the same file")

    def rest() -> Iterator[bytes]:
        if len(head) > overlap:
            yield head[overlap:]
        yield from chunks
    return rest()
