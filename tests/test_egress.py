"""Egress: with network.block_private, a run's downloads reach public addresses only, checked at connect time
after DNS and after every redirect, with named exceptions.  Real runs of `dstrain run` against real local HTTP
servers; the servers' own request logs prove that nothing was fetched from a refused one.
(tests/test_service_egress.py runs the same through the service.)"""
import importlib.util
import shutil

import pytest

from dstrain.pipeline.settings import Settings
from dstrain.pipeline.sources.egress import Policy, parse_exception, special
from tests.conftest import RELEASE, clean_env, dstrain, sha256, write_config
from tests.http_server import FileServer

NAME = f"{RELEASE}-fr.tar.gz"


def redirect(server: FileServer, path: str, target: str) -> None:
    def send(handler):
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    server.api_handlers[("GET", path)] = send


def port(server: FileServer) -> int:
    return server.httpd.server_address[1]


@pytest.fixture()
def two_servers(cv_archive, tmp_path):
    """A: the one the run may reach (its exception); B: a loopback server it may not, serving the same file."""
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(cv_archive, www / NAME)
    with FileServer(www) as allowed, FileServer(www) as forbidden:
        yield allowed, forbidden


def run_download(tmp_path, url, allow=(), extra_env=None):
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=url)
    env = clean_env(DSTRAIN_NETWORK__BLOCK_PRIVATE="true", DSTRAIN_NETWORK__ALLOW=",".join(allow),
                    **(extra_env or {}))
    return data, dstrain("run", "-l", "fr", "--config", config, "--to", "download", env=env, check=False)


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "a loopback address"), ("::1", "a loopback address"),
    ("169.254.169.254", "a link-local address"), ("fe80::1%eth0", "a link-local address"),
    ("10.1.2.3", "a private address"), ("192.168.0.10", "a private address"), ("172.16.5.4", "a private address"),
    ("fd00::1", "a private address"), ("100.64.0.1", "an address that is not public"),
    ("224.0.0.251", "a multicast address"), ("0.0.0.0", "an unspecified address"), ("::", "an unspecified address"),
    ("::ffff:127.0.0.1", "a loopback address inside an IPv6 one"),
    ("::ffff:169.254.169.254", "a link-local address inside an IPv6 one"),
    ("2002:a9fe:a9fe::1", "a link-local address inside an IPv6 one"),  # 6to4 of 169.254.169.254
    ("64:ff9b::a00:1", "a private address inside an IPv6 one"),  # NAT64 of 10.0.0.1
    ("8.8.8.8", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_special_addresses_are_named(address, kind):
    assert special(address) == kind


def test_exceptions_name_a_host_a_port_an_address_or_a_network():
    policy = Policy(True, ("mirror.internal:8080", "10.1.2.3", "10.8.0.0/16", "[fd00::1]:443", "cache.lan"))
    assert policy.refusal("mirror.internal", 8080, "10.9.9.9") is None
    assert "port 8081" in policy.refusal("mirror.internal", 8081, "10.9.9.9")
    assert policy.refusal("any.name", 80, "10.1.2.3") is None and policy.refusal("x", 80, "10.8.200.1") is None
    assert policy.refusal("x", 80, "::ffff:10.1.2.3") is None  # the same address, mapped
    assert policy.refusal("x", 443, "fd00::1") is None and policy.refusal("x", 80, "fd00::1")
    assert policy.refusal("CACHE.lan.", 1234, "192.168.1.1") is None
    assert "which is 127.0.0.1" in policy.refusal("localhost", 80, "127.0.0.1")
    assert Policy(False).refusal("localhost", 80, "127.0.0.1") is None  # `dstrain run`'s default: a LAN mirror works
    for bad in ("a b", "host:0", "host:99999", "/8", "ex ample.org"):
        with pytest.raises(ValueError):
            parse_exception(bad)
    with pytest.raises(ValueError, match="network.allow"):
        Settings(network={"allow": ["host:http"]})


def test_a_loopback_url_is_refused_and_fetches_nothing(two_servers, tmp_path):
    _, forbidden = two_servers
    data, proc = run_download(tmp_path, f"{forbidden.url}/{NAME}")
    assert proc.returncode == 1
    assert f"refused to connect to 127.0.0.1 port {port(forbidden)}: a loopback address" in proc.stderr
    assert forbidden.requests == [] and not (data / "sources" / NAME).exists()


def test_a_redirect_to_a_refused_address_fetches_nothing_there(two_servers, tmp_path):
    """The exception is A, address and port; its redirect to another port of the same loopback is not."""
    allowed, forbidden = two_servers
    for target in (f"{forbidden.url}/{NAME}", f"http://localhost:{port(forbidden)}/{NAME}"):
        allowed.requests.clear()
        redirect(allowed, "/moved", target)
        data, proc = run_download(tmp_path, f"{allowed.url}/moved", allow=[f"127.0.0.1:{port(allowed)}"])
        assert proc.returncode == 1, proc.stderr
        assert f"port {port(forbidden)}: a loopback address" in proc.stderr, proc.stderr
        assert [r["path"] for r in allowed.requests] == ["/moved"]
        assert forbidden.requests == [] and not list((data / "sources").glob(NAME + "*"))


def test_an_allowed_exception_downloads(two_servers, tmp_path):
    allowed, _ = two_servers
    data, proc = run_download(tmp_path, f"{allowed.url}/{NAME}", allow=[f"127.0.0.1:{port(allowed)}"])
    assert proc.returncode == 0, proc.stderr
    assert sha256(data / "sources" / NAME) == sha256(allowed.root / NAME)


@pytest.mark.skipif(importlib.util.find_spec("datacollective") is None, reason="needs dstrain[mdc]")
def test_the_data_collective_client_is_held_too(two_servers, tmp_path):
    """Its own requests calls (not fetch.py's session) meet the same check."""
    _, forbidden = two_servers
    forbidden.reply_json("GET", "/api/datasets/cv-fr", {"id": "cv-fr", "filename": NAME})
    data, proc = run_download(tmp_path, None, extra_env={
        "MDC_API_KEY": "k", "MDC_API_URL": forbidden.url + "/api", "HOME": str(tmp_path),
        "DSTRAIN_DATASET__COMMON_VOICE__MDC_DATASET_ID": "cv-fr"})
    assert proc.returncode == 1 and "a loopback address" in proc.stderr, proc.stderr
    assert forbidden.requests == []
