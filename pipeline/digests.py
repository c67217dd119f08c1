"""The digests fingerprints are made of: of any JSON-able data, and of a file's content."""
import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

#: Bytes read at a time when hashing a large file.
CHUNK = 1 << 20


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> Optional[str]:
    """A file's content, for a fingerprint; None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def hash_file(path: Path, hasher=None, label: str = "verifying"):
    """``hasher`` (a new sha256 by default) fed ``path``'s bytes, streamed with a progress bar: for archives,
    models and checkpoints, too large to read at once."""
    hasher = hasher or hashlib.sha256()
    with path.open("rb") as handle, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"{label} {path.name}", leave=False
    ) as bar:
        for block in iter(lambda: handle.read(CHUNK), b""):
            hasher.update(block)
            bar.update(len(block))
    return hasher
