"""The one way the service touches a tenant's files: beneath the tenant directory's descriptor, never
through a symlink.

Whatever a tenant's job can write is an attacker's: it runs as the tenant's uid in the tenant's directory,
and can swap any file or directory there for a symlink at any moment, between a check and a use.  So a
path is never checked by name and then opened again by name.  The service opens the tenant's directory
once (``Tree``) and reaches everything beneath it from that descriptor, with openat2's RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW walk where the kernel lacks it (beneath.py).

What is read is then read, hashed and streamed from the descriptor that was opened, so a swap after the
open changes nothing.  Writes are made the same way: ``mkdirat`` and ``openat(O_CREAT | O_EXCL |
O_NOFOLLOW)`` beneath the directory's descriptor, ``renameat``/``unlinkat`` by a plain name within it,
``fchown`` on what was opened.  A symlink, a FIFO, a socket or a device where a file or a directory is
expected is never followed nor opened for real: a read finds nothing (``NotFound``), a write is refused
(``Refused``) with the path relative to the tenant's directory, never a host path.
"""
import errno
import os
import secrets
import stat
from typing import List, NamedTuple, Optional, Set, Tuple

from dstrain.service.beneath import (
    BASE,
    DIR,
    MAX_DEPTH,
    NOT_PLAIN,
    Entry,
    NotFound,
    Refused,
    listing,
    open_beneath,
    openat2_in_use,
    plain_parts,
    remove_tree,
    visit,
    walk,
)

__all__ = ["Content", "Entry", "MAX_DEPTH", "NewFile", "NotFound", "Refused", "Tree", "give", "openat2_in_use",
           "remove_tree", "walk"]


class Content(NamedTuple):
    data: bytes
    status: os.stat_result


class Tree:
    """A tenant's directory, opened once; every path given to it is relative to it.

    The directory itself is reached by name: it lies in the service's own ``tenants/``, which no job can
    write, and is opened with ``O_NOFOLLOW``.
    """

    def __init__(self, path):
        try:
            self.fd = os.open(str(path), DIR)
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
            fd = open_beneath(self.fd, relative, os.O_RDONLY | BASE)
        except OSError as exc:
            if exc.errno in NOT_PLAIN or exc.errno == errno.EACCES:
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
            return open_beneath(self.fd, relative, DIR)
        except OSError as exc:
            if exc.errno in NOT_PLAIN:
                raise NotFound(relative) from None
            raise

    def entries(self, relative: str) -> List[Entry]:
        """The directory's entries, each with its own status (a symlink's own, never its target's)."""
        fd = self.open_dir(relative)
        try:
            return [Entry(name, status) for name, status in listing(fd)]
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
            for part in plain_parts(relative):
                if part == ".":
                    continue
                try:
                    os.mkdir(part, mode, dir_fd=current)
                    made = True
                except FileExistsError:
                    made = False
                try:
                    following = os.open(part, DIR, dir_fd=current)
                except OSError as exc:
                    if exc.errno in NOT_PLAIN:
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
        parts = plain_parts(relative)
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
            except (FileNotFoundError, IsADirectoryError):  # gone, or swapped for a directory, meanwhile
                raise NotFound(relative) from None
        finally:
            os.close(fd)

    def chown_all(self, owner: Tuple[int, int]) -> int:
        """Give everything beneath the tree (and the tree) to ``owner``, symlinks themselves and not what they
        name; a file with other hard links is left alone (its other name may lie outside).  How many kept."""
        kept = 0
        os.fchown(self.fd, *owner)
        for directory, name, entry in visit(self.fd):
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
