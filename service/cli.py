"""`dstrain serve`: the HTTP API with its scheduler, and `dstrain serve tenant ...` to manage tenants.

The dstrain command finds this group through the entry-point group ``dstrain.commands`` (pipeline/cli.py),
so the pipeline never imports the service.  Only click and the standard library are imported here at load
time: the web stack and the Docker SDK (the ``service`` extra) are imported when the server starts.
"""
import logging
import sys

import click


def _options(params: dict):
    from dstrain.service.options import (
        Options,
        cpu_slots,
        gpu_slots,
        parse_cpus,
        parse_duration,
        parse_labels,
        parse_size,
        parse_uid_range,
    )
    from dstrain.service.rules import Rules, read_ceilings

    if params["job_user"]:
        raise click.BadParameter("--job-user is gone: as root, each tenant's jobs run as its own uid from "
                                 "--tenant-uids; a service that is not root runs them as its own user "
                                 "(docs/service.md, \"Running it for strangers\")")
    try:
        slots = gpu_slots(params["gpus"]) if params["gpus"] else cpu_slots(params["slots"] or 1)
        extra = {"tenant_uids": parse_uid_range(params["tenant_uids"])} if params["tenant_uids"] else {}
        rules = Rules(read_ceilings(params["limits"], params["ceiling"]), tuple(params["egress_allow"]))
        return Options(root=params["root"], image=params["image"], slots=slots, tenant_limit=params["tenant_limit"],
                       max_upload=parse_size(params["max_upload"]), instance=params["instance"],
                       memory=params["memory"] or None, cpus=parse_cpus(params["cpus"]), pids=params["pids"],
                       shm_size=params["shm_size"], network=params["network"], stop_grace=params["stop_grace"],
                       labels=parse_labels(params["label"]), userns_offset=params["userns_offset"],
                       tenant_quota=parse_size(params["tenant_quota"]) if params["tenant_quota"] else None,
                       max_files=params["max_files"], disk_check_seconds=params["disk_check_seconds"],
                       tmp_size=params["tmp_size"],
                       tenant_queue=params["tenant_queue"], max_request=parse_size(params["max_request"]),
                       time_limit=parse_duration(params["job_time_limit"]), max_requeues=params["max_requeues"],
                       rules=rules, metrics_token=_metrics_token(params["metrics_token_file"]), **extra)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _metrics_token(path):
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if len(token) < 16:
        raise ValueError(f"--metrics-token-file {path}: the token in it is shorter than 16 characters")
    return token


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
@click.option("--cpus", default="auto", show_default=True,
              help="Each job's CPU limit: a number of CPUs, auto (the engine's CPUs divided among the slots) or none.")
@click.option("--tmp-size", default="2g", show_default=True,
              help="Each job's /tmp, in memory; the rest of its root file system is read-only.")
@click.option("--pids", default=4096, show_default=True, type=int, help="Each job's process limit.")
@click.option("--shm-size", default="1g", show_default=True, help="Each job's /dev/shm (NVIDIA's TF1 advice).")
@click.option("--network", default="bridge", show_default=True,
              help="Jobs' network: 'bridge' keeps them off the host's loopback; 'host' only where there is no bridge.")
@click.option("--tenant-uids", metavar="FIRST-LAST",
              help="Each tenant's uid and gid, given at `tenant add`, from this range; needs root "
                   "[default: 200000-299999 as root; without root every job runs as the service's own user].")
@click.option("--userns-offset", default=0, show_default=True, type=click.IntRange(0),
              help="With dockerd's userns-remap: the first subordinate uid of its remap user (/etc/subuid).")
@click.option("--tenant-quota", metavar="SIZE", help="Disk a tenant's directory may hold, e.g. 50G "
                                                     "[default: none]; `tenant quota NAME SIZE` sets one tenant's.")
@click.option("--max-files", default=10000, show_default=True, type=click.IntRange(1),
              help="Files a tenant's sources/ may hold.")
@click.option("--disk-check-seconds", default=60.0, show_default=True, type=click.FloatRange(0.5),
              help="How often running jobs' tenants' disk use is measured against their quota.")
@click.option("--job-user", hidden=True, help="Gone: see --tenant-uids.")
@click.option("--stop-grace", default=120, show_default=True, type=int,
              help="Seconds a cancelled job has to stop cleanly before it is killed.")
@click.option("--job-time-limit", default="48h", show_default=True,
              help="How long a job may run (its runs since it was submitted or resumed); then it is stopped, keeps "
                   "its checkpoint and fails. 90m, 48h, 2d; none for no limit.")
@click.option("--max-requeues", default=3, show_default=True, type=click.IntRange(0),
              help="Times in a row a job stopped by the infrastructure (an engine restart) is queued again to resume.")
@click.option("--tenant-queue", default=50, show_default=True, type=click.IntRange(1),
              help="Jobs of one tenant waiting in the queue at once.")
@click.option("--max-request", default="1M", show_default=True,
              help="Largest request body (uploads have --max-upload).")
@click.option("--limits", type=click.Path(dir_okay=False, exists=True),
              help="A TOML file of ceilings on jobs' costly settings (train.epochs = 500); docs/service.md lists them.")
@click.option("--ceiling", multiple=True, metavar="KEY=VALUE",
              help="A ceiling on a job setting, e.g. train.epochs=500 (after --limits).")
@click.option("--egress-allow", multiple=True, metavar="HOST[:PORT]|ADDRESS|NETWORK",
              help="A non-public address jobs' downloads may reach (an internal mirror); jobs reach public ones only.")
@click.option("--metrics-token-file", type=click.Path(dir_okay=False, exists=True),
              help="A file holding the bearer token /metrics asks for; without it /metrics is off.")
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
    from dstrain.service.tenants import give_uids

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("dstrain.service")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not into the pipeline's "dstrain" logger and its console
    layout = _layout(options.root)
    store = Store(layout.db)
    give_uids(store, layout, options)  # tenants of an earlier version, before any of their jobs starts
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
    from dstrain.service.lifecycle import audit
    from dstrain.service.tenants import add_tenant

    store, layout = _store_and_layout(params)
    try:
        found, token = add_tenant(store, layout, _options(params), name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    audit(layout, f"tenant {found.id} ({name}) added, uid {found.uid}")
    uid = f", uid {found.uid}" if found.uid is not None else ""
    click.echo(f"tenant {name}: id {found.id}{uid}, data in {layout.tenant(found.id)}")
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
    """Every tenant: id, name, uid, state, disk in use out of its quota, created (measures each directory)."""
    from dstrain.service.quotas import disk_in_use, human, quota_of
    from dstrain.service.tenantfs import NotFound

    store, layout = _store_and_layout(params)
    options = _options(params)
    for found in store.tenants():
        try:
            used = human(disk_in_use(layout, found.id))
        except NotFound:
            used = "no directory"
        quota = quota_of(options, found)
        state = f"disabled since {found.disabled}" if found.disabled else "enabled"
        click.echo(f"{found.id}  {found.name}  uid {found.uid if found.uid is not None else '-'}  {state}  "
                   f"disk {used} of {human(quota) if quota is not None else 'no quota'}  created {found.created}")


def _lifecycle(action, *args):
    try:
        return action(*args)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@tenant.command("disable")
@click.argument("name")
@click.pass_obj
def tenant_disable(params, name):
    """Disable tenant NAME: its token is refused at once, its queued jobs are cancelled, and the running
    service stops its running jobs (with the grace period) on its next pass."""
    from dstrain.service import lifecycle

    store, layout = _store_and_layout(params)
    running = _lifecycle(lifecycle.disable, store, layout, name)
    click.echo(f"tenant {name} disabled" + (f"; the service stops its running jobs: {', '.join(running)}"
                                             if running else ""))


@tenant.command("enable")
@click.argument("name")
@click.pass_obj
def tenant_enable(params, name):
    """Enable tenant NAME again (its cancelled jobs stay cancelled; it can resume them)."""
    from dstrain.service import lifecycle

    store, layout = _store_and_layout(params)
    _lifecycle(lifecycle.enable, store, layout, name)
    click.echo(f"tenant {name} enabled")


@tenant.command("quota")
@click.argument("name")
@click.argument("size")
@click.pass_obj
def tenant_quota(params, name, size):
    """Set tenant NAME's disk quota to SIZE (e.g. 200G), or back to the host's with 'default'."""
    from dstrain.service import lifecycle
    from dstrain.service.options import parse_size

    store, layout = _store_and_layout(params)
    quota = None if size == "default" else _lifecycle(parse_size, size)
    _lifecycle(lifecycle.set_quota, store, layout, name, quota)
    click.echo(f"tenant {name}: quota {size}")


@tenant.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Stop its running jobs (with the grace period) instead of refusing.")
@click.pass_obj
def tenant_remove(params, name, force):
    """Remove tenant NAME: its jobs, its directory and everything in it, its rows in the store."""
    from dstrain.service import lifecycle
    from dstrain.service.docker_launcher import DockerLauncher

    store, layout = _store_and_layout(params)
    options = _options(params)
    try:
        lifecycle.remove(store, layout, name, force, lambda: DockerLauncher(options), options.stop_grace,
                         say=click.echo)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tenant {name} removed, with its data")
