"""`dstrain serve`: the HTTP API with its scheduler, and `dstrain serve tenant ...` to manage tenants.

The dstrain command finds this group through the entry-point group ``dstrain.commands`` (pipeline/cli.py),
so the pipeline never imports the service.  Only click, the standard library and the launchers' flags
(launchers.py) are imported here at load time: the web stack and the Docker SDK (the ``service`` extra) are
imported when the server starts.
"""
import logging
import sys

import click

from dstrain.service.launchers import SectionedGroup, flags_of_others, kinds

#: Every launcher installed (entry-point group dstrain.launchers): their flags are `dstrain serve`'s too.
LAUNCHERS = kinds()


def _options(params: dict):
    """The service's own settings (each launcher's are its own: _launcher)."""
    from dstrain.service.options import Options, parse_uid_range
    from dstrain.service.rules import Rules, read_ceilings
    from dstrain.service.units import parse_duration, parse_size

    if params["job_user"]:
        raise click.BadParameter("--job-user is gone: as root, each tenant's jobs run as its own uid from "
                                 "--tenant-uids; a service that is not root runs them as its own user "
                                 "(docs/service.md, \"Running it for strangers\")")
    try:
        extra = {"tenant_uids": parse_uid_range(params["tenant_uids"])} if params["tenant_uids"] else {}
        rules = Rules(read_ceilings(params["limits"], params["ceiling"]), tuple(params["egress_allow"]))
        return Options(root=params["root"], tenant_limit=params["tenant_limit"],
                       max_upload=parse_size(params["max_upload"]), instance=params["instance"],
                       stop_grace=params["stop_grace"], userns_offset=params["userns_offset"],
                       tenant_quota=parse_size(params["tenant_quota"]) if params["tenant_quota"] else None,
                       max_files=params["max_files"], disk_check_seconds=params["disk_check_seconds"],
                       tenant_queue=params["tenant_queue"], max_request=parse_size(params["max_request"]),
                       time_limit=parse_duration(params["job_time_limit"]), max_requeues=params["max_requeues"],
                       rules=rules, metrics_token=_metrics_token(params["metrics_token_file"]), **extra)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _launcher(params: dict, options):
    """The launcher --launcher names, made with its own flags."""
    kind = LAUNCHERS[params["launcher"]]
    try:
        return kind.create(params, options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(f"--launcher {kind.name}: {exc}") from None


def _metrics_token(path):
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if len(token) < 16:
        raise ValueError(f"--metrics-token-file {path}: the token in it is shorter than 16 characters")
    return token


@click.group(cls=SectionedGroup, invoke_without_command=True)
@click.option("--launcher", type=click.Choice(sorted(LAUNCHERS)), default="docker", show_default=True,
              help="What runs the jobs: " + "; ".join(f"{name}: {kind.summary}" for name, kind in
                                                      sorted(LAUNCHERS.items())) + ". Each has its own flags, below.")
@click.option("--root", default="dstrain-service", show_default=True, type=click.Path(file_okay=False),
              help="The service's data: service.db and tenants/<id>/ (each tenant's data root). Under docker compose, "
                   "the same path on the host and in the container.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Put a reverse proxy with TLS in front (docs/service.md).")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--tenant-limit", default=1, show_default=True, type=click.IntRange(1),
              help="Jobs of one tenant running at once.")
@click.option("--max-upload", default="50G", show_default=True, help="Largest upload.")
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
              help="This service's name on the engine or cluster: its runs carry it, a restart finds them by it.")
@click.pass_context
def serve(ctx, **params):
    """Train as a service: an HTTP API where tenants upload data, submit jobs and download models.

    \b
    dstrain serve --slots 2 --image dstrain:latest       the API on http://127.0.0.1:8080 (docs at /docs)
    dstrain serve --launcher slurm --gpus-per-job 1      jobs on a Slurm cluster (docs/service.md, "Slurm")
    dstrain serve tenant add acme                        a tenant and its token, shown once
    See docs/service.md.
    """
    chosen = LAUNCHERS[params["launcher"]]
    given = [name for name in params if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    others = flags_of_others(chosen, [kind for kind in LAUNCHERS.values() if kind is not chosen], given)
    if others:
        raise click.UsageError(f"{', '.join(others)}: not a flag of --launcher {chosen.name} (another launcher's)")
    ctx.obj = params
    if ctx.invoked_subcommand is None:
        _run(params, params["host"], params["port"])


def _run(params: dict, host: str, port: int) -> None:
    import uvicorn

    from dstrain.service.api import create_app
    from dstrain.service.scheduler import Scheduler
    from dstrain.service.store import Store
    from dstrain.service.tenants import give_uids

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("dstrain.service")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not into the pipeline's "dstrain" logger and its console
    options = _options(params)
    layout = _layout(options.root)
    launcher = _launcher(params, options)
    try:
        launcher.preflight(layout.root)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    store = Store(layout.db)
    give_uids(store, layout, options)  # tenants of an earlier version, before any of their jobs starts
    app = create_app(store, layout, options, Scheduler(store, launcher, layout, options))
    slots = f"slots {', '.join(slot.name for slot in launcher.slots)}" if launcher.slots is not None else \
        f"jobs queued in the {launcher.engine_noun}"
    logger.info("launcher %s: %s; data in %s", params["launcher"], slots, layout.root)
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
    from dstrain.service.units import parse_size

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

    store, layout = _store_and_layout(params)
    options = _options(params)
    try:
        lifecycle.remove(store, layout, name, force, lambda: _launcher(params, options), options.stop_grace,
                         say=click.echo)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"tenant {name} removed, with its data")


# Each launcher's flags, once each (the job containers' serve two launchers), in their sections of --help.
serve.params.extend({id(option): option for kind in LAUNCHERS.values() for option in kind.options}.values())
