"""Judging a row's transcript the same way in every importer."""
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
