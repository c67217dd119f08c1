import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.commands import DSTRAIN, RELEASE, clean_env, write_config  # noqa: F401 - tests import them from here
from tests.fixtures.common_voice import build_common_voice
from tests.http_server import FileServer

#: Fixtures of the Slurm tests (slurm, shared_dir, node_dstrain), in their own module.
pytest_plugins = ("tests.slurm_cluster",)

# The Ctrl-C tests send SIGINT as a terminal does.  A suite started in the background of a script (`cmd &`,
# nohup) inherits SIGINT ignored, and every dstrain it starts would inherit that too and never see the Ctrl-C.
# A Python handler here is reset to the default in each program the tests execute.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Set by tests/run.sh, which installs the real trainer and Docker engine: their tests then fail, never skip.
REQUIRE_REAL_TOOLS = os.environ.get("REQUIRE_REAL_TOOLS") == "1"


def need_real(available: bool, why: str) -> None:
    """Skip a test of a real tool that is not here, or fail it where tests/run.sh promised the tool."""
    if not available:
        (pytest.fail if REQUIRE_REAL_TOOLS else pytest.skip)(why)


@pytest.fixture(scope="session")
def cv_archive(tmp_path_factory) -> Path:
    """A small French Common Voice release, built once per test session."""
    return build_common_voice(tmp_path_factory.mktemp("cv"))


@pytest.fixture()
def served(cv_archive, tmp_path):
    """That release on a real local HTTP server, under its published name: (server, the file it serves)."""
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(cv_archive, www / f"{RELEASE}-fr.tar.gz")
    with FileServer(www) as server:
        yield server, www / f"{RELEASE}-fr.tar.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dstrain(*args, env=None, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would."""
    proc = subprocess.run([DSTRAIN, *map(str, args)], capture_output=True, text=True,
                          env=env or clean_env(), timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"dstrain {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
