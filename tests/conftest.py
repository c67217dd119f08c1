import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.common_voice import build_common_voice

DSTRAIN = str(Path(sys.executable).with_name("dstrain"))
RELEASE = "cv-corpus-99.0-2099-01-01"


@pytest.fixture(scope="session")
def cv_archive(tmp_path_factory) -> Path:
    """A small French Common Voice release, built once per test session."""
    return build_common_voice(tmp_path_factory.mktemp("cv"))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSTRAIN_", "MDC_"))}
    env.update(extra)
    return env


def dstrain(*args, env=None, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would."""
    proc = subprocess.run([DSTRAIN, *map(str, args)], capture_output=True, text=True,
                          env=env or clean_env(), timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"dstrain {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_config(path: Path, data_root: Path, archive_sha256=None, url=None, **clean) -> Path:
    lines = [
        f'data_root = "{data_root}"',
        "workers = 2",
        'datasets = ["common_voice"]',
        "[dataset.common_voice]",
        f'release = "{RELEASE}"',
        "max_duration = 5.0",
    ]
    if archive_sha256:
        lines.append(f'sha256 = "{archive_sha256}"')
    if url:
        lines.append(f'url = "{url}"')
    path.write_text("\n".join(lines) + "\n")
    return path
