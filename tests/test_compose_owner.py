"""`LANGUAGE=fr docker compose up` with nothing set first: no .env, no profile, as an ordinary user.

A user who is not root, in the group of the engine's socket, is made here.  They `git clone` the project (so
./data is theirs, as the repository ships it) and type the README's commands.  Nothing tells Compose who they
are: the jobs become the owner of ./data.  The stand-in bases' build settings (tests/docker_images.py) are in
the environment of their `docker compose` only, as a user's shell would give them; there is no .env.
The case where .env names UID and GID is tests/test_docker.py.
"""
import grp
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests.conftest import RELEASE, need_real
from tests.docker_images import (
    NAMESPACE,
    copy_checkout,
    deepspeech_source,
    docker,
    docker_binary,
    engine_running,
    ensure_tf1_standin,
    own,
    standin_settings,
)
from tests.fixtures.common_voice import build_common_voice
from tests.http_server import FileServer
from tests.test_deepspeech_real import ONE_SENTENCE, by_heart

pytestmark = pytest.mark.docker

SOCKET = Path("/var/run/docker.sock")
IMAGE = own("dstrain-test/owner:latest")
PROJECT = own("dstrain-owner")
#: The README's command for the CPU job: a service without a profile always runs, so it is named.
CPU_UP = ["--profile", "cpu", "up", "train-cpu"]
CONSOLE_LINES = 30


@pytest.fixture(scope="module")
def user():
    """A user of the docker group, with a home, and Compose where their docker client finds it."""
    need_real(engine_running(), "no Docker engine (tests/run.sh starts one; DEVELOPERS.md)")
    need_real(os.geteuid() == 0, "root, to make a user of the docker group")
    need_real(SOCKET.is_socket() and SOCKET.stat().st_gid != 0, f"{SOCKET} with a group of its own")
    name = "dstrain-" + re.sub(r"[^a-z0-9-]", "-", (NAMESPACE or "owner").lower())[:22]
    if subprocess.run(["id", name], capture_output=True).returncode == 0:
        subprocess.run(["userdel", name], check=True)  # a run that was killed left it
    subprocess.run(["useradd", "--user-group", "--no-create-home", "--shell", "/bin/bash", "--groups",
                    grp.getgrgid(SOCKET.stat().st_gid).gr_name, name], check=True)
    place = Path(tempfile.mkdtemp(prefix="dstrain-owner-"))
    try:
        entry = pwd.getpwnam(name)
        plugins = place / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        shutil.copy2(_compose_plugin(), str(plugins / "docker-compose"))
        (place / "home").mkdir()
        subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(place)], check=True)
        source = deepspeech_source()
        ensure_tf1_standin()
        with FileServer(source.parent) as server:
            settings = dict(standin_settings(f"{server.url}/{source.name}"), DSTRAIN_IMAGE=IMAGE,
                            COMPOSE_PROJECT_NAME=PROJECT)
            yield SimpleNamespace(name=name, uid=entry.pw_uid, gid=entry.pw_gid, place=place, settings=settings,
                                  env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(place / "home"),
                                       "USER": name, "LOGNAME": name, "LANG": "C.UTF-8",
                                       "DOCKER_CONFIG": str(place / "docker-config")})
    finally:
        subprocess.run(["userdel", name], check=False)
        shutil.rmtree(str(place), ignore_errors=True)


def _compose_plugin() -> str:
    plugins = json.loads(docker("info", "--format", "{{json .ClientInfo.Plugins}}").stdout)
    return next(plugin["Path"] for plugin in plugins if plugin["Name"] == "compose")


def as_user(user, *command, cwd=None, check=True, timeout=3600, **env) -> subprocess.CompletedProcess:
    """``command`` as ``user`` types it in a shell: their uid, gid and groups, their environment only."""
    proc = subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--",
                           *command], cwd=str(cwd) if cwd else None, env=dict(user.env, **env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {proc.returncode}\n{proc.stdout}")
    return proc


def compose(user, clone: Path, *args, check=True, build_settings=True, **env) -> subprocess.CompletedProcess:
    more = dict(user.settings, **env) if build_settings else env
    return as_user(user, docker_binary(), "compose", *args, cwd=clone, check=check, **more)


@pytest.fixture(scope="module")
def origin(user):
    """The project as a repository the user may clone."""
    repo = copy_checkout(user.place / "origin")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=str(repo), check=True, capture_output=True)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(repo)], check=True)
    return repo


def fresh_clone(user, origin: Path, name: str) -> Path:
    as_user(user, "git", "clone", "-q", str(origin), str(user.place / name))
    return user.place / name


def _containers(project: str) -> list:
    return docker("ps", "--all", "--filter", f"label=com.docker.compose.project={project}",
                  "--format", "{{.Label \"com.docker.compose.service\"}} {{.State}}").stdout.split("\n")[:-1]


def _exit_code(project: str, service: str) -> int:
    (container,) = docker("ps", "--all", "-q", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", f"label=com.docker.compose.service={service}").stdout.split()
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout)


def _snapshot(data: Path) -> dict:
    return {str(p): (p.stat().st_uid, p.stat().st_gid, p.stat().st_mtime_ns) for p in [data, *data.rglob("*")]}


def test_a_clone_has_a_data_folder_of_its_users_own(user, origin):
    data = fresh_clone(user, origin, "just-cloned") / "data"
    assert [p.name for p in data.iterdir()] == [".gitkeep"]
    assert (data.stat().st_uid, data.stat().st_gid) == (user.uid, user.gid)


def test_with_no_env_compose_lists_the_gpu_train_as_the_default(user, origin):
    clone = fresh_clone(user, origin, "config")
    assert not (clone / ".env").exists()
    config = json.loads(compose(user, clone, "config", "--format", "json", build_settings=False).stdout)
    assert set(config["services"]) == {"train"}
    train = config["services"]["train"]
    (device,) = train["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert not train.get("user"), "no user: the entrypoint becomes the owner of ./data"
    assert train["volumes"][0]["source"] == str(clone / "data") and train["command"][:3] == ["run", "--language", "fr"]
    # Why the README names the CPU job: with its profile alone, the GPU job would start beside it.
    services = compose(user, clone, "--profile", "cpu", "config", "--services", build_settings=False).stdout.split()
    assert sorted(services) == ["train", "train-cpu"]


@pytest.fixture(scope="module")
def trained(user, origin):
    """A fresh clone's tiny CPU job, from its README command to package/, as the user; and its console."""
    clone = fresh_clone(user, origin, "dstrain")
    data = clone / "data"
    (data / "sources").mkdir()
    build_common_voice(data / "sources", rows=ONE_SENTENCE)
    (data / "dstrain.toml").write_text('workers = 2\ndatasets = ["common_voice"]\n' + by_heart(
        train=["epochs = 10"], **{"dataset.common_voice": [f'release = "{RELEASE}"']}))
    # What the user put there: their download, and their settings file.
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(data)], check=True)
    started = time.time()
    proc = compose(user, clone, *CPU_UP, LANGUAGE="fr", DSTRAIN_ARGS="--config /data/dstrain.toml")
    seconds = time.time() - started
    lines = proc.stdout.splitlines()
    print(f"\n`LANGUAGE=fr docker compose {' '.join(CPU_UP)}` as {user.name} took {seconds:.0f} s, "
          f"{len(lines)} lines; the first and last {CONSOLE_LINES}:")
    print("\n".join(lines[:CONSOLE_LINES] + ["[...]"] + lines[-CONSOLE_LINES:]))
    yield SimpleNamespace(clone=clone, data=data, console=proc.stdout)
    compose(user, clone, "--profile", "*", "down", check=False)


def test_the_cpu_job_as_the_user_reaches_package_and_every_file_is_theirs(user, trained):
    assert _exit_code(PROJECT, "train-cpu") == 0, trained.console
    package = trained.data / "runs" / "fr" / "package"
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=str(package), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {"model_tflite_fr.tar.xz", "checkpoint_fr.tar.xz"} <= {p.name for p in package.iterdir()}
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [trained.data, *trained.data.rglob("*")]}
    assert owners == {(user.uid, user.gid)}
    # And git sees none of it: the repository ships data/ empty, and ignores what goes in.
    assert as_user(user, "git", "status", "--porcelain", cwd=trained.clone).stdout == ""


def test_the_job_is_the_inits_own_child_with_no_privilege_left(user, trained):
    probe = (r'printf "init: "; tr "\0" " " < /proc/1/cmdline; echo; '
             r'exec grep -E "^(PPid|Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):" /proc/self/status')
    proc = compose(user, trained.clone, "--profile", "cpu", "run", "--rm", "--entrypoint", "as-data-owner",
                   "train-cpu", "sh", "-c", probe)
    init, *status = proc.stdout[proc.stdout.index("init: "):].strip().splitlines()
    assert "docker-init" in init, proc.stdout
    status = {key: value.split() for key, value in (line.split(":", 1) for line in status)}
    # exec all the way: no shell or setpriv left between the init and the job, so its signals reach the job.
    assert status["PPid"] == ["1"]
    assert status["Uid"] == [str(user.uid)] * 4 and status["Gid"] == [str(user.gid)] * 4 and status["Groups"] == []
    assert {int(status[c][0], 16) for c in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {0}
    assert status["NoNewPrivs"] == ["1"]


def test_the_init_passes_the_stop_on_to_the_job(user, trained):
    # The init stays root with only the capabilities docker-compose.yml leaves it; KILL is the one that lets it
    # signal a job of another uid.
    job = 'trap "echo stopped > /data/stopped; exit 0" TERM; while true; do sleep 0.2; done'
    name = compose(user, trained.clone, "--profile", "cpu", "run", "--detach", "--entrypoint", "as-data-owner",
                   "train-cpu", "sh", "-c", job).stdout.strip().splitlines()[-1]
    try:
        time.sleep(2)
        started = time.time()
        docker("stop", "--time", "60", name)
        seconds = time.time() - started
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert seconds < 30
        stopped = trained.data / "stopped"
        assert stopped.read_text() == "stopped\n" and stopped.stat().st_uid == user.uid
    finally:
        docker("rm", "--force", name, check=False)
        (trained.data / "stopped").unlink(missing_ok=True)


def test_tensorboard_runs_as_the_owner_of_the_data(user, trained):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    compose(user, trained.clone, "--profile", "tensorboard", "up", "--detach", "--no-build", "tensorboard",
            TENSORBOARD_PORT=port)
    try:
        deadline, runs = time.time() + 120, None
        while time.time() < deadline and not runs:
            try:
                runs = requests.get(f"http://127.0.0.1:{port}/data/runs", timeout=5).json()
            except (requests.RequestException, ValueError):
                time.sleep(1)
        assert "fr/summaries/train" in set(runs or ())
        container = compose(user, trained.clone, "--profile", "tensorboard", "ps", "-q").stdout.split()[-1]
        processes = docker("top", container, "-o", "pid,uid,args").stdout.splitlines()[1:]
        uids = {uid for _, uid, args in (line.split(None, 2) for line in processes) if "docker-init" not in args}
        assert uids == {str(user.uid)}, processes
    finally:
        compose(user, trained.clone, "--profile", "tensorboard", "down", TENSORBOARD_PORT=port)


def test_a_missing_data_folder_is_an_error_not_a_folder_of_roots(user, origin, trained):
    clone = fresh_clone(user, origin, "no-data")
    shutil.rmtree(str(clone / "data"))
    project = own("dstrain-owner-no-data")
    proc = compose(user, clone, *CPU_UP, "--no-build", check=False, LANGUAGE="fr", COMPOSE_PROJECT_NAME=project)
    assert proc.returncode != 0 and f"bind source path does not exist: {clone / 'data'}" in proc.stdout, proc.stdout
    assert not (clone / "data").exists()
    compose(user, clone, "--profile", "cpu", "down", COMPOSE_PROJECT_NAME=project)


def test_up_with_no_profile_starts_the_gpu_job_and_down_removes_it(user, origin, trained):
    """This engine has no NVIDIA runtime: the GPU job's request for a GPU is what fails."""
    clone = fresh_clone(user, origin, "gpu")
    before = _snapshot(clone / "data")
    project = own("dstrain-owner-gpu")
    proc = compose(user, clone, "up", "--no-build", check=False, LANGUAGE="fr", COMPOSE_PROJECT_NAME=project)
    assert proc.returncode != 0 and 'could not select device driver "nvidia"' in proc.stdout, proc.stdout
    assert [line.split()[0] for line in _containers(project)] == ["train"]
    compose(user, clone, "down", COMPOSE_PROJECT_NAME=project)
    assert _containers(project) == []
    assert _snapshot(clone / "data") == before


def test_data_owned_by_root_is_refused_with_the_fix_and_nothing_is_written(user, origin, trained):
    clone = fresh_clone(user, origin, "refused")
    subprocess.run(["chown", "-R", "0:0", str(clone / "data")], check=True)
    before = _snapshot(clone / "data")
    project = own("dstrain-owner-refused")
    try:
        proc = compose(user, clone, *CPU_UP, "--no-build", LANGUAGE="fr", COMPOSE_PROJECT_NAME=project)
        assert _exit_code(project, "train-cpu") == 2
        assert "the data directory ./data belongs to root" in proc.stdout
        assert '    sudo chown -R "$(id -u):$(id -g)" ./data' in proc.stdout
        # In the user's shell, that names them.
        said = as_user(user, "bash", "-c", 'echo "$(id -u):$(id -g)"').stdout.strip()
        assert said == f"{user.uid}:{user.gid}"
        assert _snapshot(clone / "data") == before
    finally:
        compose(user, clone, "--profile", "cpu", "down", check=False, COMPOSE_PROJECT_NAME=project)
