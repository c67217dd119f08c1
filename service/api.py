"""The HTTP API: jobs, their progress and logs, health and metrics (files.py: uploads and artifacts).

Every route under /v1 needs ``Authorization: Bearer <token>``; a tenant sees only its own jobs and files,
and another tenant's job is as absent as one that never existed (404).  /metrics needs the host's own token.
The OpenAPI description is served at /openapi.json and read at /docs, whose Swagger UI is served by the
service itself (fastapi-offline), not from a CDN.
"""
import asyncio
import contextlib
import hmac
import logging
import os
import sqlite3
from typing import Any, Dict, List, Optional

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from dstrain.pipeline import __version__
from dstrain.service import jobspec, runs, tenantfs
from dstrain.service.auth import Service, own_job, service, tenant_id
from dstrain.service.files import artifacts, refuse_over_quota, sources, tenant_tree
from dstrain.service.health import cannot_write, disk_full, free_bytes
from dstrain.service.layout import Layout, PathRefused
from dstrain.service.metrics import registry_for
from dstrain.service.options import Options
from dstrain.service.request_limits import BodyLimit
from dstrain.service.scheduler import Scheduler
from dstrain.service.store import (
    CANCELLED,
    FAILED,
    FINAL,
    QUEUED,
    RUNNING,
    STATES,
    IdempotencyConflict,
    Job,
    Store,
    now,
)
from dstrain.service.usage import Usage, of_runs
from dstrain.service.usage import router as usage_router

log = logging.getLogger("dstrain.service")


class Transition(BaseModel):
    at: str
    from_state: Optional[str]
    to_state: str
    cause: str


class JobView(BaseModel):
    id: str
    state: str
    language: str
    datasets: Optional[List[str]]
    overrides: Dict[str, Any]
    to: Optional[str]
    #: How many times a container was started for it (a resume starts another).
    attempt: int
    created: str
    updated: str
    cause: Optional[str]
    cancel_requested: bool
    exit_code: Optional[int]
    transitions: Optional[List[Transition]] = None
    #: What its runs used, by the engine's count (usage.py); in the one job's view.
    usage: Optional[Usage] = None

    @classmethod
    def of(cls, job: Job, transitions=None, usage=None) -> "JobView":
        return cls(id=job.id, state=job.state, language=job.language, datasets=job.datasets,
                   overrides=job.overrides, to=job.stop_after, attempt=job.attempt, created=job.created,
                   updated=job.updated, cause=job.cause, cancel_requested=job.cancel_requested is not None,
                   exit_code=job.exit_code, transitions=transitions, usage=usage)


class Progress(BaseModel):
    state: str
    stage: Optional[str]
    stages_done: List[str]
    stages: List[str]
    epoch: int
    epochs: Optional[int]
    train_loss: Optional[float]
    dev_loss: Optional[float]
    best: Optional[Dict[str, Any]]
    trainings: int
    wer: Optional[float]
    cer: Optional[float]


jobs = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@jobs.post("", status_code=201, response_model=JobView,
           responses={200: {"description": "the job this Idempotency-Key made before"},
                      413: {"description": "a request body over the service's limit"},
                      422: {"description": "a bad setting, language, dataset or stage, a setting over the host's "
                                           "ceiling, or a URL jobs may not reach, named"},
                      429: {"description": "you have as many jobs waiting as the service lets one tenant have"},
                      507: {"description": "the service's disk is full"}})
def submit(body: jobspec.JobRequest, response: Response, tenant: str = Depends(tenant_id),
           svc: Service = Depends(service),
           idempotency_key: Optional[str] = Header(None, max_length=200,
                                                   description="a retried submit with it returns the same job")):
    """Queue a job: a language, its datasets, and settings checked as `dstrain run` checks them."""
    try:
        flat = jobspec.validate(body, svc.options.rules)
    except jobspec.Invalid as exc:
        raise RequestValidationError(exc.errors) from None

    refuse_over_quota(svc, tenant)

    def write_settings(job_id: str) -> None:
        _room_in_queue(svc, tenant)  # in the store's transaction: two submits at once cannot both pass the cap
        with tenant_tree(svc, tenant) as tree:
            directory = tree.make_dirs(svc.layout.relative(tenant, svc.layout.job_dir(tenant, job_id)),
                                       svc.owner(tenant))
            try:
                with tenantfs.NewFile(directory, svc.layout.job_settings(tenant, job_id).name, svc.owner(tenant),
                                      prefix=".settings-") as settings:
                    settings.write(jobspec.settings_toml(flat).encode("utf-8"))
                    settings.publish()
            finally:
                os.close(directory)

    try:
        job, created = svc.store.submit(tenant, body.language, body.datasets, flat, body.to, idempotency_key,
                                        body.fingerprint(), write_settings)
    except IdempotencyConflict:
        raise HTTPException(422, "this Idempotency-Key was used for another request") from None
    if created:
        svc.scheduler.keep_secrets(job.id, {"MDC_API_KEY": body.mdc_api_key} if body.mdc_api_key else None)
        svc.scheduler.poke()
        log.info("job %s: queued (tenant %s)", job.id, tenant)
    else:
        response.status_code = 200
    return JobView.of(job)


def _room_in_queue(svc: Service, tenant: str) -> None:
    cap = svc.options.tenant_queue
    if len(svc.store.jobs(tenant, [QUEUED])) >= cap:
        raise HTTPException(429, f"you have {cap} jobs waiting in the queue, as many as this service lets one "
                                 "tenant have (--tenant-queue); submit again once some have started, or cancel some")


@jobs.get("", response_model=List[JobView])
def list_jobs(state: Optional[str] = Query(None, pattern="^(" + "|".join(STATES) + ")$"),
              tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Your jobs, oldest first."""
    return [JobView.of(job) for job in svc.store.jobs(tenant, [state] if state else STATES)]


@jobs.get("/{job_id}", response_model=JobView)
def get_job(job: Job = Depends(own_job), svc: Service = Depends(service)):
    """The job, every change of its state with when and why, and what its runs used."""
    return JobView.of(job, svc.store.transitions(job.id), of_runs(svc.scheduler.ledger.of_job(job.id)))


@jobs.post("/{job_id}/cancel", status_code=202, response_model=JobView)
def cancel(job: Job = Depends(own_job), svc: Service = Depends(service)):
    """A queued job is cancelled at once; a running one is stopped (finished epochs are kept), then cancelled."""
    if not svc.store.move(job.id, [QUEUED], CANCELLED, "cancelled by the tenant while queued",
                          cause="cancelled by the tenant"):
        if not svc.store.update(job.id, RUNNING, cancel_requested=now()):
            raise HTTPException(409, f"job {job.id} is already {svc.store.job(job.id).state}")
        svc.scheduler.poke()
    return JobView.of(svc.store.job(job.id))


@jobs.post("/{job_id}/resume", status_code=202, response_model=JobView)
def resume(body: Optional[jobspec.ResumeRequest] = None, job: Job = Depends(own_job),
           svc: Service = Depends(service)):
    """Queue a failed or cancelled job again: a new container on the same run, from its last checkpoint."""
    refuse_over_quota(svc, job.tenant)
    if body and body.mdc_api_key:
        svc.scheduler.keep_secrets(job.id, {"MDC_API_KEY": body.mdc_api_key})
    _room_in_queue(svc, job.tenant)
    if not svc.store.move(job.id, [FAILED, CANCELLED], QUEUED, "resumed by the tenant", cancel_requested=None,
                          cause=None):
        raise HTTPException(409, f"job {job.id} is {svc.store.job(job.id).state}: only a failed or cancelled job "
                                 "can be resumed")
    svc.scheduler.poke()
    return JobView.of(svc.store.job(job.id))


@jobs.get("/{job_id}/progress", response_model=Progress)
def progress(job: Job = Depends(own_job), svc: Service = Depends(service)):
    """The stage under way, the epochs done out of the total, the last train and dev loss, from the run's records."""
    return runs.progress(svc.layout, job)


@jobs.get("/{job_id}/log", response_class=StreamingResponse,
          responses={200: {"content": {"text/plain": {}}, "description": "the stage logs, each line prefixed"}})
async def job_log(follow: bool = Query(False, description="keep streaming until the job is final"),
                  job: Job = Depends(own_job), svc: Service = Depends(service)):
    """The job's stage logs, `[stage] line` by line (chunked); with follow=true, live until the job ends."""
    reader = runs.LogReader(svc.layout, job)

    async def lines():
        while True:
            # Read after looking at the state, so the last lines of a job that just ended are sent too.
            final = svc.store.job(job.id).state in FINAL
            for chunk in reader.read():
                yield chunk
            if not follow or final:
                return
            await asyncio.sleep(1)

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")


health = APIRouter(tags=["health"])


@health.get("/healthz", responses={503: {"description": "the service cannot write its store or its files"}})
def healthz(svc: Service = Depends(service)):
    """Whether the service answers, and can read and write its store and files (503 with the reason when not);
    `engine` says whether the container engine answers; `disk_free` is the bytes left where the store is."""
    svc.store.counts()
    problem = cannot_write(svc.layout, svc.scheduler.ledger)
    body = {"status": "degraded" if problem else "ok", "version": __version__,
            "engine": svc.scheduler.launcher.available(), "disk_free": free_bytes(svc.layout)}
    if problem:
        body["problem"] = problem
    return JSONResponse(body, status_code=503 if problem else 200)


_host_token = HTTPBearer(auto_error=False, description="the host's metrics token (--metrics-token-file)")


def _metrics_reader(creds: Optional[HTTPAuthorizationCredentials] = Depends(_host_token),
                    svc: Service = Depends(service)) -> None:
    token = svc.options.metrics_token
    if token is None:
        raise HTTPException(404, "metrics are off: the host turns them on with --metrics-token-file")
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(401, "the host's metrics token is needed: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})


@health.get("/metrics", response_class=Response, dependencies=[Depends(_metrics_reader)],
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
                       401: {"description": "without the host's metrics token"},
                       404: {"description": "metrics are off (no --metrics-token-file)"}})
def metrics(request: Request):
    """Jobs per state, slots in use, and each tenant's jobs and usage by its id, in Prometheus' text format.
    For the host's monitoring: it needs the host's metrics token, not a tenant's."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


_FULL = "the service's disk is full: nothing of this request was kept; try again later"


def create_app(store: Store, layout: Layout, options: Options, scheduler: Scheduler) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        # Before the first request: re-attach to the runs still going, record those that ended meanwhile.
        scheduler.start()
        yield
        scheduler.close()  # the runs go on without the service

    app: FastAPI = FastAPIOffline(
        title="dstrain", version=__version__, lifespan=lifespan, redoc_url=None,
        description="Training DeepSpeech models as a service: upload data, submit jobs, watch them, download the "
                    "packaged model.  docs/service.md walks through it.")
    app.state.service = Service(store, layout, options, scheduler)
    app.state.metrics = registry_for(store, options, scheduler.ledger, scheduler.disk)
    for router in (jobs, sources, artifacts, usage_router, health):
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=options.max_request)

    @app.exception_handler(OSError)
    def os_error(request: Request, exc: OSError):
        if disk_full(exc):
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": _FULL}, status_code=507)
        raise exc

    @app.exception_handler(sqlite3.OperationalError)
    def store_error(request: Request, exc: sqlite3.OperationalError):
        log.error("%s %s: the store: %s", request.method, request.url.path, exc)
        if disk_full(exc):
            return JSONResponse({"detail": _FULL}, status_code=507)
        return JSONResponse({"detail": "the service's store cannot be used now; try again later"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError):
        # Where and why, never the value given: a request body may carry a secret (mdc_api_key).
        return JSONResponse({"detail": [{key: error.get(key) for key in ("loc", "msg", "type")}
                                        for error in exc.errors()]}, status_code=422)

    @app.exception_handler(PathRefused)
    def refused(request: Request, exc: PathRefused):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(tenantfs.Refused)
    def not_followed(request: Request, exc: tenantfs.Refused):
        # Something in the tenant's own directory (its job's doing) that the service will not follow or replace.
        return JSONResponse({"detail": str(exc)}, status_code=409)

    return app
