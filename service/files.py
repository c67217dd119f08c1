"""Files in and out: a tenant's uploads into its own sources/, and a job's package and reports.

Every file is reached beneath the tenant directory's descriptor, never through a symlink (tenantfs.py).
An upload is streamed to a hidden temporary file beside its final name, hashed on the way, refused with
413 as soon as it passes the cap or 507 as soon as it passes the tenant's disk quota, and renamed only when
whole.  A download is served from the descriptor that was opened and checked, with HTTP Range, so a large
package can be fetched in pieces or resumed, and its X-Content-SHA256 is computed from that same descriptor.
"""
import hashlib
import mimetypes
import os
import re
import stat
from typing import List, Optional, Tuple
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from dstrain.pipeline.settings import SOURCE_FILENAME
from dstrain.service import runs, tenantfs
from dstrain.service.auth import Service, own_job, service, tenant_id
from dstrain.service.layout import PathRefused
from dstrain.service.quotas import quota_of
from dstrain.service.store import Job

#: Names the pipeline gives its own files in sources/ (a download in flight, a verification record).
_PIPELINE_SUFFIXES = (".part", ".part.json", ".verified.json")
_CHUNK = 1 << 20


class SourceFile(BaseModel):
    name: str
    size: int
    #: Known for uploads through the API (the pipeline verifies every archive itself before use).
    sha256: Optional[str] = None


class Artifact(BaseModel):
    path: str
    size: int
    sha256: str


sources = APIRouter(prefix="/v1/sources", tags=["data"])


def tenant_tree(svc: Service, tenant: str) -> tenantfs.Tree:
    return tenantfs.Tree(svc.layout.tenant(tenant))


def refuse_over_quota(svc: Service, tenant: str, more: int = 0, max_age: Optional[float] = None) -> None:
    """507 when the tenant holds (or with ``more`` bytes would hold) more than its disk quota."""
    over = svc.scheduler.disk.over(tenant, quota_of(svc.options, svc.store.tenant(tenant)),
                                   svc.options.disk_check_seconds if max_age is None else max_age, more)
    if over:
        raise HTTPException(507, f"{over}; delete files (DELETE /v1/sources/NAME) or ask the host for more")


def _source_name(name: str) -> str:
    if len(name) > 200 or not re.match(SOURCE_FILENAME, name) or name.endswith(_PIPELINE_SUFFIXES):
        raise PathRefused(f"{name!r} is not a file name for sources/: letters, digits and ._+- only, no '/', "
                          f"not starting with '.', not ending in {', '.join(_PIPELINE_SUFFIXES)}")
    return name


def _room_for(svc: Service, tenant: str, directory: int, name: str) -> int:
    """Bytes the upload frees by replacing a file of that name (0 for a new name); 507 when a new name would
    pass the cap on files in sources/."""
    try:
        existing = os.stat(name, dir_fd=directory, follow_symlinks=False)
        return existing.st_blocks * 512
    except FileNotFoundError:
        pass
    count = sum(1 for entry in tenantfs.walk(directory) if stat.S_ISREG(entry.status.st_mode))
    if count >= svc.options.max_files:
        raise HTTPException(507, f"your sources/ holds {count} files, this service's limit (--max-files "
                                 f"{svc.options.max_files}); delete some before uploading another")
    return 0


@sources.put("/{name}", status_code=201, response_model=SourceFile,
             responses={413: {"description": "larger than the service's upload cap"},
                        507: {"description": "past your disk quota, or the cap on files in sources/"}})
async def upload(name: str, request: Request, tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Upload a file into your sources/ (the request body, streamed: `curl -T archive.tar.gz URL`).

    A Common Voice archive goes under the name the download stage expects, e.g.
    `cv-corpus-21.0-2025-03-14-fr.tar.gz`.  The same name again replaces the file.
    """
    name = _source_name(name)
    cap = svc.options.max_upload
    declared = request.headers.get("content-length")
    declared = int(declared) if declared is not None and declared.isdigit() else 0
    if declared > cap:
        raise HTTPException(413, f"the upload is {declared} bytes; this service takes at most {cap}")
    owner = svc.owner(tenant)
    with tenant_tree(svc, tenant) as tree:
        directory = tree.make_dirs("sources", owner)
        try:
            freed = _room_for(svc, tenant, directory, name)
            await run_in_threadpool(refuse_over_quota, svc, tenant, declared - freed)
            digest = await _receive(svc, tenant, request, (directory, name, owner), cap, freed)
        finally:
            os.close(directory)
    svc.scheduler.disk.forget(tenant)
    svc.store.record_upload(tenant, name, *digest)
    return SourceFile(name=name, size=digest[0], sha256=digest[1])


async def _receive(svc: Service, tenant: str, request: Request, target: tuple, cap: int,
                   freed: int) -> Tuple[int, str]:
    """Stream the body into a new file (``target``: its directory's descriptor, name and owner), held to the
    cap and the quota; (size, sha256) once it is published.

    What the upload has written so far counts as the tenant's (DiskMeter.uploading), less what the file it
    replaces frees, so two uploads at once share the room left."""
    digest = hashlib.sha256()
    quota = quota_of(svc.options, svc.store.tenant(tenant))
    disk = svc.scheduler.disk
    written = 0
    disk.uploading(tenant, -freed)
    try:
        with tenantfs.NewFile(*target) as new:
            async for chunk in request.stream():
                if written + len(chunk) > cap:
                    raise HTTPException(413, f"the upload passed {cap} bytes, this service's cap; nothing was kept")
                over = disk.over(tenant, quota, max_age=None, more=len(chunk))
                if over:
                    raise HTTPException(507, f"{over}; nothing of this upload was kept")
                disk.uploading(tenant, len(chunk))
                written += len(chunk)
                new.write(chunk)
                digest.update(chunk)
            new.publish()
    finally:
        disk.uploading(tenant, freed - written)
    return written, digest.hexdigest()


@sources.get("", response_model=List[SourceFile])
def list_sources(tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """The files in your sources/: uploads, and what your jobs downloaded (whole ones only)."""
    uploads = svc.store.uploads(tenant)
    found = []
    with tenant_tree(svc, tenant) as tree:
        try:
            entries = tree.entries("sources")
        except tenantfs.NotFound:
            raise HTTPException(404, "your directory has no sources/ (or it is a symlink, which the service does "
                                     "not follow)") from None
    for entry in entries:
        hidden = entry.path.startswith(".") or entry.path.endswith(_PIPELINE_SUFFIXES)  # bookkeeping, not data
        if hidden or not stat.S_ISREG(entry.status.st_mode):
            continue
        size = entry.status.st_size
        known = uploads.get(entry.path)
        found.append(SourceFile(name=entry.path, size=size,
                                sha256=known["sha256"] if known and known["size"] == size else None))
    return found


@sources.delete("/{name}", status_code=204, response_class=Response)
def delete_source(name: str, tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Delete a file from your sources/."""
    name = _source_name(name)
    try:
        with tenant_tree(svc, tenant) as tree:
            tree.remove_file(f"sources/{name}")
    except tenantfs.NotFound:
        raise HTTPException(404, f"no file {name} in your sources/") from None
    svc.store.forget_upload(tenant, name)
    svc.scheduler.disk.forget(tenant)
    return Response(status_code=204)


artifacts = APIRouter(prefix="/v1/jobs/{job_id}/artifacts", tags=["artifacts"])


@artifacts.get("", response_model=List[Artifact])
def list_artifacts(job: Job = Depends(own_job), svc: Service = Depends(service)):
    """The job's package/ files and reports (report.html, loss.png, ...), each with its size and SHA256."""
    return runs.artifacts(svc.layout, job)


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """The first and last byte a Range header asks for; None for the whole file (no header, or one this does
    not serve: several ranges); 416 when it lies past the end."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
        if not int(last):
            start = size
    if start >= size or start > end:
        raise HTTPException(416, f"the file has {size} bytes", headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def _stream(fd: int, start: int, length: int):
    try:
        while length > 0:
            chunk = await run_in_threadpool(os.pread, fd, min(_CHUNK, length), start)
            if not chunk:  # the file shrank meanwhile: the client sees a short body
                return
            start += len(chunk)
            length -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


@artifacts.get("/{path:path}", response_class=StreamingResponse,
               responses={200: {"content": {"application/octet-stream": {}}},
                          206: {"description": "the part a Range header asked for"},
                          400: {"description": "not a plain relative path ('..', absolute)"},
                          416: {"description": "a Range past the end of the file"}})
def download(path: str, job: Job = Depends(own_job), svc: Service = Depends(service),
             range_header: Optional[str] = Header(None, alias="Range")):
    """One artifact, e.g. `package/SHA256SUMS` or `reports/report.html`; HTTP Range works."""
    try:
        fd, status = runs.open_artifact(svc.layout, job, path)
    except tenantfs.NotFound:
        raise HTTPException(404, f"job {job.id} has no artifact {path}") from None
    try:
        digest = runs.sha256_of(fd, status)
        wanted = _range(range_header, status.st_size)
    except BaseException:
        os.close(fd)
        raise
    name = path.rsplit("/", 1)[-1]
    quoted = quote(name)
    headers = {"Accept-Ranges": "bytes", "X-Content-SHA256": digest, "ETag": f'"{digest}"',
               "Content-Disposition": f'attachment; filename="{name}"' if quoted == name
               else f"attachment; filename*=utf-8''{quoted}"}
    start, end = wanted if wanted else (0, status.st_size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{status.st_size}"
    return StreamingResponse(_stream(fd, start, end - start + 1), status_code=206 if wanted else 200,
                             headers=headers, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
