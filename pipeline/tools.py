"""External programs (KenLM, DeepSpeech's native tools): finding them, and running them into the stage log,
stopped with dstrain (processes.py)."""
import logging
import os
import shlex
import shutil
import subprocess
from collections import deque
from pathlib import Path
from typing import List, Optional, Sequence

from dstrain.pipeline import processes
from dstrain.pipeline.errors import ConfigError, StageError

log = logging.getLogger("dstrain")
#: Output lines quoted when a tool fails; the whole output is in the stage log.
TAIL_LINES = 20


def find_tool(name: str, configured: Optional[Path], setting: str, how_to_get: str) -> Path:
    """``configured`` if set (it must be executable), else ``name`` on PATH.

    One way to say where a tool is: its setting, from a config file or a DSTRAIN_* variable (the image sets
    those variables); PATH when it is not set.
    """
    if configured is not None:
        configured = configured.expanduser()
        if configured.is_file() and os.access(str(configured), os.X_OK):
            return configured
        raise ConfigError(f"{setting}: {configured} is not an executable file ({name} expected there). {how_to_get}")
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} was not found on PATH, and {setting} is not set. {how_to_get}")
    return Path(found)


def run_tool(command: Sequence[str], stdin: Optional[Path] = None) -> List[str]:
    """Run a tool, its output going to the stage log; fail with the command and the end of its output.

    Returns the last lines of its output.
    """
    command = [str(part) for part in command]
    log.info("$ %s", shlex.join(command))
    tail: deque = deque(maxlen=TAIL_LINES)
    with open(str(stdin), "rb") if stdin else open(os.devnull, "rb") as feed:
        with processes.started(command, stdin=feed, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    log.debug("  %s", line)
                    tail.append(line)
    if proc.returncode != 0:
        raise StageError("{} exited with status {}:\n    {}\n  last output:\n    {}".format(
            Path(command[0]).name, proc.returncode, shlex.join(command), "\n    ".join(tail) or "(none)"))
    return list(tail)
