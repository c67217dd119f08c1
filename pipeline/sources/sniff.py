"""Is a file what its name says, and whole?  For a source without a pinned sha256, before it is called verified.

Servers answer 200 with an HTML error or login page as readily as with the archive, and a server or proxy
that lies about a resumed download splices two files into one whose start reads well.  So a file whose name
says its format is read to its end, once, when it is verified: every member of a tar and its two zero blocks
of end, a gzip's CRC and length, an xz's or bzip2's checks, a zip's central directory and the CRC of every
member.  The sha256 is computed in the same pass (``check(path, hashing=True)``), so even a 20 GB archive
placed by hand is read once; its size and mtime are then recorded (fetch.py) and it is never read again.
"""
import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

from tqdm import tqdm

from dstrain.pipeline.sources.archive import DAMAGE, apart, counting, decompressed

#: Name endings, longest first, and the magic bytes their files start with (b"" when tar says it itself).
KINDS = (
    (".tar.gz", "gzip-compressed tar", b"\x1f\x8b"), (".tgz", "gzip-compressed tar", b"\x1f\x8b"),
    (".tar.bz2", "bzip2-compressed tar", b"BZh"), (".tbz2", "bzip2-compressed tar", b"BZh"),
    (".tar.xz", "xz-compressed tar", b"\xfd7zXZ\x00"), (".txz", "xz-compressed tar", b"\xfd7zXZ\x00"),
    (".tar", "tar", b""), (".zip", "zip", b"PK"),
    (".gz", "gzip", b"\x1f\x8b"), (".bz2", "bzip2", b"BZh"), (".xz", "xz", b"\xfd7zXZ\x00"),
)
#: Bytes read at a time.
CHUNK = 1 << 20
#: A tar ends with two blocks of zeros.
TAR_END = 2 * tarfile.BLOCKSIZE
#: Bytes between two reads of a zip that are hashed on the way rather than read again at the end.
ZIP_GAP = 1 << 20


class Verdict(NamedTuple):
    #: The file's sha256, when asked for.
    sha256: Optional[str]
    #: Why the file is not the kind of file its name says, or not whole; None when it is.
    problem: Optional[str]
    #: When the problem is damage (cut short, corrupt) rather than another kind of file (a web page): what.
    damaged: Optional[str] = None


def check(path: Path, hashing: bool = False, name: str = "") -> Verdict:
    """Read ``path`` to its end once: whether it is what its name (or ``name``, for a download's ``.part``)
    says, whole, and (``hashing``) its sha256."""
    name = name or path.name
    with path.open("rb") as raw, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                      desc="verifying " + path.name, leave=False) as bar:
        reader = _Hashing(raw, bar, hashlib.sha256() if hashing else None)
        head = raw.read(512)
        raw.seek(0)
        wrong, damaged = _kind_problem(name, head), None
        if wrong is None:
            damaged = _damage(reader, name, counting(path.with_name(name)))
            wrong = f"it is a truncated or corrupt {_kind(name)[0]} file: {damaged}" if damaged else None
        return Verdict(reader.finish(), wrong, damaged)


def _kind_problem(name: str, head: bytes) -> Optional[str]:
    if _is_html(head) and not name.lower().endswith((".html", ".htm")):
        return "it is an HTML page, not the file (the server may want a login, or the address may be wrong)"
    kind = _kind(name)
    if kind is None:
        return None
    label, magic = kind
    if not head:
        return f"it is empty, not a {label} file"
    if not head.startswith(magic):
        return f"it is not a {label} file: it starts with {head[:16]!r}"
    return None


def _kind(name: str):
    return next(((label, magic) for ending, label, magic in KINDS if name.lower().endswith(ending)), None)


def _damage(reader: "_Hashing", name: str, bound) -> Optional[str]:
    """Why the file, of the kind its name says, is not whole; None when every byte of it reads.  What it
    decompresses goes through ``bound`` (archive.counting): past the run's bound, ArchiveTooLarge."""
    kind = _kind(name)
    if kind is None:  # a text file, a numbered part: nothing more to check by its name
        return None
    label = kind[0]
    try:
        if label == "zip":
            return _zip_whole(reader, bound)
        if "tar" in label:
            return _tar_whole(reader, bound)
        opener = {"gzip": lambda raw: gzip.GzipFile(fileobj=raw), "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}[label]
        with bound(opener(reader)) as stream:
            while stream.read(CHUNK):
                pass
        return None
    except DAMAGE + (OSError,) as exc:
        return str(exc) or type(exc).__name__


def _tar_whole(reader: "_Hashing", bound) -> Optional[str]:
    magic = reader.raw.read(6)
    reader.raw.seek(0)
    with decompressed(reader, magic) as plain:
        counted = _Counted(bound(plain))
        with tarfile.open(fileobj=counted, mode="r|", bufsize=64 << 10) as tar:
            while tar.next() is not None:
                tar.members.clear()  # a million members are not all kept
            end = tar.offset
        while counted.read(CHUNK):  # to the end of the compressed stream: its CRC is checked there
            pass
    if counted.nonzero_end > end or counted.position - end < TAR_END:
        return f"{counted.position - end} bytes after its last member, where a tar ends with {TAR_END} zero bytes"
    return None


def _zip_whole(reader: "_Hashing", bound) -> Optional[str]:
    with zipfile.ZipFile(reader) as archive:
        # In the order they are stored, so the file is read from start to end (and hashed on the way).
        for info in sorted(apart(archive), key=lambda i: i.header_offset):
            if not info.is_dir():
                with bound(archive.open(info)) as member:  # its CRC is checked at its end
                    while member.read(CHUNK):
                        pass
    return None


class _Counted(io.RawIOBase):
    """A stream's bytes counted as they are read, with where the last byte that is not zero ends."""

    def __init__(self, plain):
        self.plain, self.position, self.nonzero_end = plain, 0, 0

    def readable(self):
        return True

    def read(self, size=-1):
        data = self.plain.read(size)
        stripped = len(data.rstrip(b"\0"))
        if stripped:
            self.nonzero_end = self.position + stripped
        self.position += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _Hashing(io.RawIOBase):
    """A file read by a checker, hashed in file order as it goes: reads that continue what was hashed (or
    start a little past it) extend the hash, others (a zip's directory, read first, at the end) are hashed
    at ``finish``, which hashes whatever was not read."""

    def __init__(self, raw, bar, hasher):
        self.raw, self.bar, self.hasher = raw, bar, hasher
        self.hashed = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self.raw.seek(offset, whence)

    def tell(self):
        return self.raw.tell()

    def read(self, size=-1):
        start = self.raw.tell()
        if self.hasher is not None and self.hashed < start <= self.hashed + ZIP_GAP:
            self.raw.seek(self.hashed)
            self._hash(self.raw.read(start - self.hashed), self.hashed)
        data = self.raw.read(size)
        self._hash(data, start)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _hash(self, data: bytes, start: int) -> None:
        end = start + len(data)
        if start <= self.hashed < end:
            if self.hasher is not None:
                self.hasher.update(memoryview(data)[self.hashed - start:])
            self.bar.update(end - self.hashed)
            self.hashed = end

    def finish(self) -> Optional[str]:
        """The sha256 of the whole file, reading what the checker did not; None when not hashing."""
        if self.hasher is None:
            return None
        self.raw.seek(self.hashed)
        for block in iter(lambda: self.raw.read(CHUNK), b""):
            self._hash(block, self.hashed)
        return self.hasher.hexdigest()


def _is_html(head: bytes) -> bool:
    start = head.lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))
