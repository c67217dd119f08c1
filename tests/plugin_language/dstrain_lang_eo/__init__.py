"""Esperanto, registered through the `dstrain.languages` entry point."""
import re
import unicodedata
from typing import Optional

from pipeline.language import DatasetSpec, Language

LETTERS = "abcdefghijklmnoprstuvzĉĝĥĵŝŭ'"
_SEPARATOR = re.compile("[^" + LETTERS + "]+")


def normalize(label: str) -> Optional[str]:
    text = unicodedata.normalize("NFKC", label).replace("’", "'").lower()
    # Digits are ambiguous when spoken; letters outside the alphabet mean another language.
    if any(c.isdigit() or (c.isalpha() and c not in LETTERS) for c in text):
        return None
    return " ".join(_SEPARATOR.sub(" ", text).split()) or None


LANGUAGE = Language(
    code="eo",
    name="Esperanto",
    locale="eo",
    normalize=normalize,
    cases=(
        ("Saluton, mondo!", "saluton mondo"),
        ("Ĉu vi parolas Esperanton?", "ĉu vi parolas esperanton"),
        ("Mi havas 3 katojn.", None),
        ("Привет", None),
        ("", None),
    ),
    letters=LETTERS,
    datasets=(DatasetSpec("common_voice", {"release": "cv-corpus-21.0-2025-03-14", "locale": "eo"}),),
)
