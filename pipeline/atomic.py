"""Write to a temporary name, then rename: a reader never sees half a file."""
import contextlib
import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("dstrain")
#: The names temporary_path gives, with the writer's PID.
_TEMPORARY = re.compile(r"^\..+\.tmp-[0-9]+$")


@contextlib.contextmanager
def temporary_path(final):
    """Yield a sibling temporary path; rename it onto ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")  # remove_leftovers knows this name
    try:
        yield tmp
        os.replace(str(tmp), str(final))
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> None:
    with temporary_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path):
    """The parsed file, or None when it is absent or unreadable (a torn record counts as absent)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_leftovers(directory, recursive: bool = False, prefix: str = "") -> int:
    """Delete the temporary files a killed writer left in ``directory`` (those of ``prefix``'s outputs only).

    Call it only while holding the directory's lock (pipeline/locks.py): then no one is writing them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    found = directory.rglob(".*.tmp-*") if recursive else directory.glob(f".{prefix}*.tmp-*")
    removed = 0
    for path in found:
        if _TEMPORARY.match(path.name) and path.name.startswith("." + prefix) and path.is_file():
            path.unlink()
            removed += 1
    if removed:
        log.info("removed %d temporary file(s) left in %s by an earlier run that was stopped", removed, directory)
    return removed
