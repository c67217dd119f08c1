"""Is a file what its name says?  For a source without a pinned sha256, before it is called verified.

Servers answer 200 with an HTML error or login page as readily as with the
archive; a file cut short, or of another format, must not be remembered as
good.  The check reads the magic bytes and the start of the first member, a
few kilobytes, whatever the archive's size.
"""
import bz2
import gzip
import lzma
import tarfile
import zipfile
from pathlib import Path
from typing import Optional

from dstrain.pipeline.sources.archive import DAMAGE

#: Name endings, longest first, and the magic bytes their files start with (b"" when tar says it itself).
KINDS = (
    (".tar.gz", "gzip-compressed tar", b"\x1f\x8b"), (".tgz", "gzip-compressed tar", b"\x1f\x8b"),
    (".tar.bz2", "bzip2-compressed tar", b"BZh"), (".tbz2", "bzip2-compressed tar", b"BZh"),
    (".tar.xz", "xz-compressed tar", b"\xfd7zXZ\x00"), (".txz", "xz-compressed tar", b"\xfd7zXZ\x00"),
    (".tar", "tar", b""), (".zip", "zip", b"PK"),
    (".gz", "gzip", b"\x1f\x8b"), (".bz2", "bzip2", b"BZh"), (".xz", "xz", b"\xfd7zXZ\x00"),
)
SAMPLE = 64 << 10


def problem(path: Path) -> Optional[str]:
    """Why ``path`` is not the kind of file its name says, or None when it is."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if _is_html(head) and not path.name.lower().endswith((".html", ".htm")):
        return "it is an HTML page, not the file (the server may want a login, or the address may be wrong)"
    kind = next(((label, magic) for ending, label, magic in KINDS if path.name.lower().endswith(ending)), None)
    if kind is None:  # a text file, a numbered part: nothing more to check by its name
        return None
    label, magic = kind
    if not head:
        return f"it is empty, not a {label} file"
    if not head.startswith(magic):
        return f"it is not a {label} file: it starts with {head[:16]!r}"
    try:
        return _first_member(path, label)
    except DAMAGE + (OSError,) as exc:
        return f"it is not a readable {label} file: {exc or type(exc).__name__}"


def _first_member(path: Path, label: str) -> Optional[str]:
    if label == "zip":
        with zipfile.ZipFile(str(path)) as archive:
            infos = archive.infolist()
            if infos:
                with archive.open(infos[0]) as member:
                    member.read(SAMPLE)
        return None
    if "tar" in label:
        with tarfile.open(str(path), "r|*") as archive:
            member = archive.next()
            if member is None:
                return f"it is a {label} file with nothing in it"
            if member.isfile():
                archive.extractfile(member).read(SAMPLE)
        return None
    opener = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}[label]
    with opener(str(path), "rb") as stream:
        stream.read(SAMPLE)
    return None


def _is_html(head: bytes) -> bool:
    start = head.lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))
