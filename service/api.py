"""The HTTP API: jobs, their progress and logs, health and metrics (files.py: uploads and artifacts).

Every route under /v1 needs ``Authorization: Bearer <token>``; a tenant sees only its own jobs and files,
and another tenant's job is as absent as one that never existed (404).  The OpenAPI description is served
at /openapi.json and read at /docs.
"""
import asyncio
import contextlib
import logging
import os
from typing import Any, Dict, List, Optional

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from dstrain.pipeline import __version__
from dstrain.service import jobspec, runs, tenantfs
from dstrain.service.auth import Service, own_job, service, tenant_id
from dstrain.service.files import artifacts, refuse_over_quota, sources, tenant_tree
from dstrain.service.layout import Layout, PathRefused
from dstrain.service.metrics import registry_for
from dstrain.service.options import Options
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

    @classmethod
    def of(cls, job: Job, transitions=None) -> "JobView":
        return cls(id=job.id, state=job.state, language=job.language, datasets=job.datasets,
                   overrides=job.overrides, to=job.stop_after, attempt=job.attempt, created=job.created,
                   updated=job.updated, cause=job.cause, cancel_requested=job.cancel_requested is not None,
                   exit_code=job.exit_code, transitions=transitions)


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
                      422: {"description": "a bad setting, language, dataset or stage, named"}})
def submit(body: jobspec.JobRequest, response: Response, tenant: str = Depends(tenant_id),
           svc: Service = Depends(service),
           idempotency_key: Optional[str] = Header(None, max_length=200,
                                                   description="a retried submit with it returns the same job")):
    """Queue a job: a language, its datasets, and settings checked as `dstrain run` checks them."""
    try:
        flat = jobspec.validate(body)
    except jobspec.Invalid as exc:
        raise RequestValidationError(exc.errors) from None

    refuse_over_quota(svc, tenant)

    def write_settings(job_id: str) -> None:
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


@jobs.get("", response_model=List[JobView])
def list_jobs(state: Optional[str] = Query(None, pattern="^(" + "|".join(STATES) + ")$"),
              tenant: str = Depends(tenant_id), svc: Service = Depends(service)):
    """Your jobs, oldest first."""
    return [JobView.of(job) for job in svc.store.jobs(tenant, [state] if state else STATES)]


@jobs.get("/{job_id}", response_model=JobView)
def get_job(job: Job = Depends(own_job), svc: Service = Depends(service)):
    """The job, and every change of its state with when and why."""
    return JobView.of(job, svc.store.transitions(job.id))


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


@health.get("/healthz")
def healthz(svc: Service = Depends(service)):
    """Whether the service answers and its store reads; `engine` says whether the container engine does."""
    svc.store.counts()
    return {"status": "ok", "version": __version__, "engine": svc.scheduler.launcher.available()}


@health.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(request: Request):
    """Jobs per state and slots in use, in Prometheus' text format."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


def create_app(store: Store, layout: Layout, options: Options, scheduler: Scheduler) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        # Before the first request: re-attach to the runs still going, record those that ended meanwhile.
        scheduler.start()
        yield
        scheduler.close()  # the runs go on without the service

    app = FastAPI(title="dstrain", version=__version__, lifespan=lifespan,
                  description="Training DeepSpeech models as a service: upload data, submit jobs, watch them, "
                              "download the packaged model.  docs/service.md walks through it.")
    app.state.service = Service(store, layout, options, scheduler)
    app.state.metrics = registry_for(store, options)
    for router in (jobs, sources, artifacts, health):
        app.include_router(router)

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
