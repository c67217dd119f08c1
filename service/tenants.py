"""Tenants: their tokens, their uids and directories.

A token is ``<tenant-id>.<secret>``: the id finds the tenant, the secret is checked against its stored hash
in constant time.  The secret is 256 random bits, so a plain SHA-256 is enough to store it: a slow password
hash defends guessable secrets, and these cannot be guessed.  Only the hash is kept; the token is shown
once, by `dstrain serve tenant add`.
"""
import hashlib
import hmac
import logging
import os
import secrets
from typing import Optional, Tuple

from dstrain.service import tenantfs
from dstrain.service.layout import Layout
from dstrain.service.options import Options
from dstrain.service.store import Store, Tenant

log = logging.getLogger("dstrain.service")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(tenant_id: str) -> Tuple[str, str]:
    """(token, its hash)."""
    secret = secrets.token_urlsafe(32)
    return f"{tenant_id}.{secret}", _hash(secret)


def authenticate(store: Store, token: Optional[str]) -> Optional[Tenant]:
    """The token's tenant, read from the store at each request (a tenant the host disabled a moment ago
    included: check ``disabled``); None for a bad token."""
    if not token or "." not in token:
        return None
    tenant_id, secret = token.split(".", 1)
    tenant = store.tenant(tenant_id)
    # Compared even when the tenant is unknown, so the time taken does not tell whether an id exists.
    stored = tenant.token_hash if tenant else "0" * 64
    return tenant if hmac.compare_digest(_hash(secret), stored) and tenant else None


def owner(options: Options, tenant: Tenant) -> Optional[Tuple[int, int]]:
    """The host's uid and gid the tenant's files belong to; None where the service runs every job as its own
    user (it is not root), so its files are the service's own."""
    if tenant.uid is None:
        return None
    host = tenant.uid + options.userns_offset
    return host, host


def container_user(options: Options, tenant: Tenant) -> str:
    """``uid:gid`` the tenant's containers run as: its own uid, or the service's own user's (never root)."""
    if tenant.uid is not None:
        return f"{tenant.uid}:{tenant.uid}"
    if os.geteuid() == 0:
        raise ValueError(f"tenant {tenant.id} has no uid yet; the service gives it one when it starts")
    return f"{os.getuid()}:{os.getgid()}"


def prepare_dir(layout: Layout, options: Options, tenant: Tenant) -> None:
    """The tenant's directory, its uid's with mode 0700, with sources/ and jobs/ in it.

    ``tenants/`` is the service's (0711: a job's uid may pass, never list or write), so no job can swap the
    tenant's directory itself; below it everything goes through tenantfs.
    """
    layout.tenants.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(str(layout.tenants), 0o711)  # an earlier version made it 0755: anyone could list the tenants
    try:
        os.mkdir(str(layout.tenant(tenant.id)), 0o700)
    except FileExistsError:
        pass
    with tenantfs.Tree(layout.tenant(tenant.id)) as tree:
        os.fchmod(tree.fd, 0o700)
        tenantfs.give(tree.fd, owner(options, tenant))
        for directory in ("sources", "jobs"):
            os.close(tree.make_dirs(directory, owner(options, tenant)))


def add_tenant(store: Store, layout: Layout, options: Options, name: str) -> Tuple[Tenant, str]:
    if store.tenant_named(name):
        raise ValueError(f"a tenant named {name!r} exists; `dstrain serve tenant token {name}` gives it a new token")
    tenant_id = "t-" + secrets.token_hex(8)
    token, token_hash = new_token(tenant_id)
    store.add_tenant(tenant_id, name, token_hash)
    if options.tenant_uids:
        store.give_uid(tenant_id, *options.tenant_uids)
    tenant = store.tenant(tenant_id)
    prepare_dir(layout, options, tenant)
    return tenant, token


def give_uids(store: Store, layout: Layout, options: Options) -> None:
    """Give a uid to each tenant without one (made by an earlier version, or by a service that was not root),
    and its directory, everything in it, to that uid: run as the service starts, before any job."""
    if not options.tenant_uids:
        return
    for tenant in store.tenants():
        if tenant.uid is not None:
            continue
        store.give_uid(tenant.id, *options.tenant_uids)
        tenant = store.tenant(tenant.id)
        prepare_dir(layout, options, tenant)
        with tenantfs.Tree(layout.tenant(tenant.id)) as tree:
            kept = tree.chown_all(owner(options, tenant))
        log.info("tenant %s: uid %d, its directory given to it%s", tenant.id, tenant.uid,
                 f" ({kept} files with other hard links left as they were)" if kept else "")


def rotate_token(store: Store, name: str) -> str:
    """A new token for the tenant; the old one stops working at once."""
    tenant = store.tenant_named(name)
    if tenant is None:
        raise ValueError(f"no tenant named {name!r}")
    token, token_hash = new_token(tenant.id)
    store.set_token(name, token_hash)
    return token
