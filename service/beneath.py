"""Opening and walking beneath a directory's descriptor without following a symlink: the system calls under
tenantfs.py.

``open_beneath`` uses ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` (Linux 5.6
and later), where the kernel itself refuses a symlink, a ``..`` or a magic link anywhere on the way.  Where
openat2 is missing (an older kernel, or a seccomp filter answering ENOSYS) it walks one component at a time
instead: each directory opened with ``O_DIRECTORY | O_NOFOLLOW`` from the one before, the last component
with ``O_NOFOLLOW``.  The walks below (disk use, listings, deletion) enter each directory the same way,
from its parent's descriptor, so one swapped for a symlink or a FIFO meanwhile is never entered.
"""
import ctypes
import errno
import os
import secrets
import stat
from typing import Iterator, List, NamedTuple, Optional, Tuple

#: openat2(2): the same number in every architecture's table that has it (x86-64, arm64, ...).
OPENAT2_SYSCALL = 437
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

#: Flags of every open here: no descriptor leaks into a child; a FIFO does not block the open, a terminal is
#: never adopted.
BASE = os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | BASE
#: Errors that mean "not a plain file or directory reached without a link": a symlink (ELOOP), a '..' or a
#: mount out of the tree (EXDEV), a file where a directory was needed (ENOTDIR), a socket (ENXIO), a name
#: no file system holds (ENAMETOOLONG).
NOT_PLAIN = {errno.ENOENT, errno.ELOOP, errno.EXDEV, errno.ENOTDIR, errno.ENXIO, errno.EISDIR, errno.ENAMETOOLONG}
#: Directories a walk enters one inside another, each holding a descriptor; a run's tree is about 5 deep.
MAX_DEPTH = 64


class NotFound(FileNotFoundError):
    """Nothing readable there: missing, or not a regular file (or directory) reached without a symlink."""


class Refused(Exception):
    """A write met something it will not follow or replace (a symlink, a FIFO, a directory for a file)."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
#: None until the first open tells: True where openat2 answers, False where the kernel lacks it.
_openat2_works: Optional[bool] = None


def openat2_in_use() -> Optional[bool]:
    """Whether opens go through openat2 (True), the walk (False), or no open was made yet (None)."""
    return _openat2_works


def _openat2(dirfd: int, relative: str, flags: int, mode: int) -> int:
    how = _OpenHow(flags, mode, _RESOLVE)
    fd = _libc.syscall(ctypes.c_long(OPENAT2_SYSCALL), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(relative)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), relative)
    return fd


def _walk_open(dirfd: int, parts: List[str], flags: int, mode: int) -> int:
    """The fallback: each directory from the one before, none of them a symlink, then the last part."""
    current = dirfd
    try:
        for part in parts[:-1]:
            # O_DIRECTORY refuses a symlink, O_NOFOLLOW keeps the kernel from resolving it first.
            following = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            if current != dirfd:
                os.close(current)
            current = following
        return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=current)
    finally:
        if current != dirfd:
            os.close(current)


def plain_parts(relative: str) -> List[str]:
    """``relative`` as its parts; ValueError for an absolute path, a '..', an empty part or a NUL (the API refuses
    such a path from a request before it gets here: layout.relative_parts)."""
    parts = relative.split("/")
    if relative.startswith("/") or "\x00" in relative or any(part in ("", "..") for part in parts):
        raise ValueError(f"not a plain relative path: {relative!r}")
    return [part for part in parts if part != "."] or ["."]


def open_beneath(dirfd: int, relative: str, flags: int, mode: int = 0) -> int:
    """A descriptor for ``relative`` beneath ``dirfd``, reached without a symlink; OSError else."""
    global _openat2_works
    parts = plain_parts(relative)
    if _openat2_works is not False:
        try:
            fd = _openat2(dirfd, "/".join(parts), flags | os.O_NOFOLLOW, mode)
        except OSError as exc:
            # ENOSYS: no openat2 here.  EPERM on a first call: a seccomp filter of an older container runtime.
            if _openat2_works or exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
            _openat2_works = False
        else:
            _openat2_works = True
            return fd
    return _walk_open(dirfd, parts, flags, mode)


class Entry(NamedTuple):
    #: Relative to the tree.
    path: str
    status: os.stat_result


def listing(dirfd: int) -> List[Tuple[str, os.stat_result]]:
    """A directory's entries with their own status (lstat), sorted; an entry gone meanwhile is skipped."""
    found = []
    for name in sorted(os.listdir(dirfd)):
        try:
            found.append((name, os.stat(name, dir_fd=dirfd, follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return found


def enter(dirfd: int, name: str) -> Optional[int]:
    """The subdirectory ``name`` of ``dirfd``, or None if it is no longer a directory (a symlink or a FIFO now)."""
    try:
        return os.open(name, DIR, dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in NOT_PLAIN:
            return None
        raise


def visit(dirfd: int, prefix: str = "", depth: int = 0) -> Iterator[Tuple[int, str, Entry]]:
    """(its directory's descriptor, its name, the entry) for every entry beneath ``dirfd``, parents first;
    each directory is entered from its parent's descriptor with O_DIRECTORY | O_NOFOLLOW, so one swapped for
    a symlink or a FIFO is not entered.  Each level holds a descriptor, hence the bound on depth."""
    if depth > MAX_DEPTH:
        raise Refused(f"{prefix or 'your directory'} nests deeper than {MAX_DEPTH} directories")
    for name, status in listing(dirfd):
        yield dirfd, name, Entry(prefix + name, status)
        if stat.S_ISDIR(status.st_mode):
            child = enter(dirfd, name)
            if child is None:
                continue
            try:
                yield from visit(child, f"{prefix}{name}/", depth + 1)
            finally:
                os.close(child)


def walk(dirfd: int) -> Iterator[Entry]:
    """Every entry beneath ``dirfd`` (files, directories, symlinks themselves), never entering a symlink."""
    return (entry for _, _, entry in visit(dirfd))


def remove_tree(parent, name: str) -> None:
    """Delete the directory ``parent/name`` and everything in it, by names within directory descriptors:
    a symlink is removed itself, never followed, wherever it points.

    Not shutil.rmtree: it opens each directory without O_DIRECTORY, so a directory swapped for a FIFO at the
    wrong moment would hold it forever, and it has no bound on the descriptors a deep tree holds open.
    """
    parent_fd = os.open(str(parent), DIR)
    try:
        top = enter(parent_fd, name)
        if top is None:
            return
        try:
            # A subtree deeper than the bound is moved up to the top and emptied on a later round.
            while _empty(top, top, 0):
                pass
        finally:
            os.close(top)
        os.rmdir(name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _empty(dirfd: int, top: int, depth: int) -> bool:
    """Empty ``dirfd``; True if a subtree too deep was moved up to ``top`` and is left for another round."""
    moved = False
    for name, status in listing(dirfd):
        if stat.S_ISDIR(status.st_mode):
            if depth >= MAX_DEPTH:
                os.rename(name, f".deep-{secrets.token_hex(8)}", src_dir_fd=dirfd, dst_dir_fd=top)
                moved = True
                continue
            child = enter(dirfd, name)
            if child is not None:
                try:
                    moved = _empty(child, top, depth + 1) or moved
                finally:
                    os.close(child)
                os.rmdir(name, dir_fd=dirfd)
                continue
        try:
            os.unlink(name, dir_fd=dirfd)  # a symlink, a FIFO, a file: the name goes, nothing is followed
        except FileNotFoundError:
            pass
    return moved
