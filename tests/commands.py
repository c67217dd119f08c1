"""What the tests and the benchmarks share, without pytest: the command, its environment, a settings file.

The benchmarks run from the README's own install (`pip install -e .`), which has no pytest.
"""
import os
import sys
from pathlib import Path

DSTRAIN = str(Path(sys.executable).with_name("dstrain"))
RELEASE = "cv-corpus-99.0-2099-01-01"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSTRAIN_", "MDC_"))}
    env.update(extra)
    return env


def write_config(path: Path, data_root: Path, archive_sha256=None, url=None, clips="wav", **clean) -> Path:
    """``clips``: clips.format ("wav" or "sdb"): WAVs unless a test says otherwise, so the tests that look at
    the WAV files keep finding them; None leaves the default (sdb)."""
    lines = [
        f'data_root = "{data_root}"',
        "workers = 2",
        'datasets = ["common_voice"]',
        *([f'clips.format = "{clips}"'] if clips else []),
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
