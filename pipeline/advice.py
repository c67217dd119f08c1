"""What to tell a user whose run the operating system stopped: a file they cannot write, a read-only or full
disk, no more processes.  One paragraph each, naming the files and giving the one command that fixes this
case, so the CLI never has to show a traceback for them.
"""
import errno
import os
import re
import resource
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

from dstrain.pipeline import paths
from dstrain.pipeline.errors import ConfigError, DstrainError

#: Entries of the data root looked at, at most, to find those owned by someone else (a data root holds a file
#: per clip: the search goes breadth first, so the top folders that a `sudo dstrain` made come first).
SCAN_LIMIT = 200_000
#: Owned-by-someone-else paths named one by one; past this, the data root itself is what to give back.
NAMED = 5
NEVER_SUDO = "Never run dstrain or docker compose with sudo: what it creates as root locks out every later run."
#: What the operating system says of one file's name or place, not of the machine: a name longer than the file
#: system allows, bytes it refuses, a part of the path that is a file.  One clip named so is one rejected row;
#: every other error (no space, a read-only disk, no permission, an I/O error) stops the work.
ONE_NAME = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.ENOTDIR, errno.EISDIR, errno.ELOOP,
                      errno.EEXIST, errno.EFBIG})


def ensure_writable(root: Path) -> None:
    """Create the data root if needed and prove we can write in it; else say why, and what fixes it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=str(root), prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"the data root {paths.for_the_user(root)} is not writable. "
                          + (explain(exc, root, where=root) or str(exc))) from None


def of_one_name(exc: BaseException) -> bool:
    """Whether ``exc``, raised while a file was named, opened or written, is about that file's name alone."""
    if isinstance(exc, OSError):
        return exc.errno in ONE_NAME
    # A NUL in a name, or a character its encoding cannot write.
    return isinstance(exc, UnicodeError) or (isinstance(exc, ValueError) and "null" in str(exc))


def name_refused(exc: BaseException) -> str:
    """Why the file system refused a name, in one line without the path."""
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ([Errno {exc.errno}] on this file system)"
    return str(exc)


def failure_message(exc: BaseException, root: Optional[Path], resume_command: str) -> str:
    """What the CLI prints for a run stopped by ``exc``: a DstrainError's own message, with the paragraph on
    the OS error behind it, if any; a bare OSError explained, with the command that resumes."""
    os_error = first_os_error(exc)
    paragraph = explain(os_error, root) if os_error is not None else None
    if paragraph is None and any(str(e).startswith("can't start new thread") for e in _chain(exc)):
        paragraph = _processes()  # CPython's RuntimeError when the same limit stops a thread
    if isinstance(exc, DstrainError):
        return f"{exc}\n{paragraph}" if paragraph else str(exc)
    return (f"{paragraph or exc}\nEverything finished before it is kept. Once that is fixed, resume with:\n"
            f"    {resume_command}")


def _chain(exc: Optional[BaseException]) -> List[BaseException]:
    """``exc`` and what it was raised from, nearest first."""
    chain: List[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        # `raise ... from None` means the message already says all of it.
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    return chain


def first_os_error(exc: Optional[BaseException]) -> Optional[OSError]:
    """The OSError behind ``exc`` (itself, or what it was raised from), if any."""
    return next((e for e in _chain(exc) if isinstance(e, OSError)), None)


def explain(exc: OSError, root: Optional[Path], where: Optional[Path] = None) -> Optional[str]:
    """One paragraph on ``exc`` for someone using the data root ``root`` (None: a command without one); None
    for an error not covered here.  ``where`` is the path to name, when it is not the one in ``exc`` (a
    temporary file's random name)."""
    where = where or (Path(exc.filename) if exc.filename else Path(root or "."))
    if exc.errno == errno.EROFS:
        return _read_only(where)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _full(where, exc.errno == errno.EDQUOT)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _permission(where, root)
    if exc.errno == errno.EAGAIN and isinstance(exc, BlockingIOError) and exc.filename is None:
        return _processes()
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (f"Too many open files ({exc.strerror}; this shell allows {soft}, `ulimit -n`). Run with fewer "
                "workers (--workers), or raise the limit (`ulimit -n 65536`) in the shell that starts dstrain.")
    return None


def _mount_point(path: Path) -> Path:
    """Where the file system holding ``path`` is mounted: the longest mount point above it in the kernel's
    table, which also knows bind mounts (a read-only volume of a container, of the same disk as its parent)."""
    path = _existing(path).resolve()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as table:
            # The fifth field, with spaces and other odd bytes written as octal escapes (\040).
            points = [Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]))
                      for line in table]
    except OSError:  # pragma: no cover - not Linux
        points = [p for p in (path, *path.parents) if os.path.ismount(str(p))]
    above = [p for p in points if p == path or p in path.parents]
    return max(above, key=lambda p: len(p.parts), default=Path("/"))


def _existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists."""
    path = Path(os.path.abspath(str(path)))
    while not os.path.lexists(str(path)) and path != path.parent:
        path = path.parent
    return path


def _read_only(where: Path) -> str:
    mount = _mount_point(where)
    return (f"{paths.for_the_user(where)} is on a read-only file system (mounted at {mount}). This is not a "
            "question of owners: no chown helps. Mount it read-write (in a container, remove ':ro' from the "
            "data volume), or choose a data root on a writable disk (--data-root, DSTRAIN_DATA_ROOT).")


def _full(where: Path, quota: bool) -> str:
    place = _existing(where)
    usage = shutil.disk_usage(str(place))
    what = "Your disk quota is used up" if quota else "The disk is full"
    return (f"{what}: no room to write {paths.for_the_user(where)} ({_size(usage.free)} free of "
            f"{_size(usage.total)} on the file system mounted at {_mount_point(place)}). Free some space "
            "there, or move the data root to a larger disk (--data-root, DSTRAIN_DATA_ROOT). A large corpus "
            "needs several times its archive's size.")


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.0f} kB"


def _processes() -> str:
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    limit = "no limit" if soft == resource.RLIM_INFINITY else f"at most {soft} for your user, `ulimit -u`"
    return (f"The system refused to start another process ({limit}). Run with fewer workers (--workers 2), "
            "or stop other programs of this user, or raise the limit (`ulimit -u`) in the shell that starts "
            "dstrain.")


def foreign_paths(root: Path, uid: int, limit: int = SCAN_LIMIT) -> Tuple[List[Path], bool]:
    """The top-most paths under ``root`` (itself included) that ``uid`` does not own, breadth first; and
    whether the search stopped at ``limit`` entries before the end."""
    found, queue, seen = [], [Path(root)], 0
    while queue:
        directory = queue.pop(0)
        try:
            stat = directory.lstat()
        except OSError:
            continue
        if stat.st_uid != uid:
            found.append(directory)  # a chown -R of it covers everything below
            continue
        try:
            entries = sorted(os.scandir(str(directory)), key=lambda e: e.name) \
                if directory.is_dir() and not directory.is_symlink() else []
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > limit:
                return found, True
            if entry.is_dir(follow_symlinks=False):
                queue.append(Path(entry.path))
            elif entry.stat(follow_symlinks=False).st_uid != uid:
                found.append(Path(entry.path))
    return found, False


def _permission(where: Path, root: Optional[Path]) -> str:
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        # Root is refused only where owners are not the question: a network file system that maps root to
        # nobody, an immutable file, a security module.
        return (f"{paths.for_the_user(where)} cannot be written even by root: the file system refuses it "
                "(a network share that maps root to nobody, an immutable file, or a security policy). No chown "
                "fixes that here; choose a data root on a local disk (--data-root, DSTRAIN_DATA_ROOT).")
    whole = Path(os.path.abspath(str(where)))
    root = Path(os.path.abspath(str(root))) if root is not None else None
    if root is None or (root != whole and root not in whole.parents):
        return (f"You (uid {uid} gid {gid}) may not use {paths.for_the_user(where)}: it belongs to "
                f"{_owner(_existing(where))}, outside the data root. Check the setting that names it, or its "
                f"permissions (`ls -ld {_quoted(where)}`).")
    if not os.path.lexists(str(root)):
        parent = _existing(root)
        return (f"The data root {paths.for_the_user(root)} does not exist, and you (uid {uid}) cannot create it: "
                f"{parent} belongs to {_owner(parent)}. Create it for your user once:\n"
                f"    sudo install -d -o {uid} -g {gid} {_quoted(root)}\n"
                "then run dstrain as yourself. " + NEVER_SUDO)
    foreign, partial = foreign_paths(root, uid)
    if not foreign:
        return (f"You (uid {uid}) may not write {paths.for_the_user(where)}, yet everything under the data root "
                f"{root}{' that was looked at' if partial else ''} is yours: its permissions (chmod) or an access "
                f"list forbid it. `ls -ld {_quoted(where)}` shows them; `chmod u+rwX` on it gives them back.")
    named = "\n".join(f"    {paths.for_the_user(p)}  ({_owner(p)})" for p in foreign[:NAMED])
    more = len(foreign) - NAMED
    named += f"\n    ... and {more} more" if more > 0 else ""
    if partial:
        named += f"\n    (the first {SCAN_LIMIT} entries were looked at)"
    targets = foreign if len(foreign) <= NAMED and not partial else [root]
    return (f"You (uid {uid} gid {gid}) may not write {paths.for_the_user(where)}: these paths under the data root "
            f"belong to someone else, most likely from an earlier `sudo dstrain`:\n{named}\n"
            "Give them back to your user once, on the host:\n"
            f"    sudo chown -R {uid}:{gid} {' '.join(_quoted(t) for t in targets)}\n"
            "then run dstrain as yourself. " + NEVER_SUDO)


def _owner(path: Path) -> str:
    try:
        stat = path.lstat()
    except OSError:
        return "an unknown owner"
    return f"uid {stat.st_uid} gid {stat.st_gid}"


def _quoted(path: Path) -> str:
    """The name to type: the host's, when the data root is mounted into a container."""
    return shlex.quote(paths.on_host(path) or str(path))
