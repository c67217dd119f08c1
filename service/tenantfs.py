"""The one way the service touches a tenant's files: beneath the tenant directory's descriptor, never
through a symlink.

Whatever a tenant's job can write is an attacker's: it runs as the tenant's uid in the tenant's directory,
and can swap any file or directory there for a symlink at any moment, between a check and a use.  So a
path is never checked by name and then opened again by name.  The service opens the tenant's directory
once (``Tree``) and reaches everything beneath it from that descriptor:

- with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` (Linux 5.6 and later),
  where the kernel itself refuses a symlink, a ``..`` or a magic link on the way;
- where openat2 is missing (an older kernel, or a seccomp filter answering ENOSYS), one component at a
  time: each directory opened with ``O_DIRECTORY | O_NOFOLLOW`` from the one before, the last component
  with ``O_NOFOLLOW``.

What is read is then read, hashed and streamed from the descriptor that was opened, so a swap after the
open changes nothing.  Writes are made the same way: ``mkdirat`` and ``openat(O_CREAT | O_EXCL |
O_NOFOLLOW)`` beneath the directory's descriptor, ``renameat``/``unlinkat`` by a plain name within it,
``fchown`` on what was opened.  A symlink, a FIFO, a socket or a device where a file or a directory is
expected is never followed nor opened for real: a read finds nothing (``NotFound``), a write is refused
(``Refused``) with the path relative to the tenant's directory, never a host path.
"""
import ctypes
import errno
import os
import secrets
import stat
from typing import Iterator, List, NamedTuple, Optional, Set, Tuple

#: openat2(2): the same number in every architecture's table that has it (x86-64, arm64, ...).
OPENAT2_SYSCALL = 437
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS

#: Flags of every open here: no descriptor leaks into a child; a FIFO does not block the open, a terminal is
#: never adopted.
_BASE = os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _BASE
#: Errors that mean "not a plain file or directory reached without a link": a symlink (ELOOP), a '..' or a
#: mount out of the tree (EXDEV), a file where a directory was needed (ENOTDIR), a socket (ENXIO).
_NOT_PLAIN = {errno.ENOENT, errno.ELOOP, errno.EXDEV, errno.ENOTDIR, errno.ENXIO, errno.EISDIR}
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


def _parts(relative: str) -> List[str]:
    parts = relative.split("/")
    if relative.startswith("/") or "\x00" in relative or any(part in ("", "..") for part in parts):
        raise ValueError(f"not a plain relative path: {relative!r}")
    return [part for part in parts if part != "."] or ["."]


def open_beneath(dirfd: int, relative: str, flags: int, mode: int = 0) -> int:
    """A descriptor for ``relative`` beneath ``dirfd``, reached without a symlink; OSError else."""
    global _openat2_works
    parts = _parts(relative)
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


class Content(NamedTuple):
    data: bytes
    status: os.stat_result


class Entry(NamedTuple):
    #: Relative to the tree.
    path: str
    status: os.stat_result


class Tree:
    """A tenant's directory, opened once; every path given to it is relative to it.

    The directory itself is reached by name: it lies in the service's own ``tenants/``, which no job can
    write, and is opened with ``O_NOFOLLOW``.
    """

    def __init__(self, path):
        try:
            self.fd = os.open(str(path), _DIR)
        except OSError as exc:
            raise NotFound(f"no tenant directory ({exc.strerror})") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------------------

    def open_file(self, relative: str) -> Tuple[int, os.stat_result]:
        """A regular file, opened for reading, with its status; NotFound for anything else."""
        try:
            fd = open_beneath(self.fd, relative, os.O_RDONLY | _BASE)
        except OSError as exc:
            if exc.errno in _NOT_PLAIN or exc.errno == errno.EACCES:
                raise NotFound(relative) from None
            raise
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            os.close(fd)
            raise NotFound(relative)
        return fd, status

    def read(self, relative: str, offset: int = 0, limit: Optional[int] = None) -> Optional[Content]:
        """Up to ``limit`` bytes from ``offset`` of a regular file (to its end by default; a negative offset
        counts from the end); None if there is none.

        The one read of a run's records and logs (runs.py): progress, failure causes and the log stream.
        """
        try:
            fd, status = self.open_file(relative)
        except NotFound:
            return None
        try:
            start = max(status.st_size + offset, 0) if offset < 0 else offset
            wanted = status.st_size - start if limit is None else limit
            return Content(read_at(fd, start, max(wanted, 0)), status)
        finally:
            os.close(fd)

    def open_dir(self, relative: str) -> int:
        """A directory's descriptor (the caller closes it); NotFound if it is not a directory reached plainly."""
        try:
            return open_beneath(self.fd, relative, _DIR)
        except OSError as exc:
            if exc.errno in _NOT_PLAIN:
                raise NotFound(relative) from None
            raise

    def entries(self, relative: str) -> List[Entry]:
        """The directory's entries, each with its own status (a symlink's own, never its target's)."""
        fd = self.open_dir(relative)
        try:
            return [Entry(name, status) for name, status in _listing(fd)]
        finally:
            os.close(fd)

    def files(self, relative: str) -> List[Entry]:
        """Every regular file beneath the directory ``relative``, none reached through a symlink."""
        try:
            fd = self.open_dir(relative)
        except NotFound:
            return []
        prefix = "" if relative in (".", "") else relative.rstrip("/") + "/"
        try:
            return [Entry(prefix + path, status) for path, status in walk(fd)
                    if stat.S_ISREG(status.st_mode)]
        finally:
            os.close(fd)

    def usage(self) -> int:
        """Bytes on disk beneath the tree (st_blocks), a file with several hard links counted once."""
        seen: Set[Tuple[int, int]] = set()
        total = os.fstat(self.fd).st_blocks * 512
        for _, status in walk(self.fd):
            if status.st_nlink > 1 and not stat.S_ISDIR(status.st_mode):
                if (status.st_dev, status.st_ino) in seen:
                    continue
                seen.add((status.st_dev, status.st_ino))
            total += status.st_blocks * 512
        return total

    # -- writes ----------------------------------------------------------------------------------------

    def make_dirs(self, relative: str, owner: Optional[Tuple[int, int]], mode: int = 0o700) -> int:
        """The directory ``relative``, each missing part made with ``mode``, each part given to ``owner``; its
        descriptor (the caller closes it).  Refused where a part is a symlink or not a directory."""
        current = os.dup(self.fd)
        try:
            for part in _parts(relative):
                if part == ".":
                    continue
                try:
                    os.mkdir(part, mode, dir_fd=current)
                    made = True
                except FileExistsError:
                    made = False
                try:
                    following = os.open(part, _DIR, dir_fd=current)
                except OSError as exc:
                    if exc.errno in _NOT_PLAIN:
                        raise Refused(f"{relative}: {part!r} is not a plain directory (a symlink?), and the "
                                      "service follows no link in your directory") from None
                    raise
                os.close(current)
                current = following
                if made:
                    os.fchmod(current, mode)  # the mode asked, whatever the umask
                give(current, owner)
            return current
        except BaseException:
            os.close(current)
            raise

    def remove_file(self, relative: str) -> None:
        """Delete the regular file (or the symlink itself) at ``relative``; NotFound if there is none."""
        parts = _parts(relative)
        directory = "/".join(parts[:-1]) or "."
        fd = self.open_dir(directory)
        try:
            try:
                status = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            except OSError:
                raise NotFound(relative) from None
            if not stat.S_ISREG(status.st_mode):
                raise NotFound(relative)
            try:
                os.unlink(parts[-1], dir_fd=fd)  # unlinkat: a name in this directory, never followed
            except FileNotFoundError:
                raise NotFound(relative) from None
        finally:
            os.close(fd)

    def chown_all(self, owner: Tuple[int, int]) -> int:
        """Give everything beneath the tree (and the tree) to ``owner``, symlinks themselves and not what they
        name; a file with other hard links is left alone (its other name may lie outside).  How many kept."""
        kept = 0
        os.fchown(self.fd, *owner)
        for directory, name, entry in _visit(self.fd):
            if entry.status.st_nlink > 1 and not stat.S_ISDIR(entry.status.st_mode):
                kept += 1
                continue
            os.chown(name, *owner, dir_fd=directory, follow_symlinks=False)
        return kept


class NewFile:
    """A file written under a hidden temporary name in a directory's descriptor, renamed to its name when whole.

    Created with ``O_EXCL | O_NOFOLLOW``: the temporary name is new, so nothing there is opened or followed.
    ``publish()`` gives it to ``owner`` and renames it (renameat within the same descriptor): a symlink
    at the final name is replaced, not followed; a directory there is refused.  Closing without
    publishing removes it.
    """

    def __init__(self, dirfd: int, name: str, owner: Optional[Tuple[int, int]], prefix: str = ".upload-",
                 mode: int = 0o644):
        self.dirfd, self.name, self.owner = dirfd, name, owner
        self.temp = f"{prefix}{secrets.token_hex(8)}"
        self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                          dir_fd=dirfd)
        self.size = 0
        self.published = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def publish(self) -> None:
        give(self.fd, self.owner)
        os.close(self.fd)
        self.fd = -1
        try:
            os.replace(self.temp, self.name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)
        except IsADirectoryError:
            raise Refused(f"{self.name!r} is a directory in your directory; nothing was replaced") from None
        self.published = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.published:
            try:
                os.unlink(self.temp, dir_fd=self.dirfd)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "NewFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def give(fd: int, owner: Optional[Tuple[int, int]]) -> None:
    """fchown the opened file or directory to ``owner`` (uid, gid); only root can, and only root needs to."""
    if owner is not None and os.geteuid() == 0:
        os.fchown(fd, *owner)


def read_at(fd: int, offset: int, length: int, block: int = 1 << 20) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, min(block, length), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def _listing(dirfd: int) -> List[Tuple[str, os.stat_result]]:
    """A directory's entries with their own status (lstat), sorted; an entry gone meanwhile is skipped."""
    found = []
    for name in sorted(os.listdir(dirfd)):
        try:
            found.append((name, os.stat(name, dir_fd=dirfd, follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return found


def _enter(dirfd: int, name: str) -> Optional[int]:
    """The subdirectory ``name`` of ``dirfd``, or None if it is no longer a directory (a symlink or a FIFO now)."""
    try:
        return os.open(name, _DIR, dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in _NOT_PLAIN:
            return None
        raise


def _visit(dirfd: int, prefix: str = "", depth: int = 0) -> Iterator[Tuple[int, str, Entry]]:
    """(its directory's descriptor, its name, the entry) for every entry beneath ``dirfd``, parents first;
    each directory is entered from its parent's descriptor with O_DIRECTORY | O_NOFOLLOW, so one swapped for
    a symlink or a FIFO is not entered.  Each level holds a descriptor, hence the bound on depth."""
    if depth > MAX_DEPTH:
        raise Refused(f"{prefix or 'your directory'} nests deeper than {MAX_DEPTH} directories")
    for name, status in _listing(dirfd):
        yield dirfd, name, Entry(prefix + name, status)
        if stat.S_ISDIR(status.st_mode):
            child = _enter(dirfd, name)
            if child is None:
                continue
            try:
                yield from _visit(child, f"{prefix}{name}/", depth + 1)
            finally:
                os.close(child)


def walk(dirfd: int) -> Iterator[Entry]:
    """Every entry beneath ``dirfd`` (files, directories, symlinks themselves), never entering a symlink."""
    return (entry for _, _, entry in _visit(dirfd))


def remove_tree(parent, name: str) -> None:
    """Delete the directory ``parent/name`` and everything in it, by names within directory descriptors:
    a symlink is removed itself, never followed, wherever it points.

    Not shutil.rmtree: it opens each directory without O_DIRECTORY, so a directory swapped for a FIFO at the
    wrong moment would hold it forever, and it has no bound on the descriptors a deep tree holds open.
    """
    parent_fd = os.open(str(parent), _DIR)
    try:
        top = _enter(parent_fd, name)
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
    for name, status in _listing(dirfd):
        if stat.S_ISDIR(status.st_mode):
            if depth >= MAX_DEPTH:
                os.rename(name, f".deep-{secrets.token_hex(8)}", src_dir_fd=dirfd, dst_dir_fd=top)
                moved = True
                continue
            child = _enter(dirfd, name)
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
