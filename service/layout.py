"""Every path under the service's root, named once, and what a request's path may be (tenantfs.py reaches
the files).

    <root>/service.db                  the job store (SQLite, WAL)
    <root>/audit.log                   the host's changes to tenants, one line each
    <root>/tenants/<tenant-id>/        the tenant's data root: its jobs' /data
        sources/                       its uploads, and what its jobs download
        jobs/<job-id>/dstrain.toml     the settings the job asked for, read by its container
        runs/<job-id>/                 the pipeline's run (the pipeline's own layout, paths.py)
        imported/                      shared by the tenant's runs, as on any data root

A tenant id is random and opaque: a tenant's name is in the store only, never in a path, a label or a
container's name.
"""
import os
from pathlib import Path, PurePosixPath

from dstrain.pipeline.paths import DataRoot
from dstrain.service.options import CONTAINER_DATA


class PathRefused(ValueError):
    """A path from a request that is not a plain relative path (absolute, '..', a backslash, a NUL)."""


class Layout:
    def __init__(self, root):
        # Absolute: dockerd resolves a bind mount's source on its own side.
        self.root = Path(os.path.abspath(str(root)))

    @property
    def db(self) -> Path:
        return self.root / "service.db"

    @property
    def tenants(self) -> Path:
        return self.root / "tenants"

    @property
    def audit_log(self) -> Path:
        """One line per change the host made to a tenant: added, disabled, enabled, quota, removed."""
        return self.root / "audit.log"

    def tenant(self, tenant_id: str) -> Path:
        return self.tenants / tenant_id

    def relative(self, tenant_id: str, path: Path) -> str:
        """``path``, one of the tenant's, relative to its directory (as tenantfs takes it)."""
        return str(path.relative_to(self.tenant(tenant_id)))

    def sources(self, tenant_id: str) -> Path:
        return self.tenant(tenant_id) / "sources"

    def job_dir(self, tenant_id: str, job_id: str) -> Path:
        return self.tenant(tenant_id) / "jobs" / job_id

    def job_settings(self, tenant_id: str, job_id: str) -> Path:
        return self.job_dir(tenant_id, job_id) / "dstrain.toml"

    @staticmethod
    def container_job_settings(job_id: str) -> str:
        """The same file as the container sees it."""
        return f"{CONTAINER_DATA}/jobs/{job_id}/dstrain.toml"

    def run(self, tenant_id: str, job_id: str, language: str) -> DataRoot:
        """The pipeline's own layout of the job's run: its records, logs, reports and package."""
        return DataRoot(self.tenant(tenant_id), job_id, language)


def relative_parts(path: str) -> PurePosixPath:
    """A request's path as plain parts, or PathRefused: nothing absolute, no '.' or '..', no backslash or NUL."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        raise PathRefused(f"{path!r} is not a relative path")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PathRefused(f"{path!r}: no '..', '.' or empty parts")
    return PurePosixPath(*parts)
