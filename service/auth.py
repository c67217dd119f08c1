"""Who is asking: the bearer token's tenant, and the jobs that tenant may see.

A missing or bad token is a 401, and so is a disabled tenant's, from the request after the host disabled it:
the store is read at each request.  Another tenant's job is a 404, the same as a job that never existed, so
an id tells nothing about anyone else.
"""
from typing import Optional, Tuple

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.scheduler import Scheduler
from dstrain.service.store import Job, Store
from dstrain.service.tenants import authenticate, owner


class Service:
    """What every route needs, built once by create_app."""

    def __init__(self, store: Store, layout: Layout, options: Options, scheduler: Scheduler):
        self.store = store
        self.layout = layout
        self.options = options
        self.scheduler = scheduler

    def owner(self, tenant_id: str) -> Optional[Tuple[int, int]]:
        """The host uid and gid the tenant's files are given to (None: they stay the service's)."""
        return owner(self.options, self.store.tenant(tenant_id))


_bearer = HTTPBearer(auto_error=False, description="the token `dstrain serve tenant add NAME` printed")


def service(request: Request) -> Service:
    return request.app.state.service


def tenant_id(creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer),
              svc: Service = Depends(service)) -> str:
    tenant = authenticate(svc.store, creds.credentials if creds else None)
    if tenant is None:
        raise HTTPException(401, "a valid bearer token is needed: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    if tenant.disabled:
        raise HTTPException(401, "this tenant is disabled; ask the host", headers={"WWW-Authenticate": "Bearer"})
    return tenant.id


def own_job(job_id: str, tenant: str = Depends(tenant_id), svc: Service = Depends(service)) -> Job:
    job = svc.store.job(job_id, tenant)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job
