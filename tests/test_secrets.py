"""Secrets by value: credentials in URLs and the values of known secrets never reach a file or the console."""
import importlib.util
import json

import pytest

from dstrain.pipeline.redaction import redact
from tests.conftest import RELEASE, clean_env, dstrain, write_config

NAME = f"{RELEASE}-fr.tar.gz"
PASSWORD, TOKEN, KEY = "hunter2-pass", "s3cr3t-token-value", "mdc-secret-key-987654"


@pytest.fixture()
def server(served):
    return served[0]


def holding(root, *secrets):
    """Every file under ``root`` that holds one of ``secrets``, byte for byte."""
    return [str(p) for p in root.rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)]


def test_credentials_in_a_url_are_in_no_record_log_or_message(server, tmp_path):
    url = server.url.replace("http://", f"http://bob:{PASSWORD}@") + f"/{NAME}?token={TOKEN}&v=2"
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data, url=url)
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "import")
    shown = dstrain("config", "-l", "fr", "--config", config).stdout
    assert holding(data, PASSWORD, TOKEN) == []  # config.json, manifest.json, .verified.json, logs...
    assert PASSWORD not in proc.stderr + proc.stdout + shown and TOKEN not in proc.stderr + proc.stdout + shown
    manifest = json.loads((data / "imported" / "fr" / "common_voice" / "manifest.json").read_text())
    assert manifest["source"]["url"] == server.url.replace("http://", "http://<redacted>@") + \
        f"/{NAME}?token=<redacted>&v=2"
    assert json.loads((data / "sources" / (NAME + ".verified.json")).read_text())["origin"] == \
        manifest["source"]["url"]
    assert server.requests[-1]["Authorization"].startswith("Basic ")  # the credentials still went to the server

    moved = url.replace(NAME, "moved.tar.gz")
    (data / "sources" / NAME).unlink()
    config = write_config(tmp_path / "c.toml", data, url=moved)
    failed = dstrain("run", "-l", "fr", "--config", config, "--to", "download", check=False)
    assert failed.returncode == 1 and "answered HTTP 404" in failed.stderr
    assert PASSWORD not in failed.stderr and TOKEN not in failed.stderr and "token=<redacted>" in failed.stderr
    assert holding(data, PASSWORD, TOKEN) == []


@pytest.mark.skipif(importlib.util.find_spec("datacollective") is None, reason="needs dstrain[mdc]")
def test_an_mdc_error_that_echoes_the_key_does_not_log_it(server, tmp_path):
    def echo_headers(handler):  # a server error page that repeats the request, as a misconfigured proxy's does
        body = json.dumps({"message": f"upstream failed for request with headers {dict(handler.headers)}"}).encode()
        handler.send_response(500)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.reply_json("GET", "/api/datasets/cv-fr", {"id": "cv-fr", "filename": NAME})
    server.api_handlers[("POST", "/api/datasets/cv-fr/download")] = echo_headers
    data = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data)
    env = clean_env(MDC_API_KEY=KEY, MDC_API_URL=server.url + "/api", HOME=str(tmp_path),
                    DSTRAIN_DATASET__COMMON_VOICE__MDC_DATASET_ID="cv-fr")
    proc = dstrain("run", "-l", "fr", "--config", config, "--to", "download", env=env, check=False)
    assert proc.returncode == 1 and "Mozilla Data Collective download of cv-fr failed" in proc.stderr
    assert "Bearer <redacted>" in proc.stderr  # the echo is there, without the key
    assert KEY not in proc.stderr + proc.stdout and holding(data, KEY) == []


def test_redaction_of_urls_headers_and_known_values(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijkl")
    text = ("GET https://u:p%40ss@host.example/a.tgz?X-Amz-Signature=abc123&X-Amz-Date=2026 "
            "Authorization: Bearer eyJhbGciOi.xyz token hf_abcdefghijkl; see http://plain.example/x?page=2")
    assert redact(text) == ("GET https://<redacted>@host.example/a.tgz?X-Amz-Signature=<redacted>&X-Amz-Date=2026 "
                            "Authorization: Bearer <redacted> token <redacted>; see http://plain.example/x?page=2")
