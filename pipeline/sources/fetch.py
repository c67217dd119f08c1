"""Getting a source archive into ``sources/``: by hand, over HTTP, or from the Mozilla Data Collective.

An archive is used only once its sha256 matches (when one is configured).  The
verification is remembered with the file's size and mtime, so a 20 GB archive
is hashed once, not on every rerun.
"""
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import requests
from tqdm import tqdm

from dstrain.pipeline.atomic import read_json, write_json
from dstrain.pipeline.errors import DstrainError
from dstrain.pipeline.paths import for_the_user, partial, partial_validator, verified_record

log = logging.getLogger("dstrain")
CHUNK = 1 << 20
#: Small network reads: bytes of a read cut short by a dropped connection are lost.
NET_CHUNK = 1 << 16
ATTEMPTS = 5


class SourceError(DstrainError):
    """A source could not be obtained or did not verify."""


def _identity(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def verified_sha256(archive: Path) -> Optional[str]:
    """The remembered sha256 if the file is unchanged since it was verified."""
    record = read_json(verified_record(archive))
    if record and archive.exists() and {k: record.get(k) for k in ("size", "mtime_ns")} == _identity(archive):
        return record.get("sha256")
    return None


def _remember(archive: Path, sha256: str, origin: str) -> None:
    write_json(verified_record(archive), dict(_identity(archive), sha256=sha256, origin=origin))


def hash_file(path: Path, hasher=None, label: str = "verifying"):
    hasher = hasher or hashlib.sha256()
    with path.open("rb") as handle, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"{label} {path.name}", leave=False
    ) as bar:
        for block in iter(lambda: handle.read(CHUNK), b""):
            hasher.update(block)
            bar.update(len(block))
    return hasher


def _check(actual: str, expected: Optional[str], path: Path, archive: Path, origin: str) -> None:
    """Move a file that fails verification out of the way, where nothing will pick it up."""
    if expected and actual.lower() != expected.lower():
        bad = archive.with_name(archive.name + ".sha256-mismatch")
        os.replace(str(path), str(bad))
        raise SourceError(
            f"{archive.name} has sha256 {actual} but {expected} was expected; it was not used and was moved to {bad}. "
            f"Check the configured sha256, or the file's origin ({origin})."
        )


def adopt(archive: Path, sha256: Optional[str], origin: str) -> str:
    """Verify an archive already in place (placed by hand, or by another client) once."""
    known = verified_sha256(archive)
    if known and (not sha256 or known.lower() == sha256.lower()):
        return known
    actual = hash_file(archive).hexdigest()
    _check(actual, sha256, archive, archive, origin)
    if not sha256:
        log.warning("%s: no sha256 configured, recorded %s; pin it in your config to detect changes",
                    archive.name, actual)
    _remember(archive, actual, origin)
    return actual


def _validator(resp) -> Optional[str]:
    """What If-Range can use to make sure a resumed download continues the same file."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        return etag
    return resp.headers.get("Last-Modified")


def fetch(url: str, archive: Path, sha256: Optional[str], retry_wait: float = 1.0) -> str:
    """Download with HTTP Range resume, retries with backoff, streaming sha256, ``.part`` then rename.

    A partial file is continued only when the server can prove it is the same
    file (If-Range), or when a pinned sha256 will catch a splice of two versions.
    """
    part = partial(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    validator = (read_json(partial_validator(archive)) or {}).get(url)
    if part.exists() and not (validator or sha256):
        part.unlink()
    offset = part.stat().st_size if part.exists() else 0
    hasher = hash_file(part, label="resuming") if offset else hashlib.sha256()
    total = None
    session = requests.Session()
    for attempt in range(ATTEMPTS):
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if offset and validator:
            headers["If-Range"] = validator
        try:
            with session.get(url, headers=headers, stream=True, timeout=(15, 120)) as resp:
                if resp.status_code == 416 and offset:  # the part file is already whole
                    break
                if 400 <= resp.status_code < 500:
                    raise SourceError(f"{url} answered HTTP {resp.status_code} for {archive.name}")
                resp.raise_for_status()
                if resp.status_code == 200:  # a whole file: Range ignored, or the file changed (If-Range)
                    offset, hasher = 0, hashlib.sha256()
                    validator = _validator(resp)
                    write_json(partial_validator(archive), {url: validator})
                length = resp.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                with part.open("ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc="download " + archive.name
                ) as bar:
                    for block in resp.iter_content(NET_CHUNK):
                        out.write(block)
                        hasher.update(block)
                        offset += len(block)
                        bar.update(len(block))
            if total is None or offset >= total:
                break
            reason = f"connection closed at {offset} of {total} bytes"
        except SourceError:
            raise
        except requests.RequestException as exc:
            reason = _plainly(exc)
        if attempt == ATTEMPTS - 1:
            kept = f"; the partial file {part} is kept and the next run resumes it" if offset else ""
            raise SourceError(f"could not download {url} after {ATTEMPTS} attempts: {reason}{kept}")
        wait = retry_wait * 2 ** attempt
        log.warning("download of %s interrupted (%s); resuming in %.0fs", archive.name, reason, wait)
        time.sleep(wait)
    actual = hasher.hexdigest()
    _check(actual, sha256, part, archive, url)
    os.replace(str(part), str(archive))
    partial_validator(archive).unlink(missing_ok=True)
    _remember(archive, actual, url)
    return actual


def fetch_mdc(dataset_id: str, archive: Path, sha256: Optional[str]) -> str:
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
        raise SourceError(f"Mozilla Data Collective download of {dataset_id} failed: {exc}") from None
    os.replace(str(got), str(archive))
    return adopt(archive, sha256, "mdc:" + dataset_id)


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
    return text


def obtain(archive: Path, sha256: Optional[str], url: Optional[str], mdc_dataset_id: Optional[str],
           how_to_get: str) -> str:
    """Return the verified sha256 of ``archive``, fetching it first if it is not in place."""
    if archive.exists():
        return adopt(archive, sha256, "placed by hand")
    if url:
        try:
            return fetch(url, archive, sha256)
        except SourceError as exc:  # offline, a proxy, a moved file: the user can still fetch it some other way
            raise SourceError(f"{exc}\n  {how_to_get} A copy you get yourself goes at exactly this path:\n"
                              f"    {for_the_user(archive)}") from None
    if mdc_dataset_id:
        return fetch_mdc(mdc_dataset_id, archive, sha256)
    archive.parent.mkdir(parents=True, exist_ok=True)  # so that `cp` to the path below works as it reads
    raise SourceError(
        f"{archive.name} is not in {archive.parent}. {how_to_get} Place it at exactly this path:\n"
        f"    {for_the_user(archive)}"
    )


def obtain_each(getters: Mapping[str, Callable[[], str]]) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Run every getter, so one unreachable source neither holds up nor hides the others.

    Returns (name -> sha256, name -> why it failed); the caller tells the whole story once, at the end.
    """
    shas, failures = {}, {}
    for name, get in getters.items():
        try:
            shas[name] = get()
        except SourceError as exc:
            log.error("%s: %s", name, str(exc).split("\n")[0])
            failures[name] = str(exc)
    return shas, failures
