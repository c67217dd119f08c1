"""Getting a source archive into ``sources/``: by hand, over HTTP, or from the Mozilla Data Collective.

An archive is used only once it verifies: its sha256 matches when one is pinned, and without one it must be
what its name says (not an HTML page) and whole, read to its end (sniff.py).  The verification is remembered
with the file's size and mtime, so a 20 GB archive is read once, not on every rerun, and again as soon as
either differs.
One process at a time gets a given file (pipeline/locks.py): a second one waits, then finds it verified.
An archive found damaged later, while it is read, is marked so: the next run fetches it anew.
"""
import contextlib
import contextvars
import errno
import hashlib
import logging
import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import requests
from tqdm import tqdm

from dstrain.pipeline import locks
from dstrain.pipeline.atomic import read_json, remove_leftovers, write_json
from dstrain.pipeline.digests import hash_file
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.paths import for_the_user, partial, partial_validator, verified_record
from dstrain.pipeline.redaction import redact, redact_url
from dstrain.pipeline.sources import ranges, sniff
from dstrain.pipeline.sources.archive import ArchiveTooLarge

log = logging.getLogger("dstrain")
ATTEMPTS = 5
#: Set by ``again()``: fetch anew what is already verified (``--force download``).
_again: contextvars.ContextVar = contextvars.ContextVar("dstrain_fetch_again", default=False)
#: Connection errors no retry can mend: without a network or a server, waiting only delays the message.
_HOPELESS = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH)


class SourceError(DstrainError):
    """A source could not be obtained or did not verify; ``place`` is where a copy got by hand goes."""

    def __init__(self, message: str, place: Optional[Path] = None):
        super().__init__(message)
        self.place = place

    @property
    def line(self) -> str:
        """The cause in one line, with the absolute path a copy got by hand goes to."""
        first = str(self).split("\n")[0]
        return first if self.place is None else f"{first} -> place it at {for_the_user(self.place.absolute())}"


@contextlib.contextmanager
def again():
    """Within this block a source is fetched anew even when a verified copy is in place, and one that has no
    address to be fetched from is hashed again: what ``--force download`` asks for."""
    token = _again.set(True)
    try:
        yield
    finally:
        _again.reset(token)


def _identity(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _record(archive: Path) -> Optional[dict]:
    """The verification record, if it is of the file there now (same size and mtime)."""
    record = read_json(verified_record(archive))
    if record and archive.exists() and {k: record.get(k) for k in ("size", "mtime_ns")} == _identity(archive):
        return record
    return None


def changed_since_verified(archive: Path) -> bool:
    """Whether ``archive`` is in place with a size or mtime other than those it was verified with."""
    return archive.exists() and verified_record(archive).exists() and _record(archive) is None


def verified_sha256(archive: Path) -> Optional[str]:
    """The remembered sha256 if the file is unchanged since it was verified, and not found damaged since."""
    record = _record(archive)
    return record.get("sha256") if record and not record.get("damaged") else None


def mark_damaged(archive: Path, reason: str) -> None:
    """Remember that ``archive`` failed to read: it is no longer verified, and the next run fetches it anew."""
    with _holding(archive):
        record = _record(archive)
        if record:
            write_json(verified_record(archive), dict(record, damaged=reason))


def _remember(archive: Path, sha256: str, origin: str) -> None:
    write_json(verified_record(archive), dict(_identity(archive), sha256=sha256, origin=redact(origin)))


def _holding(archive: Path):
    return locks.hold(archive, f"source {archive}")


def _check(actual: str, expected: Optional[str], path: Path, archive: Path, origin: str) -> None:
    """Move a file that fails verification out of the way, where nothing will pick it up."""
    if expected and actual.lower() != expected.lower():
        bad = archive.with_name(archive.name + ".sha256-mismatch")
        os.replace(str(path), str(bad))
        raise SourceError(
            f"{archive.name} has sha256 {actual} but {expected} was expected; it was not used and was moved to {bad}. "
            f"Check the configured sha256, or the file's origin ({redact(origin)})."
        )


def adopt(archive: Path, sha256: Optional[str], origin: str) -> str:
    """Verify an archive already in place (placed by hand, or by another client) once."""
    with _holding(archive):
        return _adopt(archive, sha256, origin)


def _adopt(archive: Path, sha256: Optional[str], origin: str, rehash: bool = False) -> str:
    known = None if rehash else verified_sha256(archive)
    if known and (not sha256 or known.lower() == sha256.lower()):
        return known
    if sha256:
        actual = hash_file(archive).hexdigest()
        _check(actual, sha256, archive, archive, origin)
    else:  # hashed in the same pass that reads it to its end
        verdict = sniff.check(archive, hashing=True)
        actual = verdict.sha256
        if verdict.damaged:
            # Remembered, so the next run says so at once instead of reading it all again.
            write_json(verified_record(archive), dict(_identity(archive), sha256=actual, origin=redact(origin),
                                                     damaged=verdict.problem))
            raise _Damaged(archive, verdict.problem)
        if verdict.problem:
            raise SourceError(f"{archive} was not used: {verdict.problem}. Delete it, then put a good copy at that "
                              f"path: rm {shlex.quote(str(archive.absolute()))}")
        log.warning("%s: no sha256 configured, recorded %s; pin it in your config to detect changes",
                    archive.name, actual)
    _remember(archive, actual, origin)
    return actual


class _Damaged(SourceError):
    """A file in place, read to its end, is cut short or corrupt."""

    def __init__(self, archive: Path, reason: str):
        super().__init__(f"{archive.absolute()} is truncated or corrupt ({reason}), and this source has no address "
                         "to download it from: delete it, and put a good copy at that path.\n"
                         f"    rm {shlex.quote(str(archive.absolute()))}", place=archive)
        self.reason = reason


def fetch(url: str, archive: Path, sha256: Optional[str], retry_wait: float = 1.0) -> str:
    """Download ``url`` to ``archive``, holding its lock; see ``_fetch``."""
    with _holding(archive):
        return _fetch(url, archive, sha256, retry_wait)


def _fetch(url: str, archive: Path, sha256: Optional[str], retry_wait: float = 1.0, fresh: bool = False) -> str:
    """Download with HTTP Range resume, retries with backoff, streaming sha256, ``.part`` then rename.

    A partial file is continued only when the server can prove it is the same file (If-Range, and the same
    validator on its answer), or when a pinned sha256 will catch a splice of two versions; only from a 206
    whose Content-Range starts where it was asked to; and only once the bytes before the partial file's end,
    asked for again, are the same (ranges.py).  A file that then does not verify is fetched once more from
    the first byte.  The bytes are stored as the server holds them (no Content-Encoding undone).  Timeouts,
    dropped connections and 5xx answers are retried; a host that does not resolve or refuses the connection
    is not.
    """
    part, shown = partial(archive), redact_url(url)
    archive.parent.mkdir(parents=True, exist_ok=True)
    validator = (read_json(partial_validator(archive)) or {}).get(shown)
    if part.exists() and (fresh or not (validator or sha256)):
        part.unlink()
    offset = part.stat().st_size if part.exists() else 0
    hasher = hash_file(part, label="resuming") if offset else hashlib.sha256()
    resumed = False
    session = requests.Session()
    for attempt in range(ATTEMPTS):
        overlap = min(ranges.OVERLAP, offset)
        # identity: a server may still compress on the way; _body stores what it sends as it is.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset - overlap}-"
            if validator:
                headers["If-Range"] = validator
        total = None
        try:
            with session.get(url, headers=headers, stream=True, timeout=(15, 120)) as resp:
                if resp.status_code == 416 and offset:
                    raise ranges.Restart(f"the partial file ({offset} bytes) is not a piece of the file served")
                if 400 <= resp.status_code < 500:
                    raise SourceError(f"{shown} answered HTTP {resp.status_code} for {archive.name}")
                resp.raise_for_status()
                body = ranges.body(resp)
                if resp.status_code == 206:
                    first, total = ranges.content_range(resp)
                    if first != offset - overlap:  # a server that ignores the range, or sends another piece
                        raise ranges.Restart(f"the server sent bytes from {first} where {offset - overlap} were asked "
                                             "for")
                    if total is not None and total < offset:
                        raise ranges.Restart(f"the partial file ({offset} bytes) is longer than the file served "
                                             f"({total} bytes)")
                    if validator and ranges.validator(resp) not in (None, validator):  # If-Range ignored
                        raise ranges.Restart("the file on the server changed since the partial file was downloaded "
                                             f"({ranges.validator(resp)}, not {validator})")
                    body = ranges.after_overlap(body, part, offset, overlap)
                    resumed = True
                else:  # a whole file: Range ignored, or the file changed (If-Range)
                    offset, hasher = 0, hashlib.sha256()
                    validator = ranges.validator(resp)
                    write_json(partial_validator(archive), {shown: validator})
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length is not None else None
                with part.open("ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc="download " + archive.name
                ) as bar:
                    for block in body:
                        out.write(block)
                        hasher.update(block)
                        offset += len(block)
                        bar.update(len(block))
            if total is None or offset >= total:
                break
            reason = f"connection closed at {offset} of {total} bytes"
        except ranges.Restart as restart:
            reason = f"{restart}; starting over from the first byte"
            part.unlink(missing_ok=True)
            partial_validator(archive).unlink(missing_ok=True)
            offset, hasher, validator = 0, hashlib.sha256(), None
        except requests.RequestException as exc:
            reason = _plainly(exc)
            if _hopeless(exc):
                raise SourceError(f"could not download {shown}: {reason}") from None
        if attempt == ATTEMPTS - 1:
            kept = f"; the partial file {part} is kept and the next run resumes it" if offset else ""
            raise SourceError(f"could not download {shown} after {ATTEMPTS} attempts: {reason}{kept}")
        wait = retry_wait * 2 ** attempt
        log.warning("download of %s interrupted (%s); resuming in %.0fs", archive.name, reason, wait)
        time.sleep(wait)
    if part.stat().st_size != offset or (total is not None and offset != total):
        part.unlink()  # written to by something else, or longer than the file: never call it verified
        raise SourceError(f"{archive.name}: the downloaded file is not the {total or offset} bytes received; "
                          "it was deleted, run again to download it anew")
    actual = hasher.hexdigest()
    wrong = _whole(part, archive) if not sha256 else None  # unpinned: read to its end, to prove it whole
    if resumed and not fresh and (wrong.problem if wrong else actual.lower() != sha256.lower()):
        # A resume the server answered wrongly after all: once more, from the first byte, and only once, so
        # a server that lies on every resume cannot keep a download going round for ever.
        log.warning("%s: the resumed download does not verify (%s); downloading it again from the first byte",
                    archive.name, wrong.problem if wrong else f"sha256 {actual}")
        return _fetch(url, archive, sha256, retry_wait, fresh=True)
    _check(actual, sha256, part, archive, url)
    if wrong and wrong.problem:
        kept = archive.with_name(archive.name + ".not-used")
        os.replace(str(part), str(kept))
        if wrong.damaged:
            raise SourceError(f"what {shown} sent was not used: {wrong.problem}. It is kept as {kept}. Run the same "
                              "command again to download it anew; if it is damaged again, the server's copy is: "
                              "check the address (url) for this source.")
        raise SourceError(f"what {shown} sent was not used: {wrong.problem}. It is kept as {kept} for you to look "
                          "at; check the address (url) for this source, then run again.")
    os.replace(str(part), str(archive))
    partial_validator(archive).unlink(missing_ok=True)
    _remember(archive, actual, url)
    return actual


def _whole(part: Path, archive: Path) -> sniff.Verdict:
    """``sniff.check`` of a finished download.  One that expands past the run's bound is put in place, not
    verified, and the error raised: with a larger bound, the next run reads it again, without downloading it."""
    try:
        return sniff.check(part, name=archive.name)
    except ArchiveTooLarge:
        os.replace(str(part), str(archive))
        partial_validator(archive).unlink(missing_ok=True)
        raise


def _fetch_mdc(dataset_id: str, archive: Path, sha256: Optional[str]) -> str:
    """Download from the Mozilla Data Collective; the API key is read from ``MDC_API_KEY`` by its client."""
    if not os.environ.get("MDC_API_KEY"):
        raise SourceError(
            f"downloading {archive.name} from the Mozilla Data Collective needs an API key: set MDC_API_KEY "
            "(from your account's API page) in the environment"
        )
    try:
        from datacollective import download_dataset
    except ImportError:
        raise SourceError(
            "the Mozilla Data Collective client is not installed: pip install 'dstrain[mdc]' "
            f"(it needs Python >= 3.11.4), or download {archive.name} yourself into {archive.parent}"
        ) from None
    staging = archive.parent / ".mdc"
    try:
        got = Path(download_dataset(dataset_id, download_directory=str(staging), show_progress=True))
    except Exception as exc:  # the client raises many types; the message is what the user needs
        # A server's error may echo the request, its key included.
        raise SourceError(f"Mozilla Data Collective download of {dataset_id} failed: {redact(str(exc))}") from None
    os.replace(str(got), str(archive))
    return _adopt(archive, sha256, "mdc:" + dataset_id, rehash=True)


def _hopeless(exc: requests.RequestException) -> bool:
    """Whether ``exc`` is a name that does not resolve or a connection refused, somewhere in its causes."""
    seen, todo = set(), [exc]
    while todo:
        cause = todo.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror) or (isinstance(cause, OSError) and cause.errno in _HOPELESS):
            return True
        todo += [getattr(cause, "reason", None), cause.__cause__, cause.__context__]
        todo += [arg for arg in getattr(cause, "args", ()) if isinstance(arg, BaseException)]
    return False


def _plainly(exc: requests.RequestException) -> str:
    """The cause a user can act on, without the layers of urllib3's wrapping around it."""
    text = str(exc)
    if isinstance(exc, requests.ConnectionError):
        found = re.search(r"Failed to resolve '([^']+)'", text)
        if found:
            return f"cannot resolve {found.group(1)}: no network, or no DNS, from here"
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        if found:
            return f"cannot connect: {found.group(1)}"
    return redact(text)


def obtain(archive: Path, sha256: Optional[str], url: Optional[str], mdc_dataset_id: Optional[str],
           how_to_get: str) -> str:
    """Return the verified sha256 of ``archive``, fetching it first if it is not in place (or is damaged).

    Holds the archive's lock throughout, so a second process waits and then finds it verified.
    """
    with _holding(archive):
        # Of a process killed while writing this archive's records: no one writes them while we hold the lock.
        remove_leftovers(archive.parent, prefix=verified_record(archive).name)
        remove_leftovers(archive.parent, prefix=partial_validator(archive).name)
        record = _record(archive)
        damaged = record.get("damaged") if record else None
        anew = _again.get() or bool(damaged)
        if archive.exists() and not (anew and (url or mdc_dataset_id)):
            if damaged:
                raise _Damaged(archive, damaged)
            try:
                return _adopt(archive, sha256, "placed by hand", rehash=anew)
            except _Damaged as exc:  # read to its end, it is not whole
                if not (url or mdc_dataset_id):
                    raise
                damaged = exc.reason
        if archive.exists():
            log.info("%s: downloading it anew (%s)", archive.name,
                     f"the copy here is damaged: {damaged}" if damaged else "--force download")
        if url:
            try:
                return _fetch(url, archive, sha256, fresh=anew)
            except SourceError as exc:  # offline, a proxy, a moved file: the user can still fetch it some other way
                raise SourceError(f"{exc}\n  {how_to_get} A copy you get yourself goes at exactly this path:\n"
                                  f"    {for_the_user(archive.absolute())}", place=archive) from None
        if mdc_dataset_id:
            return _fetch_mdc(mdc_dataset_id, archive, sha256)
        raise SourceError(
            f"{archive.name} is not in {archive.parent.absolute()}.\n  {how_to_get} Place it at exactly this path:\n"
            f"    {for_the_user(archive.absolute())}", place=archive)


def obtain_each(getters: Mapping[str, Callable[[], str]]) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Run every getter, so one unreachable source neither holds up nor hides the others.

    Returns (name -> sha256, name -> why it failed); each failure is one line as it happens, and the caller
    tells the whole story once, at the end.
    """
    shas, failures = {}, {}
    for name, get in getters.items():
        try:
            shas[name] = get()
        except SourceError as exc:
            log.error("%s: %s", name, exc.line)
            failures[name] = str(exc)
    return shas, failures
