"""`dstrain serve`: the HTTP API with its scheduler, and `dstrain serve tenant ...` to manage tenants.

The dstrain command finds this group through the entry-point group ``dstrain.commands`` (pipeline/cli.py),
so the pipeline never imports the service.  Only click and the standard library are imported here at load
time: the web stack and the Docker SDK (the ``service`` extra) are imported when the server starts.
"""
import logging
import sys

import click


def _options(params: dict):
    from dstrain.service.options import Options, cpu_slots, gpu_slots, parse_labels, parse_size

    try:
        slots = gpu_slots(params["gpus"]) if params["gpus"] else cpu_slots(params["slots"] or 1)
        extra = {"job_user": params["job_user"]} if params["job_user"] else {}
        return Options(root=params["root"], image=params["image"], slots=slots, tenant_limit=params["tenant_limit"],
                       max_upload=parse_size(params["max_upload"]), instance=params["instance"],
                       memory=params["memory"] or None, cpus=params["cpus"], pids=params["pids"],
                       shm_size=params["shm_size"], network=params["network"], stop_grace=params["stop_grace"],
                       labels=parse_labels(params["label"]), **extra)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(invoke_without_command=True)
@click.option("--root", default="dstrain-service", show_default=True, type=click.Path(file_okay=False),
              help="The service's data: service.db and tenants/<id>/ (each tenant's /data). Under docker compose, "
                   "the same path on the host and in the container.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Put a reverse proxy with TLS in front (docs/service.md).")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--image", default="dstrain:latest", show_default=True,
              help="The image each job runs (Dockerfile.train).")
@click.option("--gpus", metavar="IDS", help="GPU slots: '0,1' is two jobs of one GPU each; '0+1,2+3' two of two.")
@click.option("--slots", type=int, help="Without GPUs: how many jobs run at once on the CPU [default: 1].")
@click.option("--tenant-limit", default=1, show_default=True, type=click.IntRange(1),
              help="Jobs of one tenant running at once.")
@click.option("--max-upload", default="50G", show_default=True, help="Largest upload.")
@click.option("--memory", default="16g", show_default=True, help="Each job's memory limit ('' for none).")
@click.option("--cpus", type=float, help="Each job's CPU limit [default: none].")
@click.option("--pids", default=4096, show_default=True, type=int, help="Each job's process limit.")
@click.option("--shm-size", default="1g", show_default=True, help="Each job's /dev/shm (NVIDIA's TF1 advice).")
@click.option("--network", default="bridge", show_default=True,
              help="Jobs' network: 'bridge' keeps them off the host's loopback; 'host' only where there is no bridge.")
@click.option("--job-user", help="UID:GID jobs run as [default: the service's own, or 1000:1000 for root].")
@click.option("--stop-grace", default=120, show_default=True, type=int,
              help="Seconds a cancelled job has to stop cleanly before it is killed.")
@click.option("--instance", default="default", show_default=True,
              help="This service's name on the engine: its containers carry it, a restart finds them by it.")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="An extra label for every job's container.")
@click.pass_context
def serve(ctx, **params):
    """Train as a service: an HTTP API where tenants upload data, submit jobs and download models.

    \b
    dstrain serve --slots 2 --image dstrain:latest       the API on http://127.0.0.1:8080 (docs at /docs)
    dstrain serve tenant add acme                        a tenant and its token, shown once
    See docs/service.md.
    """
    ctx.obj = params
    if ctx.invoked_subcommand is None:
        _run(_options(params), params["host"], params["port"])


def _run(options, host: str, port: int) -> None:
    import uvicorn

    from dstrain.service.api import create_app
    from dstrain.service.docker_launcher import DockerLauncher
    from dstrain.service.scheduler import Scheduler
    from dstrain.service.store import Store

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("dstrain.service")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not into the pipeline's "dstrain" logger and its console
    layout = _layout(options.root)
    store = Store(layout.db)
    try:
        launcher = DockerLauncher(options)
    except Exception as exc:
        raise click.ClickException(f"the Docker engine does not answer ({exc}); is dockerd running, and is its "
                                   "socket reachable (DOCKER_HOST)?") from None
    app = create_app(store, layout, options, Scheduler(store, launcher, layout, options))
    logger.info("slots: %s; image %s; data in %s", ", ".join(s.name for s in options.slots), options.image,
                layout.root)
    # Log followers (?follow=true) would hold a shutdown for as long as their job runs.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


@serve.group()
def tenant():
    """Tenants: each has a name (seen only here), a random id, a token and its own data directory."""


def _store_and_layout(params):
    from dstrain.service.store import Store

    layout = _layout(params["root"])
    return Store(layout.db), layout


def _layout(root):
    """The service's folder, made if needed; never a system directory (links followed first, as the kernel
    follows them)."""
    from dstrain.pipeline.paths import system_dir_problem
    from dstrain.service.layout import Layout

    refused = system_dir_problem(root)
    if refused:
        raise click.BadParameter(f"{refused}: the service needs a folder of its own", param_hint="--root")
    layout = Layout(root)
    layout.root.mkdir(mode=0o711, parents=True, exist_ok=True)
    return layout


@tenant.command("add")
@click.argument("name")
@click.pass_obj
def tenant_add(params, name):
    """Create tenant NAME and print its token, once (only its hash is kept)."""
    from dstrain.service.tenants import add_tenant

    store, layout = _store_and_layout(params)
    try:
        found, token = add_tenant(store, layout, name, _options(params).job_uid_gid)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tenant {name}: id {found.id}, data in {layout.tenant(found.id)}")
    click.echo("token (shown once; give it as 'Authorization: Bearer <token>'):")
    click.echo(token)


@tenant.command("token")
@click.argument("name")
@click.pass_obj
def tenant_token(params, name):
    """Give tenant NAME a new token; the old one stops working at once."""
    from dstrain.service.tenants import rotate_token

    store, _ = _store_and_layout(params)
    try:
        click.echo(rotate_token(store, name))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@tenant.command("list")
@click.pass_obj
def tenant_list(params):
    """Every tenant: id, name, created."""
    store, _ = _store_and_layout(params)
    for found in store.tenants():
        click.echo(f"{found.id}  {found.name}  {found.created}")
