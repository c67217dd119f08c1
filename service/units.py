"""Sizes and durations as a host writes them in `dstrain serve`'s flags: '20G', '512M', '48h', '90m'."""
import re
from typing import Optional

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int:
    """'20G', '512M', '1024' -> bytes (binary units, as docker's own flags)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (say e.g. 512M or 20G)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))


def parse_duration(text: str) -> Optional[float]:
    """'48h', '90m', '2d', '30s' or '3600' -> seconds; '0' or 'none' -> None (no limit)."""
    if str(text).strip().lower() in ("none", "0"):
        return None
    match = _DURATION.match(str(text).lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (say e.g. 48h, 90m or 2d; none for no limit)")
    number, unit = match.groups()
    return float(number) * _SECONDS[unit or "s"]


def shown_duration(seconds: float) -> str:
    """48 h, 90 min, 45 s: as a person says the time limit."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
