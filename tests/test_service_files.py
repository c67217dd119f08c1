"""No file outside the tenant's directory, ever: a real `dstrain serve`, the real engine and training image, and
a process running as the tenant's uid (as its job does) that swaps the tenant's files and directories for
symlinks to another tenant's files, /etc/shadow and service.db, in a tight loop, while the tenant reads and
writes through the API.  Not one response may hold a byte of those, and nothing outside may be created,
changed or chowned.
"""
import hashlib
import json
import os
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.docker_images import deepspeech_source, engine_running
from tests.fixtures.common_voice import build_common_voice
from tests.service_harness import Client, Service, ensure_train_image, passable_dir, remove_test_containers
from tests.test_service import ARCHIVE, TRAIN_IMAGE, job_request, need_real
from tests.test_tenantfs import stop, swapper

pytestmark = pytest.mark.docker

#: Requests raced against the swapper (the issue's bar: 1,000).
REQUESTS = 1000


@pytest.fixture(scope="module")
def service():
    need_real(engine_running(), "no Docker engine answers (`docker info`)")
    need_real(deepspeech_source().is_file(), f"no DeepSpeech source at {deepspeech_source()}")
    ensure_train_image(TRAIN_IMAGE)
    remove_test_containers()
    place = passable_dir("dstrain-files-")
    svc = Service(place / "root", TRAIN_IMAGE, slots=2, extra=["--max-upload", "5M"])
    svc.place = place
    svc.tokens = {name: svc.add_tenant(name) for name in ("alice-corp", "bob-labs")}
    svc.start()
    yield svc
    svc.stop()
    remove_test_containers()
    shutil.rmtree(place)


def tenant_dir(service: Service, client: Client) -> Path:
    return service.root / "tenants" / client.session.headers["Authorization"].split()[1].split(".")[0]


def marker(name: str) -> str:
    return f"MARKER-{name}-{os.urandom(6).hex()}"


@pytest.fixture(scope="module")
def trained(service, tmp_path_factory):
    """alice's job, run through every stage (one epoch), and bob's files, each holding a marker."""
    alice, bob = (Client(service.url, service.tokens[name]) for name in ("alice-corp", "bob-labs"))
    archive = build_common_voice(tmp_path_factory.mktemp("cv"))
    with open(archive, "rb") as handle:
        assert alice.put(f"/v1/sources/{ARCHIVE}", data=handle).status_code == 201
    job_id = alice.post("/v1/jobs", json=job_request(1)).json()["id"]
    assert alice.wait(job_id, timeout=600)["state"] == "succeeded"
    markers = {}
    for name in ("README.md", "train.log", "dstrain-progress.json"):
        markers[name] = marker(f"bob-{name}")
        body = json.dumps({"best": {"marker": markers[name]}}) if name.endswith(".json") else markers[name] + "\n"
        assert bob.put(f"/v1/sources/{name}", data=body.encode()).status_code == 201
    return alice, bob, job_id, markers


def decoy_run(place: Path, job_id: str) -> Path:
    """Another tenant's run as it could look, root's alone (0700), each file holding a marker: a swapped
    directory of alice's run leads here."""
    run = place / "decoy" / "runs" / job_id
    text = marker("decoy")
    for relative, body in (("package/README.md", text), ("logs/train.log", f"{text}\n"),
                           ("config.json", json.dumps({"train.epochs": {"value": 1}})),
                           ("checkpoints/dstrain-progress.json", json.dumps({"best": {"marker": text}})),
                           ("state/train.json", "{}"), ("reports/report.html", text)):
        (run / relative).parent.mkdir(parents=True, exist_ok=True)
        (run / relative).write_text(body)
    os.chmod(place / "decoy", 0o700)
    return run, text


def test_racing_symlinks_never_lead_a_read_outside(service, trained):
    alice, bob, job_id, bob_markers = trained
    alice_dir, bob_sources = tenant_dir(service, alice), tenant_dir(service, bob) / "sources"
    run = alice_dir / "runs" / job_id
    decoy, decoy_marker = decoy_run(service.place, job_id)
    shadow = Path("/etc/shadow").read_bytes().splitlines()[0]
    forbidden = [m.encode() for m in bob_markers.values()] + [decoy_marker.encode(), shadow, b"SQLite format 3"]
    listed = {a["path"]: a for a in alice.get(f"/v1/jobs/{job_id}/artifacts").json()}
    readme = alice.get(f"/v1/jobs/{job_id}/artifacts/package/README.md").content
    model = next(path for path in listed if path.startswith("package/model_"))
    db = service.root / "service.db"
    pairs = [(run / "package" / "README.md", target) for target in (bob_sources / "README.md", Path("/etc/shadow"), db)]
    pairs += [(run / "logs" / "train.log", bob_sources / "train.log"), (run / "logs" / "train.log", db),
              (run / "checkpoints" / "dstrain-progress.json", bob_sources / "dstrain-progress.json"),
              (run / "package", bob_sources), (run / "package", decoy / "package"), (run / "logs", decoy / "logs"),
              (run / "checkpoints", decoy / "checkpoints"), (run / "state", decoy / "state"),
              (run / "config.json", decoy / "config.json"), (run, decoy), (alice_dir / "runs", decoy.parent)]
    uid = os.stat(alice_dir).st_uid
    assert uid == os.stat(run / "package" / "README.md").st_uid  # the job's own uid wrote the run

    requests = [(f"/v1/jobs/{job_id}/artifacts/package/README.md", {}),
                (f"/v1/jobs/{job_id}/artifacts/{model}", {"headers": {"Range": "bytes=0-99"}}),
                (f"/v1/jobs/{job_id}/artifacts", {}), (f"/v1/jobs/{job_id}/log", {}),
                (f"/v1/jobs/{job_id}/log", {"params": {"follow": "true"}}), (f"/v1/jobs/{job_id}/progress", {})]

    local = threading.local()

    def ask(i):
        if not hasattr(local, "client"):  # a session per thread: requests' sessions are not shared safely
            local.client = Client(service.url, service.tokens["alice-corp"])
        path, kwargs = requests[i % len(requests)]
        reply = local.client.get(path, **kwargs)
        return path, kwargs, reply.status_code, reply.content, dict(reply.headers)

    racing = swapper(uid, pairs, hold=0.002)
    try:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(ask, range(REQUESTS)))
    finally:
        swaps = stop(racing)

    codes = {}
    for path, _, code, body, headers in replies:
        codes[code] = codes.get(code, 0) + 1
        assert code in (200, 206, 404), (path, code, body[:300])
        assert not any(word in body or word in json.dumps(headers).encode() for word in forbidden), (path, body[:300])
        if code == 200 and path.endswith("README.md"):
            # Served and hashed from one descriptor: the bytes and their digest agree, and are alice's.
            assert body == readme and headers["x-content-sha256"] == hashlib.sha256(body).hexdigest()
        if code == 206:
            assert headers["content-range"].startswith("bytes 0-99/") and len(body) == 100
    refused = sum(1 for path, _, code, _, _ in replies if code == 404)
    print(f"{REQUESTS} requests during {swaps} swaps: {codes}; {refused} met a link and were refused; "
          "0 bytes from outside")
    assert swaps > 100 and refused and codes.get(200)
    assert alice.get(f"/v1/jobs/{job_id}/artifacts/package/README.md").content == readme  # all back in place


def _state(path: Path):
    """What a change would show: owner, mode, mtime, and the names in it."""
    status = os.lstat(path)
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), status.st_mtime_ns, sorted(os.listdir(path))


def test_write_paths_never_follow_a_link(service, trained):
    alice, _, job_id, _ = trained
    alice_dir = tenant_dir(service, alice)
    host = service.place / "host-dir"
    host.mkdir(mode=0o755)
    (host / "kept.txt").write_text("the host's")
    before = _state(host)
    jobs_before = len(alice.get("/v1/jobs").json())

    for name in ("sources", "jobs"):  # each replaced by a symlink to a host directory, as a job could
        os.rename(alice_dir / name, alice_dir / f"{name}.real")
        (alice_dir / name).symlink_to(host)
    try:
        reply = alice.put("/v1/sources/new.bin", data=b"x")
        assert reply.status_code == 409 and "not a plain directory" in reply.json()["detail"], reply.text
        assert str(service.root) not in reply.text
        assert alice.get("/v1/sources").status_code == 404
        assert alice.delete("/v1/sources/kept.txt").status_code == 404
        reply = alice.post("/v1/jobs", json=job_request(1, to="check"))
        assert reply.status_code == 409 and str(service.root) not in reply.text, reply.text
    finally:
        for name in ("sources", "jobs"):
            (alice_dir / name).unlink()
            os.rename(alice_dir / f"{name}.real", alice_dir / name)
    assert _state(host) == before and (host / "kept.txt").read_text() == "the host's"
    assert len(alice.get("/v1/jobs").json()) == jobs_before  # the refused submit queued nothing

    # The same while a process of alice's uid swaps them back and forth: every write lands inside, or is refused.
    uid = os.stat(alice_dir).st_uid
    racing = swapper(uid, [(alice_dir / "sources", host), (alice_dir / "jobs", host)], hold=0.002)
    created, codes = [], {}
    try:
        for i in range(330):  # about 1,000 requests
            replies = [alice.put(f"/v1/sources/race-{i}.bin", data=os.urandom(1000)), alice.get("/v1/sources"),
                       alice.delete(f"/v1/sources/race-{i - 1}.bin")]
            if i % 10 == 0:
                submitted = alice.post("/v1/jobs", json=job_request(1, to="check"))
                replies.append(submitted)
                if submitted.status_code == 201:
                    created.append(submitted.json()["id"])
                    alice.post(f"/v1/jobs/{created[-1]}/cancel")
            for reply in replies:
                codes[reply.status_code] = codes.get(reply.status_code, 0) + 1
                assert reply.status_code in (200, 201, 202, 204, 404, 409), reply.text
    finally:
        swaps = stop(racing)
    print(f"writes during {swaps} swaps: {codes}, {len(created)} jobs made")
    assert swaps > 100 and codes.get(409) and codes.get(201)
    assert _state(host) == before and (host / "kept.txt").read_text() == "the host's"
    for job in created:  # each made job's settings are in alice's own jobs/, hers
        settings = alice_dir / "jobs" / job / "dstrain.toml"
        assert settings.is_file() and os.stat(settings).st_uid == uid
    leftovers = [p for p in alice_dir.rglob(".upload-*")] + [p for p in alice_dir.rglob(".settings-*")]
    assert not leftovers
    for entry in (alice_dir / "sources").iterdir():
        assert entry.is_symlink() or os.stat(entry).st_uid == uid, entry
