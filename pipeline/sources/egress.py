"""Where downloads may connect: with ``network.block_private``, to public addresses only, checked as each
connection is made.

A URL's host is resolved once, each address it resolves to is checked, and the socket connects to an
address that passed; the name is not resolved again between the check and the connection, so a DNS answer
that changes in between (rebinding) cannot slip a private address in, and the address the socket really
reached is checked once more.  urllib3 keeps the host name for the Host header and TLS's SNI.  A redirect
opens a new connection, checked the same way.  The check is installed where urllib3 opens its sockets, so
every HTTP client of the run built on it is covered: the downloads of datasets and LM texts (fetch.py) and
the Mozilla Data Collective's client.

Refused: loopback, link-local (169.254.169.254, the clouds' metadata service), private, shared (CGNAT),
multicast, reserved, unspecified and every other address that is not global, IPv4 addresses inside IPv6
ones (::ffff:127.0.0.1, 6to4, NAT64) by the IPv4 address they carry.  ``network.allow`` names exceptions:
a host name (its addresses, whatever they are), host:port, an address, or a network.

No well-kept library does this on the image's Python 3.8 (requests-hardened and ssrfguard need 3.10).
"""
import contextlib
import errno
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple, Union
from urllib.parse import urlsplit

import urllib3.util.connection

from dstrain.pipeline.errors import Portable

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: What each kind of special address is called, in the order they are told.
_KINDS = (("is_unspecified", "an unspecified address"), ("is_loopback", "a loopback address"),
          ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
          ("is_private", "a private address"), ("is_reserved", "a reserved address"))


def special(address: str) -> Optional[str]:
    """What makes ``address`` one a download may not reach ("a loopback address"), or None for a public one."""
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (%eth0) names no other address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64
                                                   else None)
        if inner is not None:
            found = special(str(inner))
            return f"{found} inside an IPv6 one" if found else None
        if ip.teredo:
            return "a Teredo tunnel address"
    for test, kind in _KINDS:
        if getattr(ip, test):
            return kind
    return None if ip.is_global else "an address that is not public"


@dataclass(frozen=True)
class _Exception:
    """One entry of network.allow."""

    name: Optional[str] = None
    network: Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = None
    port: Optional[int] = None

    def covers(self, host: str, port: int, address: str) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return host.lower().rstrip(".") == self.name
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        inner = getattr(ip, "ipv4_mapped", None)
        return ip in self.network or (inner is not None and inner in self.network)


def parse_exception(entry: str) -> _Exception:
    """'mirror.internal:8080', 'mirror.internal', '10.1.2.3', '[fd00::1]:443', '10.8.0.0/16' -> an exception;
    ValueError for anything else."""
    text = entry.strip()
    if "/" in text:
        return _Exception(network=ipaddress.ip_network(text, strict=False))
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (rest or None)
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"network.allow {entry!r}: the port must be a number from 1 to 65535")
    number = int(port) if port is not None else None
    try:
        return _Exception(network=ipaddress.ip_network(host), port=number)
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if not re.match(r"^[a-z0-9_]([a-z0-9_-]{0,62}\.)*[a-z0-9_-]{0,63}$", name):
        raise ValueError(f"network.allow {entry!r}: give a host name, host:port, an address or a network")
    return _Exception(name=name, port=number)


@dataclass(frozen=True)
class Policy:
    block_private: bool = False
    allow: Tuple[str, ...] = ()
    _exceptions: Tuple[_Exception, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_exceptions", tuple(parse_exception(entry) for entry in self.allow))

    @classmethod
    def of(cls, network) -> "Policy":
        """From the settings' network section."""
        return cls(network.block_private, tuple(network.allow))

    def refusal(self, host: str, port: int, address: str) -> Optional[str]:
        """Why a connection to ``address`` (``host``'s, on ``port``) is refused, or None when it may be made."""
        if not self.block_private:
            return None
        kind = special(address)
        if kind is None or any(entry.covers(host, port, address) for entry in self._exceptions):
            return None
        shown = host if host == address else f"{host}, which is {address},"
        # No quotes or brackets: fetch.py shows an OSError's text up to the first of them.
        return (f"refused to connect to {shown} port {port}: {kind}. Downloads here may reach public addresses "
                "only; network.allow names the exceptions")

    def check_url(self, url: str) -> Optional[str]:
        """Why ``url``'s host may not be reached, from what its name resolves to now; None when it may (or when it
        does not resolve: the connection's own check then decides)."""
        if not self.block_private:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [host] if _is_address(host) else _resolve(host, port)
        except OSError:
            return None
        return next((why for why in (self.refusal(host, port, a) for a in addresses) if why), None)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> List[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)]


class Refused(Portable, ConnectionRefusedError):
    """A connection the policy does not allow; never attempted.  A refused connection (ECONNREFUSED) to
    whoever reads it, so a download gives up at once instead of retrying.  Portable: it may cross a process
    boundary (errors.py)."""

    def __init__(self, why: str):
        super().__init__(errno.ECONNREFUSED, why)


_current: Optional[Policy] = None
_lock = threading.Lock()
_connect = urllib3.util.connection.create_connection


def _guarded(address, *args, **kwargs):
    """urllib3's create_connection, to an address the policy allows, resolved once."""
    policy = _current
    if policy is None or not policy.block_private:
        return _connect(address, *args, **kwargs)
    host, port = address
    host = host.strip("[]")
    refused, failed = None, None
    for candidate in ([host] if _is_address(host) else _resolve(host, port)):
        why = policy.refusal(host, port, candidate)
        if why:
            refused = refused or why
            continue
        try:
            sock = _connect((candidate, port), *args, **kwargs)  # an address: nothing resolved again
        except OSError as exc:
            failed = exc
            continue
        why = policy.refusal(host, port, sock.getpeername()[0])
        if why:
            sock.close()
            raise Refused(why)
        return sock
    if failed is not None:
        raise failed
    raise Refused(refused or f"{host} resolves to no address")


@contextlib.contextmanager
def enforced(policy: Policy) -> Iterator[None]:
    """Every connection urllib3 opens in this process, while in this block, follows ``policy``.

    Process-wide rather than per thread: a client that downloads in a thread of its own is held too.
    """
    global _current
    with _lock:
        previous, _current = _current, policy
        urllib3.util.connection.create_connection = _guarded
    try:
        yield
    finally:
        with _lock:
            _current = previous
