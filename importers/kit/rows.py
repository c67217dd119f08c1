"""Judging a row's transcript, and the clip name it gives, the same way in every importer."""
from typing import Callable, List, Optional

from dstrain.pipeline.formats.deepspeech_csv import Reject


def labelled(split: str, source: str, text: str, normalize: Callable[[str], Optional[str]],
             rejects: List[Reject]) -> Optional[str]:
    """The normalised label, or None once the reason the row cannot train is in ``rejects``."""
    if not text.strip():
        rejects.append(Reject(split, source, "empty_label", ""))
        return None
    label = normalize(text)
    if not label:
        rejects.append(Reject(split, source, "invalid_label", text))
    return label or None


def plain_name(split: str, source: str, name: str, rejects: List[Reject]) -> bool:
    """Whether a row names its clip by a plain file name; if not, the row is rejected as ``invalid_path``.

    A row's clip is looked up by name among the corpus's files: a name with a directory in it
    (``clips/x.mp3``, ``../../etc/passwd``) would reach elsewhere, or nowhere.
    """
    if name and name not in (".", "..") and not any(c in name for c in "/\\\0"):
        return True
    rejects.append(Reject(split, source, "invalid_path", f"{name!r} is not a plain file name"))
    return False
