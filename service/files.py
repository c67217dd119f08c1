"""Files in and out: a tenant's uploads into its own sources/, and a job's package and reports.

An upload is streamed to a hidden temporary file beside its final name, hashed on the way, refused with
413 as soon as it passes the cap, and renamed only when whole.  A download is served with HTTP Range, so a
large package can be fetched in pieces or resumed.  A name or path from a request is checked before it
touches the file system (layout.py), and nothing is followed through a symlink.
"""
import hashlib
import os
import re
import secrets
from typing import List, Optional

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from dstrain.pipeline.settings import SOURCE_FILENAME
from dstrain.service import runs
from dstrain.service.auth import Service, own_job, service, tenant_id
from dstrain.service.layout import PathRefused, inside
from dstrain.service.store import Job
from dstrain.service.tenants import give_to_jobs, make_private_dir

#: Names the pipeline gives its own files in sources/ (a download in flight, a verification record).
_PIPELINE_SUFFIXES = (".part", ".part.json", ".verified.json")


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


def _source_name(name: str) -> str:
    if len(name) > 200 or not re.match(SOURCE_FILENAME, name) or name.endswith(_PIPELINE_SUFFIXES):
        raise PathRefused(f"{name!r} is not a file name for sources/: letters, digits and ._+- only, no '/', "
                          f"not starting with '.', not ending in {', '.join(_PIPELINE_SUFFIXES)}")
    return name


def _sources_dir(svc: Service, tenant: str):
    directory = svc.layout.sources(tenant)
    make_private_dir(directory, svc.options.job_uid_gid)
    if os.path.realpath(str(directory)) != str(directory):
        raise HTTPException(500, "the tenant's sources/ is not a plain directory")
    return directory


@sources.put("/{name}", status_code=201, response_model=SourceFile,
             responses={413: {"description": "larger than the service's upload cap"}})
async def upload(name: str, request: Request, tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Upload a file into your sources/ (the request body, streamed: `curl -T archive.tar.gz URL`).

    A Common Voice archive goes under the name the download stage expects, e.g.
    `cv-corpus-21.0-2025-03-14-fr.tar.gz`.  The same name again replaces the file.
    """
    name = _source_name(name)
    cap = svc.options.max_upload
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise HTTPException(413, f"the upload is {int(declared)} bytes; this service takes at most {cap}")
    directory = _sources_dir(svc, tenant)
    partial = directory / f".upload-{secrets.token_hex(8)}"
    digest, size = hashlib.sha256(), 0
    fd = os.open(str(partial), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise HTTPException(413, f"the upload passed {cap} bytes, this service's cap; nothing was kept")
                digest.update(chunk)
                handle.write(chunk)
        give_to_jobs(partial, svc.options.job_uid_gid)
        os.replace(str(partial), str(directory / name))
    finally:
        if partial.exists():
            partial.unlink()
    svc.store.record_upload(tenant, name, size, digest.hexdigest())
    return SourceFile(name=name, size=size, sha256=digest.hexdigest())


@sources.get("", response_model=List[SourceFile])
def list_sources(tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """The files in your sources/: uploads, and what your jobs downloaded (whole ones only)."""
    directory = _sources_dir(svc, tenant)
    uploads = svc.store.uploads(tenant)
    found = []
    for entry in sorted(os.scandir(str(directory)), key=lambda e: e.name):
        hidden = entry.name.startswith(".") or entry.name.endswith(_PIPELINE_SUFFIXES)  # bookkeeping, not data
        if hidden or not entry.is_file(follow_symlinks=False):
            continue
        size = entry.stat(follow_symlinks=False).st_size
        known = uploads.get(entry.name)
        found.append(SourceFile(name=entry.name, size=size,
                                sha256=known["sha256"] if known and known["size"] == size else None))
    return found


@sources.delete("/{name}", status_code=204, response_class=Response)
def delete_source(name: str, tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Delete a file from your sources/."""
    try:
        path = inside(_sources_dir(svc, tenant), _source_name(name))
    except FileNotFoundError:
        raise HTTPException(404, f"no file {name} in your sources/") from None
    path.unlink()
    svc.store.forget_upload(tenant, name)
    return Response(status_code=204)


artifacts = APIRouter(prefix="/v1/jobs/{job_id}/artifacts", tags=["artifacts"])


@artifacts.get("", response_model=List[Artifact])
def list_artifacts(job: Job = Depends(own_job), svc: Service = Depends(service)):
    """The job's package/ files and reports (report.html, loss.png, ...), each with its size and SHA256."""
    return runs.artifacts(svc.layout, job)


@artifacts.get("/{path:path}", response_class=FileResponse,
               responses={206: {"description": "the part a Range header asked for"},
                          400: {"description": "not a plain relative path ('..', absolute)"}})
def download(path: str, job: Job = Depends(own_job), svc: Service = Depends(service)):
    """One artifact, e.g. `package/SHA256SUMS` or `reports/report.html`; HTTP Range works."""
    try:
        found = runs.artifact(svc.layout, job, path)
    except FileNotFoundError:
        raise HTTPException(404, f"job {job.id} has no artifact {path}") from None
    return FileResponse(str(found), filename=found.name, headers={"X-Content-SHA256": runs.sha256_of(found)})
