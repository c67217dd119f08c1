"""Write to a temporary name, then rename: a reader never sees half a file."""
import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def temporary_path(final):
    """Yield a sibling temporary path; rename it onto ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
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
