"""The digests fingerprints are made of: of any JSON-able data, and of a file's content."""
import hashlib
import json
from pathlib import Path
from typing import Any, Optional


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> Optional[str]:
    """A file's content, for a fingerprint; None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None
