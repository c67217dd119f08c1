"""The image and `docker compose`, as a user runs them, on a real Docker engine.

The project is copied as a clean clone would have it, with a `.env` that names the user the jobs run as (UID and
GID, here 4242, which is not root: the override .env.example offers; without it the jobs become the owner of
./data, tests/test_compose_owner.py) and the build settings of the stand-in bases (tests/docker_images.py),
whose DeepSpeech source comes from a local HTTP server, checked by its sha256.  Then, as documented:

    LANGUAGE=fr docker compose --profile cpu up train-cpu

on an espeak Common Voice release holding one sentence, which the model learns by heart.  The run is stopped
with `docker compose stop` in the middle of training and started again: only the epochs left are trained.
The packaged .tflite then transcribes the sentence on the host, in the official runtime.
"""
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from dstrain.pipeline.config import ENV_NOT_SETTINGS, ENV_PREFIX, flatten
from dstrain.pipeline.settings import Settings
from tests.conftest import RELEASE, need_real
from tests.docker_images import (
    CA_BUNDLE,
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
from tests.test_deepspeech_real import EPOCHS, ONE_SENTENCE, SENTENCE, by_heart, imported_wav, transcribe

pytestmark = pytest.mark.docker

IMAGE = own("dstrain-test/compose:latest")
USER = 4242  # the invoking user: not root, and not the image's default 1000
STOP_AFTER = 20
MDC_KEY = "mdc-secret-never-written-anywhere"
#: Settings that name places on the host: docker-compose.yml does not pass them into the container.
HOST_PLACES = {"language", "language_dirs", "data_root", "train.trainer_python", "lm.kenlm_bin", "lm.scorer_tool",
               "optimize.script", "export.convert_graphdef_memmapped_format"}


def compose(project: Path, *args, check=True, timeout=3600, **env) -> subprocess.CompletedProcess:
    """`docker compose` in the project, as a user types it (LANGUAGE and friends from the shell)."""
    proc = subprocess.run([docker_binary(), "compose", *args], cwd=str(project), capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env))
    if check and proc.returncode != 0:
        raise AssertionError(f"docker compose {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    need_real(engine_running(), "no Docker engine (tests/run.sh starts one; DEVELOPERS.md)")
    ensure_tf1_standin()
    source = deepspeech_source()
    with FileServer(source.parent) as server:
        root = copy_checkout(tmp_path_factory.mktemp("clone") / "dstrain")
        settings = standin_settings(f"{server.url}/{source.name}")
        # Its own project name and image, so that a developer's own `dstrain` project is left alone.
        settings.update(DSTRAIN_IMAGE=IMAGE, COMPOSE_PROJECT_NAME=own("dstrain-test"), UID=str(USER), GID=str(USER))
        (root / ".env").write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        started = time.time()
        compose(root, "build", "train-cpu")
        print(f"image built in {time.time() - started:.0f} s")
        yield root, server


@pytest.mark.parametrize("profile, name", [(None, "train"), ("cpu", "train-cpu"), ("tensorboard", "tensorboard")])
def test_each_profile_is_a_valid_compose_file(project, profile, name):
    config = json.loads(compose(project[0], *(["--profile", profile] if profile else []), "config", "--format",
                                "json").stdout)
    service = config["services"][name]
    assert service["user"] == f"{USER}:{USER}" and service["init"] is True
    assert service["volumes"][0]["target"] == "/data" and service["volumes"][0]["bind"] == {}  # no create_host_path
    if profile == "tensorboard":
        assert service["ports"][0]["host_ip"] == "127.0.0.1" and service["volumes"][0]["read_only"] is True
        return
    assert service["command"][:3] == ["run", "--language", "fr"]
    assert service["shm_size"] and service["ulimits"]["stack"] == 67108864 and service["stop_grace_period"]
    assert ("memlock" in service["ulimits"]) == (name == "train")
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert (devices is not None) == (name == "train")
    if devices:
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]


def test_every_setting_passes_from_the_shell_into_the_container(project):
    config = json.loads(compose(project[0], "--profile", "cpu", "config", "--format", "json",
                                DSTRAIN_TRAIN__EPOCHS="7").stdout)
    environment = config["services"]["train-cpu"]["environment"]
    assert environment["DSTRAIN_TRAIN__EPOCHS"] == "7" and environment["DSTRAIN_TRAIN__N_HIDDEN"] is None
    listed = {name for name in environment if name.startswith(ENV_PREFIX) and name not in ENV_NOT_SETTINGS}
    schema = {key for key in flatten(Settings().model_dump(mode="json"))
              if key not in HOST_PLACES and key not in ("dataset", "lm.source")}
    assert listed == {ENV_PREFIX + key.upper().replace(".", "__") for key in schema}


def test_a_wrong_checksum_fails_the_build_and_names_the_artifact(project):
    root, server = project
    proc = compose(root, "build", "train-cpu", check=False, DEEPSPEECH_SHA256="0" * 64)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"the DeepSpeech source {server.url}/" in output and "expected DEEPSPEECH_SHA256=" + "0" * 64 in output


@pytest.fixture(scope="module")
def trained(project):
    root, _ = project
    data = root / "data"
    (data / "sources").mkdir(parents=True)
    build_common_voice(data / "sources", rows=ONE_SENTENCE)
    (data / "dstrain.toml").write_text('workers = 2\ndatasets = ["common_voice"]\n' + by_heart(
        **{"dataset.common_voice": [f'release = "{RELEASE}"']}))
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(data)], check=True)
    shell = {"LANGUAGE": "fr", "DSTRAIN_ARGS": "--config /data/dstrain.toml", "MDC_API_KEY": MDC_KEY}
    progress = data / "runs" / "fr" / "checkpoints" / "dstrain-progress.json"

    compose(root, "--profile", "cpu", "up", "--detach", "train-cpu", **shell)
    deadline = time.time() + 900
    while time.time() < deadline and _epochs(progress) < STOP_AFTER:
        assert _container(root)["state"] == "running", compose(root, "--profile", "cpu", "logs").stdout
        time.sleep(0.5)
    stopping = time.time()
    compose(root, "--profile", "cpu", "stop", **shell)
    stop = {"seconds": time.time() - stopping, "epochs": _epochs(progress), "state": _container(root)}

    started = time.time()
    compose(root, "--profile", "cpu", "up", "train-cpu", **shell)
    finished = {"seconds": time.time() - started, "state": _container(root)}
    started = time.time()
    compose(root, "--profile", "cpu", "up", "train-cpu", **shell)
    again = {"seconds": time.time() - started, "state": _container(root),
             # The container is the same one each time: its log holds the three runs.
             "logs": compose(root, "--profile", "cpu", "logs", "--no-log-prefix").stdout.split("run fr: ")}
    print(f"stopped in {stop['seconds']:.1f} s at epoch {stop['epochs']}; finished in {finished['seconds']:.0f} s; "
          f"the next up took {again['seconds']:.1f} s")
    yield data, stop, finished, again
    compose(root, "--profile", "cpu", "down")


def _epochs(progress: Path) -> int:
    try:
        return json.loads(progress.read_text())["epochs_done"]
    except (OSError, ValueError, KeyError):
        return 0


def _container(root: Path) -> dict:
    (entry,) = [json.loads(line) for line in compose(root, "--profile", "cpu", "ps", "--all", "--format",
                                                       "json").stdout.splitlines() if line.strip()]
    return {"state": entry["State"], "exit_code": entry["ExitCode"]}


def test_compose_stop_mid_training_then_up_trains_only_the_epochs_left(trained):
    data, stop, finished, _ = trained
    assert STOP_AFTER <= stop["epochs"] < EPOCHS and stop["state"]["state"] == "exited"
    assert finished["state"] == {"state": "exited", "exit_code": 0}
    record = json.loads((data / "runs" / "fr" / "checkpoints" / "dstrain-progress.json").read_text())
    first, resumed = record["invocations"]
    assert first["outcome"] == "aborted" and (first["first_epoch"], first["epochs"]) == (1, EPOCHS)
    assert (resumed["first_epoch"], resumed["epochs"], resumed["load_train"], resumed["outcome"]) == (
        stop["epochs"] + 1, EPOCHS - stop["epochs"], "last", "finished")
    assert [e["epoch"] for e in record["epochs"]] == list(range(1, EPOCHS + 1))
    _, stopped, resumed_log, _ = trained[3]["logs"]
    assert "stage train failed: interrupted" in stopped
    # The README's command for this job, with the variables that chose its run and stages as they were given.
    assert ('resume with:\n    LANGUAGE=fr DSTRAIN_ARGS="--config /data/dstrain.toml" docker compose --profile cpu '
            "up --abort-on-container-failure train-cpu" in stopped)
    assert f"resuming: {stop['epochs']} of {EPOCHS} epochs were done" in resumed_log


def test_a_second_up_does_nothing_and_exits_0_in_seconds(trained):
    _, _, _, again = trained
    assert again["state"] == {"state": "exited", "exit_code": 0}
    assert again["seconds"] < 30
    last = again["logs"][-1]
    assert "▶" not in last.replace("▶ check", "") and "✓ package   up to date" in last


def test_the_package_verifies_and_every_file_belongs_to_the_invoking_user(trained):
    data = trained[0]
    package = data / "runs" / "fr" / "package"
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=str(package), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {"model_tflite_fr.tar.xz", "model_tensorflow_fr.tar.xz", "checkpoint_fr.tar.xz"} <= {
        p.name for p in package.iterdir()}
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [data, *data.rglob("*")]}
    assert owners == {(USER, USER)}


def test_the_tflite_from_the_container_transcribes_on_the_host(trained, tmp_path):
    data = trained[0]
    with tarfile.open(str(data / "runs" / "fr" / "package" / "model_tflite_fr.tar.xz")) as tar:
        tar.extractall(str(tmp_path))
    wav = imported_wav(data, Settings().clips.format, "one_test", tmp_path)  # the container's run kept the default
    need_real(bool(os.environ.get("DEEPSPEECH_TFLITE_RUNTIME")), "DEEPSPEECH_TFLITE_RUNTIME (tests/trainer_env.sh)")
    heard = transcribe(os.environ["DEEPSPEECH_TFLITE_RUNTIME"], tmp_path / "output_graph.tflite",
                       tmp_path / "kenlm.scorer", wav)
    assert heard == SENTENCE


def test_the_container_warned_it_trains_on_the_cpu(trained):
    check_log = (trained[0] / "runs" / "fr" / "logs" / "check.log").read_text()
    assert "GPUs: none" in check_log and "training will run on the CPU" in check_log


def test_the_image_runs_its_jobs_as_the_user_it_is_given_and_has_no_sudo(project, tmp_path):
    # Root only for its entrypoint, which runs the job as the user named (here) or as the data's owner.
    owned = tmp_path / "data"
    owned.mkdir()
    os.chown(str(owned), USER + 1, USER + 1)
    as_named = docker("run", "--rm", "--user", f"{USER}:{USER}", "-v", f"{owned}:/data", "--entrypoint",
                      "as-data-owner", IMAGE, "id", "-u").stdout.strip()
    as_owner = docker("run", "--rm", "-v", f"{owned}:/data", "--entrypoint", "as-data-owner", IMAGE, "id",
                      "-u").stdout.strip()
    assert (as_named, as_owner) == (str(USER), str(USER + 1))
    assert docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "command -v sudo", check=False).returncode != 0
    labels = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "dstrain"


def test_no_secret_is_in_the_image_its_history_or_the_data(trained):
    data = trained[0]
    history = docker("history", "--no-trunc", IMAGE).stdout
    config = docker("image", "inspect", IMAGE).stdout
    certificate = Path(CA_BUNDLE).read_text().split("-----BEGIN CERTIFICATE-----")[1].split()[0]
    for text in (history, config):
        assert MDC_KEY not in text and "MDC_API_KEY" not in text and certificate not in text
    # BuildKit leaves the secrets' mount point, empty.
    assert docker("run", "--rm", "--entrypoint", "ls", IMAGE, "-A", "/run/secrets").stdout == ""
    for path in data.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".md", ".csv", ".txt", ".toml"):
            assert MDC_KEY not in path.read_text(errors="replace"), path


def test_with_uid_in_env_a_data_directory_of_root_gets_the_pipelines_advice(project, tmp_path):
    # The container starts as UID, not root: the entrypoint has nothing to drop, and dstrain itself finds the
    # data root it may not write.
    owned_by_root = tmp_path / "data"
    owned_by_root.mkdir()
    proc = compose(project[0], "--profile", "cpu", "run", "--rm", "train-cpu", check=False, LANGUAGE="fr",
                   DATA_DIR=str(owned_by_root))
    assert proc.returncode == 2
    assert f"the data root /data (on the host: {owned_by_root}) is not writable" in proc.stderr
    assert f"sudo chown -R {USER}:{USER} {owned_by_root}" in proc.stderr


def test_the_tensorboard_profile_serves_the_runs_summaries_on_loopback(project, trained):
    import socket

    import requests

    root = project[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    compose(root, "--profile", "tensorboard", "up", "--detach", "tensorboard", TENSORBOARD_PORT=port)
    try:
        deadline, runs = time.time() + 120, None
        while time.time() < deadline and not runs:
            try:
                runs = requests.get(f"http://127.0.0.1:{port}/data/runs", timeout=5).json()
            except (requests.RequestException, ValueError):
                time.sleep(1)
        assert {"fr/summaries/train", "fr/summaries/dev"} <= set(runs or ())
    finally:
        compose(root, "--profile", "tensorboard", "down", TENSORBOARD_PORT=port)
