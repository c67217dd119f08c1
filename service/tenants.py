"""Tenants and their tokens.

A token is ``<tenant-id>.<secret>``: the id finds the tenant, the secret is checked against its stored hash
in constant time.  The secret is 256 random bits, so a plain SHA-256 is enough to store it: a slow password
hash defends guessable secrets, and these cannot be guessed.  Only the hash is kept; the token is shown
once, by `dstrain serve tenant add`.
"""
import hashlib
import hmac
import os
import secrets
from typing import Optional, Tuple

from dstrain.service.layout import Layout
from dstrain.service.store import Store, Tenant


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(tenant_id: str) -> Tuple[str, str]:
    """(token, its hash)."""
    secret = secrets.token_urlsafe(32)
    return f"{tenant_id}.{secret}", _hash(secret)


def authenticate(store: Store, token: Optional[str]) -> Optional[Tenant]:
    if not token or "." not in token:
        return None
    tenant_id, secret = token.split(".", 1)
    tenant = store.tenant(tenant_id)
    # Compared even when the tenant is unknown, so the time taken does not tell whether an id exists.
    stored = tenant.token_hash if tenant else "0" * 64
    return tenant if hmac.compare_digest(_hash(secret), stored) and tenant else None


def make_private_dir(path, uid_gid: Tuple[int, int]) -> None:
    """A directory only its owner enters; the jobs' user owns it when the service runs as root."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    give_to_jobs(path, uid_gid)


def give_to_jobs(path, uid_gid: Tuple[int, int]) -> None:
    """Files the service writes for a job belong to the job's user, who must write beside them."""
    if os.geteuid() == 0:
        os.chown(str(path), *uid_gid)


def add_tenant(store: Store, layout: Layout, name: str, uid_gid: Tuple[int, int]) -> Tuple[Tenant, str]:
    if store.tenant_named(name):
        raise ValueError(f"a tenant named {name!r} exists; `dstrain serve tenant token {name}` gives it a new token")
    tenant_id = "t-" + secrets.token_hex(8)
    token, token_hash = new_token(tenant_id)
    for path in (layout.tenant(tenant_id), layout.sources(tenant_id), layout.tenant(tenant_id) / "jobs"):
        make_private_dir(path, uid_gid)
    store.add_tenant(tenant_id, name, token_hash)
    return store.tenant(tenant_id), token


def rotate_token(store: Store, name: str) -> str:
    """A new token for the tenant; the old one stops working at once."""
    tenant = store.tenant_named(name)
    if tenant is None:
        raise ValueError(f"no tenant named {name!r}")
    token, token_hash = new_token(tenant.id)
    store.set_token(name, token_hash)
    return token
