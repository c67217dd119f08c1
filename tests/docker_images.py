"""The Docker engine and the base images the container tests build on, made here because no registry is reachable.

- ``dstrain-test/debian:bookworm``: Debian's minimal base made by debootstrap from the host's own mirror;
  it serves as Dockerfile.train's builder image.
- ``dstrain-test/tf1-standin:py37``: that Debian, a Python 3.7 copied from the host and PyPI's TensorFlow
  1.15.5 (CPU), standing in for NVIDIA's TF1 image as Dockerfile.train's BASE_IMAGE.

Each is made once and kept by the engine; a test session reuses them.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEBIAN_IMAGE = "dstrain-test/debian:bookworm"
STANDIN_IMAGE = "dstrain-test/tf1-standin:py37"
#: The stand-in's TensorFlow Python, the image's TRAINER_PYTHON.
STANDIN_PYTHON = "/opt/py37/bin/python3.7"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Two checkouts testing on one engine at once (worktrees) keep their images, compose projects and containers
#: apart by setting DSTRAIN_TEST_NAMESPACE; the base images are the same for all and stay shared.
NAMESPACE = os.environ.get("DSTRAIN_TEST_NAMESPACE", "")


def own(name: str) -> str:
    """``name`` (an image tag, a compose project, a label value) of this checkout's tests."""
    return f"{name}-{NAMESPACE}" if NAMESPACE else name


def docker_binary() -> str:
    """Debian's client first: it builds with BuildKit secrets; a newer client on PATH may lack buildx."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker") or "docker"


def docker(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run([docker_binary(), *map(str, args)], **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


def engine_running() -> bool:
    try:
        return docker("info", check=False, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


def _debian_mirror() -> str:
    """The mirror this host's apt uses, so debootstrap reaches what apt reaches."""
    texts = [p.read_text() for p in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d")
                                                                               .glob("*")) if p.is_file()]
    for text in texts:
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm", text, re.MULTILINE)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def ensure_debian_base() -> str:
    if not image_exists(DEBIAN_IMAGE):
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="debootstrap-") as rootfs:
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, _debian_mirror()],
                           check=True, capture_output=True)
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            docker("import", "-", DEBIAN_IMAGE, stdin=tar.stdout, text=False)
            tar.wait()
        print(f"made {DEBIAN_IMAGE} in {time.time() - started:.0f} s")
    return DEBIAN_IMAGE


def _python37() -> Path:
    found = sorted(Path.home().glob(".pyenv/versions/3.7.*"))
    if not found:
        raise RuntimeError("no Python 3.7 under ~/.pyenv/versions for the TF1 stand-in image")
    return found[-1]


def ensure_tf1_standin() -> str:
    ensure_debian_base()
    if not image_exists(STANDIN_IMAGE):
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="standin-") as context:
            # Not the host's .pth hooks (they name host paths) nor its byte-code.
            shutil.copytree(str(_python37()), os.path.join(context, "python"), symlinks=True,
                            ignore=shutil.ignore_patterns("*.pth", "__pycache__"))
            docker("build", "--network", "host", "--secret", f"id=ca,src={CA_BUNDLE}", "-t", STANDIN_IMAGE,
                   "--build-arg", f"DEBIAN_IMAGE={DEBIAN_IMAGE}",
                   "-f", REPO / "tests" / "docker" / "tf1-standin.Dockerfile", context,
                   env=dict(os.environ, DOCKER_BUILDKIT="1"))
        print(f"made {STANDIN_IMAGE} in {time.time() - started:.0f} s")
    return STANDIN_IMAGE


TRAIN_IMAGE = own("dstrain-test/train:latest")
#: The vendored DeepSpeech v0.9.3 source (../shared/vendor/README.md), unless DEEPSPEECH_SOURCE names another.
VENDORED_SOURCE = REPO.parent / "shared" / "vendor" / "DeepSpeech-0.9.3.tar.gz"
VENDORED_SHA256 = "d1981e510f2803f2021985d82209963751d671247a8f10614f0af152c9276f4e"


def copy_checkout(into: Path) -> Path:
    """The project as a clean clone has it (tracked files, and new ones git does not ignore), into ``into``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=str(REPO),
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(REPO / name), str(into / name))
    return into


def deepspeech_source() -> Path:
    return Path(os.environ.get("DEEPSPEECH_SOURCE") or VENDORED_SOURCE)


def standin_settings(deepspeech_url: str) -> dict:
    """docker-compose.yml's variables (as .env or the shell give them) for building on the stand-in bases, here."""
    return {
        "BASE_IMAGE": STANDIN_IMAGE, "BUILDER_IMAGE": DEBIAN_IMAGE, "BASE_PYTHON": STANDIN_PYTHON,
        # The stand-in's own python3 is the trainer's 3.7: the pipeline gets Debian's.
        "PIPELINE_PYTHON": "/usr/bin/python3", "PIPELINE_APT": "python3 python3-venv",
        "DEEPSPEECH_URL": deepspeech_url, "DEEPSPEECH_SHA256": VENDORED_SHA256,
        # No bridge network on these machines (DEVELOPERS.md).
        "BUILD_NETWORK": "host", "NETWORK_MODE": "host", "TENSORBOARD_HOST": "127.0.0.1",
        "DSTRAIN_IMAGE": TRAIN_IMAGE,
    }


def build_train_image(deepspeech_url: str, tag: str = TRAIN_IMAGE, context: Path = REPO, extra=()):
    """Dockerfile.train of ``context`` on the stand-ins, as `docker build` would; the engine's layer cache makes a
    rebuild cheap.  ``extra``: more `docker build` arguments, e.g. --no-cache."""
    ensure_tf1_standin()
    settings = standin_settings(deepspeech_url)
    args = [f"{name}={settings[name]}" for name in ("BASE_IMAGE", "BUILDER_IMAGE", "PIPELINE_PYTHON",
                                                     "PIPELINE_APT", "DEEPSPEECH_URL", "DEEPSPEECH_SHA256")]
    args.append(f"TRAINER_PYTHON={settings['BASE_PYTHON']}")
    return docker("build", "--network", "host", "--secret", f"id=ca,src={CA_BUNDLE}", "-t", tag,
                  *[item for arg in args for item in ("--build-arg", arg)], *extra, "-f", context / "Dockerfile.train",
                  context,
                  env=dict(os.environ, DOCKER_BUILDKIT="1"), timeout=3600)
