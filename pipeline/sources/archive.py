"""Safe extraction of source archives: tar (streamed; plain, gz, bz2, xz) and zip.

Within ``bounded(n)`` (the runner sets it from ``archives.max_expanded_bytes``), one reading of an archive,
an extraction or a pass over its members, stops with ``ArchiveTooLarge`` once it has decompressed more than
``n`` bytes: a small upload cannot expand into a full disk or hours of reading.  An archive inside an
archive is read, and bounded, on its own.
"""
import bz2
import contextlib
import contextvars
import gzip
import io
import logging
import lzma
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from dstrain.pipeline.advice import name_refused, of_one_name
from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.paths import folded, printable

log = logging.getLogger("dstrain")
#: tarfile's stream buffer.  Larger is slower: every 512-byte header read copies the rest of the buffer
#: (1 MiB made reading a Common Voice archive 4x slower than 64 KiB).
READ_SIZE = 64 << 10
DONE = ".extracted.json"
#: What reading a truncated or damaged archive raises, from the container or the compression under it.
DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


#: The most bytes one reading of an archive may decompress; None: no bound.
_bound: contextvars.ContextVar = contextvars.ContextVar("dstrain_archive_bound", default=None)


class ArchiveTooLarge(DstrainError):
    """An archive that expands past the run's bound: not damaged, too large for this run."""

    def __init__(self, archive: Path, limit: int):
        super().__init__(f"{archive.name} expands to more than {limit} bytes, the bound on what one archive may "
                         "expand to (archives.max_expanded_bytes); reading it stopped there, and nothing it "
                         "holds is used. Raise the bound for an archive this large (a service's host sets it)")


@contextlib.contextmanager
def bounded(max_bytes: Optional[int]):
    """Within this block, one reading of an archive decompresses at most ``max_bytes`` (None: no bound)."""
    token = _bound.set(max_bytes)
    try:
        yield
    finally:
        _bound.reset(token)


class _Counted:
    """A reader that adds what it reads to ``tally``, shared by one reading of ``archive``, up to the bound."""

    def __init__(self, stream, archive: Path, limit: int, tally: list):
        self.stream, self.archive, self.limit, self.tally = stream, archive, limit, tally

    def read(self, size=-1):
        data = self.stream.read(size)
        self.tally[0] += len(data)
        if self.tally[0] > self.limit:
            raise ArchiveTooLarge(self.archive, self.limit)
        return data

    def close(self):
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def counting(archive: Path):
    """How this reading of ``archive`` (an extraction, a pass over its members, its verification: sniff.py)
    wraps what it decompresses: counted when a bound is set."""
    limit, tally = _bound.get(), [0]
    if limit is None:
        return lambda stream: stream
    return lambda stream: _Counted(stream, archive, limit, tally)


class CorruptArchive(DstrainError):
    """An archive that ends early or does not decompress: it must be fetched (or placed) again."""

    def __init__(self, archive: Path, reason: str):
        super().__init__(f"{archive.absolute()} is truncated or corrupt: {reason}")
        self.archive = archive
        self.reason = reason


@contextlib.contextmanager
def _damage_named(archive: Path):
    """Damage found while reading ``archive``, in this module or by a caller reading its members, as one error."""
    try:
        yield
    except DAMAGE as exc:
        raise CorruptArchive(archive, str(exc) or type(exc).__name__) from None


def extract(archive: Path, target: Path, identity: str, keep=lambda name: True) -> Path:
    """Extract the members ``keep`` accepts into ``target``; redo it unless it finished for this archive.

    ``identity`` (the archive's sha256) is written into the marker last, so a
    killed extraction or a different archive starts again from scratch.  A member that cannot be written
    (its name is too long for the file system, or holds bytes it refuses), files whose names differ only in
    case (one file where case is ignored) and a file the archive holds twice are left out, each with its
    reason (``refused_members``).  An error of the machine (no space, a read-only disk) stops the extraction.
    """
    marker = target / DONE
    if (read_json(marker) or {}).get("identity") == identity:
        return target
    if target.exists():
        shutil.rmtree(str(target))
    target.mkdir(parents=True)
    root = target.resolve()
    skipped = 0
    refused: Dict[str, List[str]] = {}
    written: Dict[str, str] = {}  # folded path -> the path of the file written there
    members = _zip_members if zipfile.is_zipfile(str(archive)) else tar_members
    with members(archive) as entries:
        for name, kind, open_member in entries:
            parts = PurePosixPath(name).parts
            dest = root.joinpath(*parts) if parts else root
            if name.startswith("/") or ".." in parts or root not in (dest, *dest.parents):
                raise DstrainError(
                    f"{archive}: refusing member {name!r}, its path leaves the extraction directory; "
                    "the archive is corrupt or malicious"
                )
            if not keep(name):
                continue
            if kind not in ("dir", "file"):  # links and devices could point anywhere; sources never need them
                skipped += 1
                continue
            path = "/".join(parts)
            first = written.get(folded(path)) if kind == "file" else None
            if first is not None:
                refused[printable(first)] = refused[printable(path)] = ["name_clash", _clash(first, path)]
                root.joinpath(*first.split("/")).unlink(missing_ok=True)
                continue
            try:
                _write_member(dest, kind, open_member)
            except (OSError, ValueError) as exc:
                if not of_one_name(exc):
                    raise
                refused[printable(path)] = ["invalid_path", f"{printable(path)!r} cannot be a file here: "
                                                            f"{name_refused(exc)}"]
                continue
            if kind == "file":
                written[folded(path)] = path
    if skipped:
        log.warning("%s: skipped %d links or special files", archive.name, skipped)
    if refused:
        log.warning("%s: %d members left out, their names clash or cannot be files here (%s)", archive.name,
                    len(refused), marker)
    write_json(marker, {"identity": identity, "archive": archive.name, "refused": refused})
    return target


def _clash(first: str, path: str) -> str:
    """Why two members that would be one file are both left out: which of the two a row means cannot be told."""
    if first == path:
        return f"the archive holds {printable(path)!r} twice, and which one is meant cannot be told"
    return f"{printable(first)!r} and {printable(path)!r} differ only in case: where case is ignored they are one file"


def _write_member(dest: Path, kind: str, open_member) -> None:
    if kind == "dir":
        dest.mkdir(parents=True, exist_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open_member() as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except BaseException:
        with contextlib.suppress(OSError, ValueError):  # no half-written file stays behind
            dest.unlink()
        raise


def refused_members(target: Path) -> Dict[str, List[str]]:
    """The members ``extract`` left out of ``target``, by path (``printable``): [reason, detail] each."""
    return (read_json(target / DONE) or {}).get("refused", {})


def canonical(name: str) -> Optional[Tuple[str, ...]]:
    """A member's path, split, when its name is the plain form of a path inside the archive; else None.

    Only such a name may stand for a corpus's file: ``../fr/train.tsv``, ``/fr/train.tsv`` or
    ``fr//train.tsv`` placed before the real ``fr/train.tsv`` must not be read in its stead.  A leading
    ``./`` (what ``tar -C dir .`` writes) is allowed.
    """
    parts = name[2:].split("/") if name.startswith("./") else name.split("/")
    if name.endswith("/"):  # a directory
        parts.pop()
    if not parts or any(part in ("", ".", "..") for part in parts):
        return None
    return tuple(parts)


@contextlib.contextmanager
def tar_members(archive: Path, desc: str = ""):
    """(name, kind, opener) for each member, read in one pass: a .tar.gz cannot be read out of order."""
    reader = tqdm.wrapattr(archive.open("rb"), "read", total=archive.stat().st_size, unit="B", unit_scale=True,
                           desc=desc or "extract " + archive.name, leave=False)
    counted = counting(archive)
    with _damage_named(archive), reader as raw, decompressed(raw, _magic(archive)) as plain, \
            tarfile.open(fileobj=counted(plain), mode="r|", bufsize=READ_SIZE) as tar:
        yield _forgetting(tar)


#: How each compression a .tar can have starts, and the reader that undoes it.
_COMPRESSIONS = ((b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")), (b"BZh", bz2.BZ2File),
                 (b"\xfd7zXZ\x00", lzma.LZMAFile))


def _magic(archive: Path) -> bytes:
    with archive.open("rb") as handle:
        return handle.read(6)


@contextlib.contextmanager
def decompressed(raw, magic: bytes):
    """The tar inside ``raw``, decompressed here rather than by tarfile's stream mode: tarfile inflates a
    64 KB block at a time whatever it holds, and copies what is left of it on every 512-byte read.  An
    archive that compresses well (100,000 one-byte members; a member of zeros) then cost time per member
    in proportion to the block's inflated size, and memory a thousand times the block.  These readers
    inflate no more than is asked."""
    opener = next((opener for start, opener in _COMPRESSIONS if magic.startswith(start)), None)
    if opener is None:
        yield raw
        return
    with opener(raw) as plain:
        yield _AsTarErrors(plain)


class _AsTarErrors(io.RawIOBase):
    """A decompressor's errors as tarfile's own, as they were when tarfile decompressed: a damaged or cut
    archive raises tarfile.ReadError whoever reads it."""

    def __init__(self, plain):
        self.plain = plain

    def readable(self):
        return True

    def read(self, size=-1):
        try:
            return self.plain.read(size)
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise tarfile.ReadError(f"damaged compressed data: {exc}") from exc


def _forgetting(tar: tarfile.TarFile):
    """The members in order, each dropped once passed: tarfile keeps every TarInfo it has read, which for
    a Common Voice release (a million clips) is about a gigabyte."""
    while True:
        member = tar.next()
        if member is None:
            return
        yield (member.name, "dir" if member.isdir() else "file" if member.isfile() else "other",
               lambda m=member: tar.extractfile(m))
        tar.members.clear()


@contextlib.contextmanager
def _zip_members(archive: Path):
    """(name, kind, opener) for each member; the progress counts compressed bytes."""
    counted = counting(archive)
    with _damage_named(archive), zipfile.ZipFile(str(archive)) as zip_file:
        infos = apart(zip_file)
        with tqdm(total=sum(i.compress_size for i in infos), unit="B", unit_scale=True,
                  desc="extract " + archive.name, leave=False) as bar:
            def entries():
                for info in infos:
                    yield info.filename, _zip_kind(info), lambda info=info: counted(zip_file.open(info))
                    bar.update(info.compress_size)
            yield entries()


#: The fixed part of a zip member's local header, before its name and extra field.
_LOCAL_HEADER = 30


def apart(zip_file: zipfile.ZipFile) -> List[zipfile.ZipInfo]:
    """The zip's members, in the order of its directory, refused (``BadZipFile``, damage) when the data of one
    reaches into the next member or the directory: a zip bomb's trick, one deflated kernel read as thousands
    of members (42 kB that expand to petabytes), which no zipfile before Python 3.12 refuses itself."""
    infos = zip_file.infolist()
    stored = sorted(infos, key=lambda i: i.header_offset)
    for info, limit in zip(stored, [i.header_offset for i in stored[1:]] + [zip_file.start_dir]):
        if info.header_offset + _LOCAL_HEADER + info.compress_size > limit:
            raise zipfile.BadZipFile(f"member {info.filename!r} overlaps the next one: the same bytes would be read "
                                     "as several members (a zip bomb)")
    return infos


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.is_dir():
        return "dir"
    # The file type from the Unix mode bits; zips made elsewhere, or by writestr, leave it 0.
    return "file" if stat.S_IFMT(info.external_attr >> 16) in (0, stat.S_IFREG) else "other"
